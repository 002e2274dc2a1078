"""Safetensors-only serialization: ``config.json`` + ``model.safetensors`` (optionally sharded), strict loading.

No pickle anywhere: weights are read with :func:`safetensors.torch.load_file` only. A file that is not valid
safetensors, an index naming anything but sibling shard files, or a config that is not a valid architecture is a
:class:`WeightsFormatError` naming the file. A config is first built on the ``meta`` device (no memory) and
checked against the stored tensors' names, shapes and kinds before the network is built for real.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "CONFIG_NAME",
    "INDEX_NAME",
    "WEIGHTS_NAME",
    "WeightsFormatError",
    "load_model_dir",
    "load_state_dict",
    "merge_shards",
    "model_from_state_dict",
    "parse_json",
    "read_index",
    "read_json",
    "read_metadata",
    "read_safetensors",
    "save_pretrained",
    "sha256_file",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
FORMAT_VERSION = "1"
#: Largest ``config.json`` / index file read (a real one is a few kB; a charset of 20k characters is ~80 kB).
MAX_JSON_BYTES = 16 * 2**20


class WeightsFormatError(ValueError):
    """A weights file, shard index or model config that is malformed, inconsistent or implausible.

    The message names the file and says what is wrong; nothing is loaded.
    """


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
    """The ``__metadata__`` map of a safetensors file (header only, no tensors read).

    Raises:
        WeightsFormatError: the file is not a valid safetensors file.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except OSError:
        raise
    except Exception as e:
        raise _not_safetensors(path, e) from None


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of one ``.safetensors`` file (:func:`safetensors.torch.load_file`, never pickle).

    Raises:
        WeightsFormatError: the header is malformed (bad length, JSON, dtype, shape or offsets, truncated data);
            the message names the file.
    """
    try:
        return load_file(str(path))
    except OSError:
        raise
    except Exception as e:
        raise _not_safetensors(path, e) from None


def _not_safetensors(path: str | Path, e: Exception) -> WeightsFormatError:
    return WeightsFormatError(f"{path}: not a valid safetensors file ({type(e).__name__}: {e}); nothing was loaded")


def read_json(path: str | Path, what: str = "JSON") -> Any:
    """A small JSON file (config, index), size-capped; any failure is a :class:`WeightsFormatError` naming it."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise WeightsFormatError(f"{path}: {size} bytes is too large for a {what} file (at most {MAX_JSON_BYTES})")
    return parse_json(path.read_bytes(), f"{path}", what)


