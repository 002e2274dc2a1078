"""Safetensors-only serialization: ``config.json`` + ``model.safetensors`` (optionally sharded), strict loading.

No pickle anywhere: weights are read with :func:`safetensors.torch.load_file` only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "CONFIG_NAME",
    "INDEX_NAME",
    "WEIGHTS_NAME",
    "load_model_dir",
    "load_state_dict",
    "model_from_state_dict",
    "read_metadata",
    "save_pretrained",
    "sha256_file",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
FORMAT_VERSION = "1"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_pretrained(
    model: nn.Module,
    directory: str | Path,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (or shards + index) for :func:`load_model_dir`.

    Args:
        model: the recognizer (any registered family: it has ``config`` with ``to_dict()``).
        directory: created if missing.
        dtype: cast floating tensors (e.g. ``torch.float16`` for shipping); default keeps them.
        max_shard_bytes: split into ``model-0000k-of-0000N.safetensors`` files of at most this size.
        metadata: extra string pairs stored in the safetensors header.

    Every file gets the permissions of an ordinary new file (``0o666`` less the umask, e.g. ``0o644``).

    Returns:
        The directory.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {"format": "pt", "str_distill_format": FORMAT_VERSION, "arch": model.config.arch}
    meta["config"] = json.dumps(model.config.to_dict())  # a lone .safetensors file stays loadable
    meta.update(metadata or {})
    (out / CONFIG_NAME).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    for stale in [out / WEIGHTS_NAME, out / INDEX_NAME, *out.glob("model-*-of-*.safetensors")]:
        stale.unlink(missing_ok=True)
    if max_shard_bytes is None:
        _save_file(state, out / WEIGHTS_NAME, meta)
        return out
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in state.items():
        n = v.numel() * v.element_size()
        if shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += n
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        _save_file(shard, out / name, meta)
        weight_map.update(dict.fromkeys(shard, name))
    (out / INDEX_NAME).write_text(json.dumps({"metadata": meta, "weight_map": weight_map}, indent=2) + "\n")
    return out


def _save_file(state: dict[str, torch.Tensor], path: Path, meta: dict[str, str]) -> None:
    """:func:`safetensors.torch.save_file`, then the permissions of an ordinary new file (``0o666 & ~umask``).

    safetensors writes through a private temporary file (mode ``0o600``) and renames it: without this, weights
    shared with a group or published from a server would be readable by their owner only.
    """
    save_file(state, str(path), metadata=meta)
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    """The process umask, read without changing it where the OS tells it (Linux ``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` map of a safetensors file (header only, no tensors read)."""
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of every shard listed by a ``model.safetensors.index.json``."""
    path = Path(path)
    if path.name.endswith(".index.json"):
        index = json.loads(path.read_text())
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_file(str(path.parent / shard)))
        return state
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors weights are loaded (no pickle files)")
    return load_file(str(path))


def model_from_state_dict(config: Any, state: dict[str, torch.Tensor], source: str = "") -> Any:
    """Build the network of ``config``'s family and load ``state`` strictly, in float32.

    Args:
        config: a config object or its dict (the family is chosen from its ``arch``).

    Raises:
        RuntimeError: naming missing and unexpected keys, or mismatched shapes, when the weights do not match the
            architecture.
    """
    from ..models.registry import build_model, config_from_dict

    if isinstance(config, dict):
        config = config_from_dict(config)
    model = build_model(config)
    bad_shape = [f"{k} {tuple(v.shape)} (expected {tuple(model.state_dict()[k].shape)})" for k, v in state.items()
                 if k in model.state_dict() and tuple(v.shape) != tuple(model.state_dict()[k].shape)]
    if bad_shape:
        raise RuntimeError(f"weights {source or ''} do not match architecture {config.arch!r}: size mismatch of "
                           f"{bad_shape[:8]}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"weights {source or ''} do not match architecture {config.arch!r}: "
            f"missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )
    return model.eval()


def load_model_dir(directory: str | Path, config_overrides: dict[str, Any] | None = None) -> Any:
    """Load a directory written by :func:`save_pretrained` (``config.json`` + weights), strictly."""
    d = Path(directory)
    cfg_path = d / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{d}: no {CONFIG_NAME}; expected a directory written by save_pretrained()")
    cfg = json.loads(cfg_path.read_text())
    cfg.update(config_overrides or {})
    weights = d / INDEX_NAME if (d / INDEX_NAME).is_file() else d / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{d}: neither {WEIGHTS_NAME} nor {INDEX_NAME} found")
    return model_from_state_dict(cfg, load_state_dict(weights), str(weights))
