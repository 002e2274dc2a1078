"""One loader for every weights source: manifest names (bundled, HF cache, hub download), local paths, ``hf-hub:``.

Resolution order for ``load_model(source)``:

1. ``"hf-hub:org/repo[@revision]"``: ``config.json`` + ``model.safetensors`` (or shards) from that repo.
2. A name in the weights manifest whose files are bundled in this installation (``str_distill/weights/``).
3. An existing local path: a ``save_pretrained`` directory, a ``.safetensors`` file (config from its header metadata
   or a sibling ``config.json``) or a ``model.safetensors.index.json``.
4. A manifest name published on the hub: the Hugging Face cache first, then ``hf_hub_download`` unless offline
   (``local_files_only=True`` or ``HF_HUB_OFFLINE=1``: then the network is never touched).

Manifest files are checked against their sha256 on every load and refused on mismatch. State dicts load strictly.
Only safetensors are read: no pickle, no ``torch.load``. Failures list what was tried and what to do next; a
malformed weights file, shard index or config is a :class:`WeightsFormatError` naming the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .manifest import NOT_TRAINED, PUBLISHED, bundled_dir, load_manifest, manifest_path
from .serialization import (
    CONFIG_NAME,
    INDEX_NAME,
    WEIGHTS_NAME,
    WeightsFormatError,
    merge_shards,
    model_from_state_dict,
    parse_json,
    read_index,
    read_json,
    read_metadata,
    read_safetensors,
    sha256_file,
)

__all__ = ["HF_PREFIX", "WeightsFormatError", "WeightsIntegrityError", "WeightsNotFoundError", "is_offline",
           "load_model"]

HF_PREFIX = "hf-hub:"
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_NEXT_STEPS = (
    "pass a local path instead (a directory written by save_pretrained() or a .safetensors file), "
    "or 'hf-hub:org/repo@revision' for weights published on the Hugging Face hub"
)


class WeightsNotFoundError(FileNotFoundError):
    """No source could provide the weights; the message lists every place tried and what to do next."""


class WeightsIntegrityError(RuntimeError):
    """A weights file does not match the sha256 (or size) recorded in the manifest; it is not loaded."""


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub read it at import, or as the environment says now."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in ("1", "ON", "YES", "TRUE")


def load_model(
    source: str | Path,
    revision: str | None = None,
    local_files_only: bool = False,
    cache_dir: str | Path | None = None,
) -> nn.Module:
    """Load a recognizer (any family) in float32, in eval mode, on the CPU.

    Args:
        source: a manifest name (``"siga-vit-s"``), a local directory or file, or ``"hf-hub:org/repo[@revision]"``.
        revision: for ``hf-hub:`` sources only (branch, tag or, best, a full 40-hex commit).
        local_files_only: never use the network (also implied by ``HF_HUB_OFFLINE=1``).
        cache_dir: the Hugging Face cache to use instead of ``HF_HUB_CACHE``.

    Raises:
        WeightsNotFoundError: nothing could provide the weights (the message says what was tried and what to do).
        WeightsIntegrityError: a manifest file failed its sha256 check.
        WeightsFormatError: a weights file, shard index or config is malformed (the message names the file).
        RuntimeError: the weights do not match the architecture (missing/unexpected keys).
    """
    offline = local_files_only or is_offline()
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        repo, _, rev = source[len(HF_PREFIX) :].partition("@")
        if rev and revision and rev != revision:
            raise ValueError(f"{source!r} pins revision {rev!r} but revision={revision!r} was also given")
        return _load_hf_repo(repo, rev or revision, offline, cache_dir)
    if revision is not None:
        raise ValueError(f"revision= only applies to 'hf-hub:' sources, not {str(source)!r}")
    record = load_manifest().get(source) if isinstance(source, str) else None
    tried: list[str] = []
    if record is not None and record.get("status") == PUBLISHED:
        bundled = (record["sources"] or {}).get("bundled")
        if bundled:
            paths = {f["name"]: bundled_dir() / rel for f, rel in zip(record["files"], bundled["files"])}
            absent = [str(p) for p in paths.values() if not p.is_file()]
            if not absent:
                return _load_record(source, record, paths)
            tried.append(f"bundled files: missing from this installation ({', '.join(absent)})")
        else:
            tried.append("bundled files: none for this name in this installation")
    path = Path(source)
    if path.exists():
        return _load_local(path)
    if record is None:
        raise WeightsNotFoundError(_unknown_message(source))
    if record.get("status") != PUBLISHED:
        hub = (record.get("sources") or {}).get("hf_hub") or {}
        raise WeightsNotFoundError(
            f"no trained weights for {source!r} exist yet (manifest status: {record.get('status', NOT_TRAINED)!r}): "
            f"none are bundled in this installation and the Hugging Face repo {hub.get('repo_id') or '(none)'} has "
            f"no published revision. Next: {_NEXT_STEPS}; train weights with `str-distill train`; or upgrade "
            f"str-distill once weights are published (`str-distill models` lists what is available)."
        )
    hub = (record["sources"] or {}).get("hf_hub")
    if not hub or not hub.get("published") or not hub.get("revision"):
        tried.append("Hugging Face hub: no published repo/revision in the manifest")
    else:
        repo, rev = hub["repo_id"], hub["revision"]
        names = [f["name"] for f in record["files"]]
        for local in (True,) if offline else (True, False):
            try:
                paths = {n: Path(_fetch(repo, n, rev, cache_dir, local)) for n in names}
            except Exception as e:
                where = f"Hugging Face cache ({cache_dir or _hf_cache()})" if local else "download from the hub"
                tried.append(f"{where}: {repo}@{rev[:12]}: {_short(e)}")
                continue
            return _load_record(source, record, paths)  # sha256-checked
        if offline:
            tried.append("download: skipped, offline (local_files_only=True or HF_HUB_OFFLINE=1)")
    raise WeightsNotFoundError(
        f"could not load weights for {source!r}. Tried: " + "; ".join(tried) + f". Next: {_NEXT_STEPS}"
        + ("; or allow the download (unset HF_HUB_OFFLINE / local_files_only=False)" if offline else "")
        + "; or set HF_ENDPOINT to a reachable mirror."
    )


def _unknown_message(source: str | Path) -> str:
    from ..models.registry import list_models

    names = sorted(load_manifest())
    msg = f"{str(source)!r} is not an existing file or directory"
    if isinstance(source, Path) or os.sep in str(source) or str(source).endswith((".safetensors", ".json")):
        return msg
    msg += f", not a weights name in the manifest ({manifest_path()}; known: {', '.join(names) or 'none'})"
    msg += f", and not '{HF_PREFIX}org/repo[@revision]'"
    if str(source).split(".")[0] in list_models():
        msg += (f". {str(source)!r} is a registered architecture without published weights: "
                f"str_distill.create_model({str(source)!r}) builds an untrained network for training")
    return msg


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _fetch(repo: str, filename: str, revision: str | None, cache_dir: str | Path | None, local_only: bool) -> str:
    """``hf_hub_download`` with our user agent; ``local_only``: a cache lookup that never touches the network."""
    import huggingface_hub

    from .._version import __version__

    if local_only:  # not hf_hub_download(local_files_only=True): building its headers may query the hub
        found = huggingface_hub.try_to_load_from_cache(repo, filename, cache_dir=cache_dir, revision=revision)
        if isinstance(found, str):
            return found
        raise FileNotFoundError(f"{repo}/{filename} at revision {revision or 'main'} is not in the cache")
    return huggingface_hub.hf_hub_download(
        repo, filename, revision=revision, cache_dir=cache_dir, library_name="str-distill", library_version=__version__
    )


def _verify(name: str, entry: dict[str, Any], path: Path) -> None:
    size, digest = path.stat().st_size, None
    if size == entry["size"]:
        digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise WeightsIntegrityError(
            f"{path}: {'sha256 ' + digest if digest else f'size {size}'} does not match the manifest record of "
            f"{name!r} file {entry['name']!r} (sha256 {entry['sha256']}, {entry['size']} bytes); refusing to load. "
            "The file is corrupt or was modified: reinstall str-distill, or delete the cached file and retry "
            "(`hf cache delete`), or pass trusted weights as a local path."
        )


def _read_state(entry: Path, resolve: Callable[[str], Path]) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of the shards an index lists (names resolved by ``resolve``)."""
    if entry.name.endswith(".index.json"):
        return merge_shards({shard: read_safetensors(resolve(shard)) for shard in read_index(entry)}, entry)
    return read_safetensors(entry)