def parse_json(text: str | bytes, source: str, what: str = "JSON") -> Any:
    """``json.loads`` whose failures (syntax, nesting too deep, bad encoding) are a :class:`WeightsFormatError`."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise WeightsFormatError(f"{source}: not valid {what} ({type(e).__name__}: {e})") from None


def read_index(path: str | Path) -> list[str]:
    """The shard file names a ``model.safetensors.index.json`` lists (sorted, each listed once).

    Raises:
        WeightsFormatError: malformed JSON, no ``weight_map`` of names to ``.safetensors`` files, or a shard name
            that is not a plain file name next to the index (a path such as ``../x`` or ``/x``).
    """
    index = read_json(path, "shard index")
    wmap = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wmap, dict) or not all(isinstance(v, str) for v in wmap.values()):
        raise WeightsFormatError(f"{path}: a shard index needs a 'weight_map' of tensor names to shard file names")
    shards = sorted(set(wmap.values()))
    for shard in shards:
        if Path(shard).name != shard or shard in (".", "..") or "\\" in shard or not shard.endswith(".safetensors"):
            raise WeightsFormatError(f"{path}: shard {shard!r} is not the name of a .safetensors file next to the "
                                     "index")
    return shards


def merge_shards(shards: dict[str, dict[str, torch.Tensor]], index: str | Path) -> dict[str, torch.Tensor]:
    """One state dict from the shards of ``index``; a tensor stored in two shards is a :class:`WeightsFormatError`."""
    state: dict[str, torch.Tensor] = {}
    for name, part in shards.items():
        twice = sorted(set(state) & set(part))
        if twice:
            raise WeightsFormatError(f"{index}: tensors {twice[:8]} are stored in more than one shard (last: {name})")
        state.update(part)
    return state


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of every shard listed by a ``model.safetensors.index.json``."""
    path = Path(path)
    if path.name.endswith(".index.json"):
        return merge_shards({s: read_safetensors(path.parent / s) for s in read_index(path)}, path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors weights are loaded (no pickle files)")
    return read_safetensors(path)


def model_from_state_dict(config: Any, state: dict[str, torch.Tensor], source: str = "") -> Any:
    """Build the network of ``config``'s family and load ``state`` strictly, in float32.

    Args:
        config: a config object or its dict (the family is chosen from its ``arch``).

    The config is first built on the ``meta`` device (no memory) and compared with ``state``, so that a config
    asking for a giant network is refused before anything is allocated; building is also cut short when it runs
    far more operations than the number of stored tensors warrants (e.g. ``depth: 1000000``).

    Raises:
        WeightsFormatError: the config is not a valid config of a registered family (unknown keys, wrong types,
            values its family refuses or cannot build).
        RuntimeError: naming missing and unexpected keys, or mismatched shapes or dtypes, when the weights do not
            match the architecture.
    """
    from ..models.registry import build_model, config_from_dict
    from ..preprocess import resolve_data_config

    where = source or "weights"
    try:
        if isinstance(config, dict):
            _check_plausible({k: v for k, v in config.items() if k != "extra"})  # "extra": free-form notes
        if not hasattr(config, "to_dict"):  # a dict (JSON), or something that is not a config at all
            config = config_from_dict(config)
        if hasattr(config, "data_config"):
            resolve_data_config(config)  # the preprocessing it describes: sizes, mean/std, ...
    except Exception as e:
        raise WeightsFormatError(f"{where}: invalid model config ({type(e).__name__}: {e}); nothing was loaded"
                                 ) from None
    expected = _meta_state(config, budget=64 * len(state) + 10_000, where=where)
    bad_shape = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})" for k, v in state.items()
                 if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if bad_shape:
        raise RuntimeError(f"weights {source or ''} do not match architecture {config.arch!r}: size mismatch of "
                           f"{bad_shape[:8]}")
    bad_dtype = [f"{k} {v.dtype} (expected {expected[k].dtype})" for k, v in state.items()
                 if k in expected and _kind(v.dtype) != _kind(expected[k].dtype)]
    if bad_dtype:
        raise RuntimeError(f"weights {source or ''} do not match architecture {config.arch!r}: dtype mismatch of "
                           f"{bad_dtype[:8]}")
    missing, unexpected = [k for k in expected if k not in state], [k for k in state if k not in expected]
    if missing or unexpected:  # the same message as load_state_dict's check below, before building anything
        raise RuntimeError(
            f"weights {source or ''} do not match architecture {config.arch!r}: "
            f"missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )
    model = build_model(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"weights {source or ''} do not match architecture {config.arch!r}: "
            f"missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )
    return model.eval()


#: Bounds on the values of a config (outside its free-form ``extra``): no architecture needs more, and a value
#: far beyond them (``depth: 10**9``) would exhaust memory or time while the network is built.
_MAX_CONFIG_INT, _MAX_CONFIG_ITEMS, _MAX_CONFIG_NESTING = 1 << 20, 4096, 4


def _check_plausible(value: Any, key: str = "config", level: int = 0) -> None:
    """Raise ``ValueError`` for a config value out of bounds: an integer below 0 or above ``2**20`` (sizes, counts
    and indices are never negative), a NaN or infinite float, a list or object of more than 4096 items or nested
    more than 4 deep."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not 0 <= value <= _MAX_CONFIG_INT:
            raise ValueError(f"{key} = {value} is out of range (0 to {_MAX_CONFIG_INT})")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{key} = {value} is not a finite number")
    elif isinstance(value, (list, tuple, dict)):
        if level >= _MAX_CONFIG_NESTING or len(value) > _MAX_CONFIG_ITEMS:
            raise ValueError(f"{key} is nested too deep or has too many items")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            _check_plausible(v, f"{key}[{k!r}]" if level else str(k), level + 1)


class _Budget(TorchFunctionMode):
    """Counts torch calls (tensor creations and initializations) and stops a build that exceeds ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.calls = limit, 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.calls += 1
        if self.calls > self.limit:
            raise _OverBudget
        return func(*args, **(kwargs or {}))


class _OverBudget(Exception):
    pass


def _meta_state(config: Any, budget: int, where: str) -> dict[str, torch.Tensor]:
    """The state dict (meta tensors: names, shapes, dtypes) of ``config``'s network, built without memory."""
    from ..models.registry import build_model

    try:
        with torch.device("meta"), _Budget(budget):
            return build_model(config).state_dict()
    except _OverBudget:
        raise WeightsFormatError(f"{where}: the model config describes a network far larger than the weights file "
                                 f"holds (building it took over {budget} operations); nothing was loaded") from None
    except Exception as e:
        raise WeightsFormatError(f"{where}: cannot build the architecture of the model config "
                                 f"({type(e).__name__}: {e}); nothing was loaded") from None


def _kind(dtype: torch.dtype) -> str:
    """``"float"``, ``"complex"``, ``"bool"`` or ``"int"``: the kind a stored tensor must share with the parameter."""
    if dtype.is_floating_point:
        return "float"
    if dtype.is_complex:
        return "complex"
    return "bool" if dtype == torch.bool else "int"


def load_model_dir(directory: str | Path, config_overrides: dict[str, Any] | None = None) -> Any:
    """Load a directory written by :func:`save_pretrained` (``config.json`` + weights), strictly."""
    d = Path(directory)
    cfg_path = d / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{d}: no {CONFIG_NAME}; expected a directory written by save_pretrained()")
    cfg = read_json(cfg_path, "model config")
    if not isinstance(cfg, dict):
        raise WeightsFormatError(f"{cfg_path}: a model config must be a JSON object, got {type(cfg).__name__}")
    cfg.update(config_overrides or {})
    weights = d / INDEX_NAME if (d / INDEX_NAME).is_file() else d / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{d}: neither {WEIGHTS_NAME} nor {INDEX_NAME} found")
    return model_from_state_dict(cfg, load_state_dict(weights), str(weights))
