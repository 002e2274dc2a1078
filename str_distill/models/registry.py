"""Named model configurations (``siga-vit-t``, ``siga-vit-s``, ``siga-vit-b``) and :func:`list_models`.

Every configuration lives in the package, so a ``pip install`` is enough to rebuild any architecture.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from .config import ModelConfig
from .model import STRModel

__all__ = ["create_model", "get_config", "list_models", "register_model"]

_REGISTRY: dict[str, Callable[[], ModelConfig]] = {}


def register_model(name: str) -> Callable[[Callable[[], ModelConfig]], Callable[[], ModelConfig]]:
    """Decorator: register a function returning the :class:`ModelConfig` of architecture ``name``."""

    def deco(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


@register_model("siga-vit-t")
def _siga_vit_t() -> ModelConfig:
    """ViT-Tiny: 192 wide, 12 blocks, 3 heads; decoder 192 wide, 3 layers."""
    return ModelConfig(arch="siga-vit-t", embed_dim=192, depth=12, num_heads=3, dec_dim=192, dec_heads=3)


@register_model("siga-vit-s")
def _siga_vit_s() -> ModelConfig:
    """ViT-Small: 384 wide, 12 blocks, 6 heads; decoder 384 wide, 3 layers."""
    return ModelConfig(arch="siga-vit-s", embed_dim=384, depth=12, num_heads=6, dec_dim=384, dec_heads=6)


@register_model("siga-vit-b")
def _siga_vit_b() -> ModelConfig:
    """ViT-Base as in CCD: 512 wide, 12 blocks, 8 heads; decoder 512 wide, 3 layers."""
    return ModelConfig(arch="siga-vit-b", embed_dim=512, depth=12, num_heads=8, dec_dim=512, dec_heads=8)


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered architecture names matching a glob ``pattern``.

    With ``pretrained=True``, the names of published weights (``arch`` or ``arch.tag``) from the weights manifest.
    """
    if pretrained:
        from ..hub.manifest import load_manifest

        names = list(load_manifest())
    else:
        names = list(_REGISTRY)
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of a registered architecture, with fields overridden by keyword."""
    arch = name.split(".")[0]
    if arch not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    cfg = _REGISTRY[arch]().to_dict()
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise KeyError(f"unknown config fields {unknown}")
    cfg.update(overrides)
    return ModelConfig.from_dict(cfg)


def create_model(name: str, **overrides: Any) -> STRModel:
    """A randomly initialized :class:`STRModel` of a registered architecture (for training; use
    :meth:`str_distill.Recognizer.from_pretrained` for trained weights)."""
    return STRModel(get_config(name, **overrides))