def _load_record(name: str, record: dict[str, Any], paths: dict[str, Path]) -> nn.Module:
    for f in record["files"]:
        _verify(name, f, paths[f["name"]])
    index = [n for n in paths if n.endswith(".index.json")]
    entry = paths[index[0]] if index else paths[record["files"][0]["name"]]

    def resolve(shard: str) -> Path:
        if shard not in paths:
            raise WeightsIntegrityError(f"{entry}: shard {shard!r} is not listed in the manifest record of {name!r}")
        return paths[shard]

    state = _read_state(entry, resolve)
    return model_from_state_dict(record["config"], state, f"{name!r} ({entry})")


def _load_local(path: Path) -> nn.Module:
    if path.is_dir():
        if (path / CONFIG_NAME).is_file() and ((path / WEIGHTS_NAME).is_file() or (path / INDEX_NAME).is_file()):
            entry = path / INDEX_NAME if (path / INDEX_NAME).is_file() else path / WEIGHTS_NAME
            return _from_file(entry)
        found = sorted(p.name for p in path.iterdir())[:10]
        raise WeightsNotFoundError(
            f"{path}: expected a directory written by save_pretrained() ({CONFIG_NAME} + {WEIGHTS_NAME} or "
            f"{INDEX_NAME}); found {found or 'nothing'}"
        )
    if path.suffix != ".safetensors" and not path.name.endswith(".index.json"):
        raise ValueError(
            f"{path}: only .safetensors weights are loaded (pickle files such as .pt/.pth/.ckpt/.bin are never "
            "unpickled); convert them with safetensors.torch.save_file() or save_pretrained()"
        )
    return _from_file(path)


