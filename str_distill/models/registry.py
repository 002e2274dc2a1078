"""Named model configurations of every family and :func:`list_models`.

Two families: the ViT recognizers (``siga-vit-t/s/b``, ``siga-vit-t-ctc``, :class:`ViTConfig` -> :class:`ViTRecognizer`)
and the PP-OCR CTC recognizers (``ppocrv6-small``, ``siga-lcnet-t-ctc``, :class:`PPOCRConfig` ->
:class:`PPOCRRecognizer`). Each family has its own config
class holding only its own fields; :func:`config_from_dict` picks the class from the ``arch`` field and
:func:`build_model` the network from the config's class. Every configuration lives in the package, so a
``pip install`` is enough to rebuild any architecture.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from .config import ViTConfig
from .model import ViTRecognizer
from .ppocr import PPOCRConfig, PPOCRRecognizer
from .ppocr_det import PPOCRDetConfig, PPOCRDetector

__all__ = [
    "AnyConfig",
    "build_model",
    "config_from_dict",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
]

AnyConfig = ViTConfig | PPOCRConfig | PPOCRDetConfig
_REGISTRY: dict[str, Callable[[], Any]] = {}
#: config class -> network class, one entry per family
FAMILIES: dict[type, type[nn.Module]] = {ViTConfig: ViTRecognizer, PPOCRConfig: PPOCRRecognizer,
                                         PPOCRDetConfig: PPOCRDetector}


def register_model(name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator: register a function returning the config (of a class in :data:`FAMILIES`) of ``name``."""

    def deco(fn: Callable[[], Any]) -> Callable[[], Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


@register_model("siga-vit-t")
def _siga_vit_t() -> ViTConfig:
    """ViT-Tiny: 192 wide, 12 blocks, 3 heads; decoder 192 wide, 3 layers."""
    return ViTConfig(arch="siga-vit-t", embed_dim=192, depth=12, num_heads=3, dec_dim=192, dec_heads=3)


@register_model("siga-vit-s")
def _siga_vit_s() -> ViTConfig:
    """ViT-Small: 384 wide, 12 blocks, 6 heads; decoder 384 wide, 3 layers."""
    return ViTConfig(arch="siga-vit-s", embed_dim=384, depth=12, num_heads=6, dec_dim=384, dec_heads=6)


@register_model("siga-vit-b")
def _siga_vit_b() -> ViTConfig:
    """ViT-Base as in CCD: 512 wide, 12 blocks, 8 heads; decoder 512 wide, 3 layers."""
    return ViTConfig(arch="siga-vit-b", embed_dim=512, depth=12, num_heads=8, dec_dim=512, dec_heads=8)


@register_model("siga-vit-t-ctc")
def _siga_vit_t_ctc() -> ViTConfig:
    """The CPU student: ViT-Tiny width (192, 3 heads), 8 blocks on 8x8 patches (a 4x16 grid of 64 tokens), CTC only."""
    return ViTConfig(arch="siga-vit-t-ctc", patch_size=(8, 8), embed_dim=192, depth=8, num_heads=3, dec_dim=192,
                       dec_depth=0, dec_heads=3)


@register_model("siga-lcnet-t-ctc")
def _siga_lcnet_t_ctc() -> PPOCRConfig:
    """The CPU student of the PP-OCR family: PP-OCRv6 small's layers, 3/4/2 blocks per stage instead of 3/7/3 (SE only
    in the stem stage), read at 32 pixels high (at least 128 wide) instead of 48 (at least 320), 94-character CTC."""
    return PPOCRConfig(arch="siga-lcnet-t-ctc", depths=(3, 4, 2), se_blocks=((0,), (), ()), charset="94", height=32,
                       min_width=128, max_width=1064)


@register_model("ppocrv6-small")
def _ppocrv6_small() -> PPOCRConfig:
    """PP-OCRv6 small rec: PPLCNetV4-style backbone (96/192/384), LightSVTR neck (120), CTC over 18,710 classes."""
    return PPOCRConfig()


@register_model("ppocrv6-small-attn")
def _ppocrv6_small_attn() -> PPOCRConfig:
    """PP-OCRv6 small (CTC over the full dictionary) plus a one-layer attention decoder (width 256, 8 heads, words of
    up to 25 characters) over the neck's frames that reads the 94 printable ASCII characters (``ppocrv6-en``): reads
    with ``ctc``, ``attention`` or ``joint``."""
    return PPOCRConfig(arch="ppocrv6-small-attn", dec_depth=1, dec_dim=256, dec_heads=8, dec_charset="ppocrv6-en")


@register_model("ppocrv6-det-small")
def _ppocrv6_det_small() -> PPOCRDetConfig:
    """PP-OCRv6 small text detector: PPLCNetV4 backbone (48/96/192/384), RepLKFPN neck (96, 7x7), DB head."""
    return PPOCRDetConfig()


@register_model("ppocrv6-det-tiny")
def _ppocrv6_det_tiny() -> PPOCRDetConfig:
    """PP-OCRv6 tiny text detector: PPLCNetV4 backbone (32/48/64/160), RepLKFPN neck (64, 5x5), DB head."""
    return PPOCRDetConfig(arch="ppocrv6-det-tiny", stem_channels=(16, 8), channels=(32, 48, 64, 160), neck_channels=64,
                          neck_kernel=5)


def list_models(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a glob ``pattern``, sorted (trained weights:
    :func:`str_distill.list_pretrained`)."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_config(name: str, **overrides: Any) -> Any:
    """The config of a registered architecture (its family's class), with fields overridden by keyword."""
    arch = name.split(".")[0]
    if arch not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    base = _REGISTRY[arch]()
    cfg = base.to_dict()
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise KeyError(f"unknown config fields {unknown} for {type(base).__name__}")
    cfg.update(overrides)
    return type(base).from_dict(cfg)


def config_from_dict(d: dict[str, Any]) -> Any:
    """Rebuild a config from its dict (``config.json``): the family is the one ``d["arch"]`` is registered in.

    A dict without ``arch`` or with an unregistered one is read as a ViT :class:`ViTConfig` (which then checks
    its fields strictly).

    Raises:
        ValueError: on fields the family does not have.
    """
    if not isinstance(d, dict):
        raise ValueError(f"a model config must be a JSON object, got {type(d).__name__}")
    arch = str(d.get("arch", "")).split(".")[0]
    cls = type(_REGISTRY[arch]()) if arch in _REGISTRY else ViTConfig
    return cls.from_dict(d)


def build_model(config: Any) -> Any:
    """A randomly initialized network for ``config`` (:class:`ViTRecognizer` or :class:`PPOCRRecognizer`)."""
    if type(config) not in FAMILIES:
        raise TypeError(f"no model family for config type {type(config).__name__}")
    return FAMILIES[type(config)](config)


def create_model(name: str, **overrides: Any) -> Any:
    """A randomly initialized network of a registered architecture (for training; use
    :meth:`str_distill.Recognizer.from_pretrained` for trained weights)."""
    return build_model(get_config(name, **overrides))