def _from_file(path: Path) -> nn.Module:
    sibling = path.parent / CONFIG_NAME
    meta = {} if path.name.endswith(".index.json") else read_metadata(path)
    if "config" in meta:
        cfg = parse_json(meta["config"], f"{path} (its 'config' metadata)", "model config")
    elif sibling.is_file():
        cfg = read_json(sibling, "model config")
    else:
        hint = ""
        if meta.get("kind") == "ccd-pretrain":
            hint = " It is an encoder-only pretraining checkpoint: use it with `str-distill train --init`."
        raise WeightsNotFoundError(
            f"{path}: no model config: neither a 'config' entry in the safetensors metadata nor a sibling "
            f"{CONFIG_NAME}. Save with str_distill.hub.save_pretrained() or put the {CONFIG_NAME} next to it.{hint}"
        )
    state = _read_state(path, lambda shard: path.parent / shard)
    return model_from_state_dict(cfg, state, str(path))


def _load_hf_repo(repo: str, revision: str | None, offline: bool, cache_dir: str | Path | None) -> nn.Module:
    """``config.json`` + ``model.safetensors`` (or index + shards) of a hub repo: cache first when pinned."""
    org, _, rest = repo.partition("/")
    if not org or not rest or "/" in rest:
        raise ValueError(f"'{HF_PREFIX}{repo}': expected '{HF_PREFIX}org/repo' or '{HF_PREFIX}org/repo@revision'")
    pinned = revision is not None and bool(_HEX40.match(revision))
    attempts = [True] if offline else [True, False] if pinned else [False]
    where = f"{repo}@{revision or 'main'}"
    tried: list[str] = []
    for local in attempts:
        label = f"Hugging Face cache ({cache_dir or _hf_cache()})" if local else "download from the Hugging Face hub"
        try:
            entry = _fetch_weights(repo, revision, cache_dir, local)
        except Exception as e:
            tried.append(f"{label}: {_short(e)}")
            continue
        try:  # optional when the weights' metadata carries the config
            _fetch(repo, CONFIG_NAME, revision, cache_dir, local)
        except Exception:
            pass
        return _from_file(entry)
    advice = "allow the download (unset HF_HUB_OFFLINE / local_files_only=False), " if offline else ""
    raise WeightsNotFoundError(
        f"could not load '{HF_PREFIX}{where}'. Tried: " + "; ".join(tried) + f". Next: {advice}check the repo id and "
        f"revision, set HF_ENDPOINT to a reachable mirror, or pass a local path to the downloaded files."
    )


def _fetch_weights(repo: str, revision: str | None, cache_dir: str | Path | None, local: bool) -> Path:
    try:
        return Path(_fetch(repo, WEIGHTS_NAME, revision, cache_dir, local))
    except Exception as single:
        try:
            index = Path(_fetch(repo, INDEX_NAME, revision, cache_dir, local))
        except Exception:
            raise single from None
    for shard in read_index(index):
        _fetch(repo, shard, revision, cache_dir, local)
    return index
