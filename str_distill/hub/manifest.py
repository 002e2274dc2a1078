"""The weights manifest: one record per published weights name, shipped in the wheel as ``weights_manifest.json``.

Schema (``schema_version`` 1)::

    {"schema_version": 1,
     "default": "<name>",                  # what Recognizer.from_pretrained() loads without a name
     "models": {
       "<name>": {                         # "arch" or "arch.tag", e.g. "siga-vit-s"
         "status": "published" | "not yet trained",
         "task": "recognition" | "detection",  # optional; a record without it is a recognizer
         "description": str,
         "architecture": str,              # a registered architecture (str_distill.list_models())
         "config": {...},                  # the full config.to_dict() of the family the weights load into
         "charset": str,                   # copy of config["charset"] (null for a detector)
         "preprocessing": {...},           # copy of config.data_config(): height, width, resize, channel order,
                                           # mean, std, interpolation, padding (see preprocess.resolve_data_config);
                                           # a detector: config.detect_config()["preprocessing"] (resize rule,
                                           # limit side, mean/std, ...)
         # a detector also has "postprocessing": config.detect_config()["postprocessing"] (DB thresholds, unclip)
         "num_parameters": int,
         "dtype": "float32" | "float16" | "bfloat16" | null,             # of the stored tensors
         "files": [{"name": str, "sha256": 64 hex, "size": int}, ...],   # [] until trained
         "size_bytes": int,                # sum of the file sizes
         "sources": {
           "bundled": null | {"files": [str, ...]},      # paths under str_distill/weights/, parallel to "files"
           "hf_hub": null | {"repo_id": "org/name", "revision": 40 hex | null, "published": bool}
         },
         "license": str,
         "metrics": {"<benchmark>": {"accuracy": float, ...}, ...},      # measured, {} until trained
         "created": str | null,
         # optional: "source" (third-party weights: where the original came from, with its sha256),
         # "attribution", "training" (how the weights were trained)
       }}}

``files`` lists every file of the weights: either one ``*.safetensors`` or the shards plus their
``*.safetensors.index.json``; each file is checked against its sha256 on every load. On the Hugging Face hub the
files carry the names in ``files``; bundled copies live flat in ``str_distill/weights/`` under the names in
``sources.bundled.files`` (prefixed with the record name, so many records can share the folder).

Registering trained weights: ``save_pretrained(model, dir, dtype=torch.float16, max_shard_bytes=16 * 2**20)``,
then ``update_record("siga-vit-s", make_record("siga-vit-s", dir, bundle=True, metrics=...))``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
from pathlib import Path
from typing import Any

from ..models.registry import config_from_dict
from .serialization import CONFIG_NAME, INDEX_NAME, WEIGHTS_NAME, read_metadata, sha256_file

__all__ = [
    "BUNDLED_DIR",
    "DEFAULT_MODEL",
    "MANIFEST_NAME",
    "REQUIRED_FIELDS",
    "bundled_dir",
    "default_model",
    "get_record",
    "list_pretrained",
    "load_manifest",
    "make_record",
    "manifest_path",
    "update_record",
    "validate_manifest",
]

MANIFEST_NAME = "weights_manifest.json"
#: What ``Recognizer.from_pretrained()`` loads without a name when the manifest names no ``default`` (a test keeps
#: the two equal).
DEFAULT_MODEL = "ppocrv6-small.scene-ft-neck"
SCHEMA_VERSION = 1
PUBLISHED = "published"
NOT_TRAINED = "not yet trained"
REQUIRED_FIELDS = (
    "status", "description", "architecture", "config", "charset", "preprocessing", "num_parameters", "dtype",
    "files", "size_bytes", "sources", "license", "metrics",
)
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: Where bundled weight files live (``str_distill/weights/``); tests point it elsewhere.
BUNDLED_DIR: Path = _PACKAGE_DIR / "weights"
#: Explicit manifest location; ``None``: the wheel's copy, else the repository's top-level file.
MANIFEST_PATH: Path | None = None
#: Largest bundled file: bigger weights are shipped as shards (``save_pretrained(..., max_shard_bytes=...)``).
MAX_BUNDLED_FILE_BYTES = 16 * 2**20
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: What a record's weights do (``task``); a record without the field is a recognizer.
TASKS = ("recognition", "detection")


def record_processing(cfg: Any) -> dict[str, Any]:
    """The fields a record copies from its config: ``task``, ``charset``, ``preprocessing`` (and a detector's
    ``postprocessing``). The task is the network class's ``task`` attribute (recognizers have none)."""
    from ..models.registry import FAMILIES

    task = getattr(FAMILIES.get(type(cfg)), "task", "recognition")
    if hasattr(cfg, "detect_config"):
        spec = cfg.detect_config()
        return {"task": task, "charset": None, "preprocessing": spec["preprocessing"],
                "postprocessing": spec["postprocessing"]}
    return {"task": task, "charset": cfg.charset, "preprocessing": cfg.data_config()}


def manifest_path() -> Path:
    """The manifest in use: :data:`MANIFEST_PATH` if set, the copy inside the installed package, or the repo's."""
    if MANIFEST_PATH is not None:
        return Path(MANIFEST_PATH)
    packaged = _PACKAGE_DIR / MANIFEST_NAME
    return packaged if packaged.is_file() else _PACKAGE_DIR.parent / MANIFEST_NAME


def bundled_dir() -> Path:
    """The folder holding bundled weight files (:data:`BUNDLED_DIR`)."""
    return Path(BUNDLED_DIR)


def load_manifest(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Records by name. A missing manifest gives ``{}`` (an installation without published weights).

    Raises:
        ValueError: if the file is not a valid schema-1 manifest.
    """
    p = Path(path) if path is not None else manifest_path()
    if not p.is_file():
        return {}
    data = json.loads(p.read_text())
    if data.get("schema_version") != SCHEMA_VERSION or not isinstance(data.get("models"), dict):
        raise ValueError(f"{p}: not a schema {SCHEMA_VERSION} weights manifest")
    return data["models"]


def default_model(path: str | Path | None = None) -> str:
    """The name the manifest marks as ``default`` (what ``Recognizer.from_pretrained()`` loads without a name)."""
    p = Path(path) if path is not None else manifest_path()
    if p.is_file():
        name = json.loads(p.read_text()).get("default")
        if name:
            return str(name)
    return DEFAULT_MODEL


def list_pretrained(pattern: str = "*", path: str | Path | None = None) -> list[str]:
    """Names of the published weights (``arch`` or ``arch.tag``) matching a glob ``pattern``, sorted.

    Records of architectures whose weights are not trained yet are not listed (``str-distill models`` shows them).
    """
    import fnmatch

    return sorted(n for n, rec in load_manifest(path).items()
                  if rec.get("status") == PUBLISHED and fnmatch.fnmatch(n, pattern))


def get_record(name: str, path: str | Path | None = None) -> dict[str, Any] | None:
    """The record for ``name``, or ``None`` when the manifest has none."""
    return load_manifest(path).get(name)


def validate_manifest(path: str | Path | None = None, check_files: bool = True) -> list[str]:
    """Problems found in the manifest (an empty list when it is valid).

    Checks required fields, that ``config`` parses and agrees with the copied fields, published records' hashes,
    sizes and revisions, and (``check_files``) that every bundled file exists with the listed sha256 and size.
    """
    problems: list[str] = []
    p = Path(path) if path is not None else manifest_path()
    default = json.loads(p.read_text()).get("default") if p.is_file() else None
    models = load_manifest(path)
    if default is not None and (default not in models or models[default].get("status") != PUBLISHED):
        problems.append(f"default model {default!r} is not a published record of the manifest")
    for name, rec in models.items():
        missing = [f for f in REQUIRED_FIELDS if f not in rec]
        if missing:
            problems.append(f"{name}: missing fields {missing}")
            continue
        try:
            cfg = config_from_dict(rec["config"])
        except Exception as e:
            problems.append(f"{name}: config does not parse: {e}")
            continue
        copies = {"architecture": cfg.arch, **record_processing(cfg)}
        if rec.get("task", "recognition") not in TASKS:
            problems.append(f"{name}: unknown task {rec.get('task')!r} (known: {', '.join(TASKS)})")
        rec = {"task": "recognition", **rec}
        problems += [f"{name}: {k}={rec.get(k)!r} disagrees with config ({v!r})" for k, v in copies.items()
                     if rec.get(k) != v]
        if rec["status"] not in (PUBLISHED, NOT_TRAINED):
            problems.append(f"{name}: unknown status {rec['status']!r}")
        files, sources = rec["files"], rec["sources"]
        for f in files:
            if not _HEX64.match(str(f.get("sha256"))) or not isinstance(f.get("size"), int) or not f.get("name"):
                problems.append(f"{name}: file entry {f} needs name, sha256 (64 hex) and size")
        if rec["size_bytes"] != sum(int(f.get("size", 0)) for f in files):
            problems.append(f"{name}: size_bytes {rec['size_bytes']} is not the sum of the file sizes")
        hub, bundled = sources.get("hf_hub"), sources.get("bundled")
        if hub and hub.get("revision") is not None and not _HEX40.match(str(hub["revision"])):
            problems.append(f"{name}: hf_hub revision must be a full 40-hex commit, got {hub['revision']!r}")
        if rec["status"] == PUBLISHED:
            if not files:
                problems.append(f"{name}: published but lists no files")
            if not bundled and not (hub and hub.get("published") and hub.get("revision")):
                problems.append(f"{name}: published but neither bundled nor on the hub with a pinned revision")
        elif files or bundled or (hub and hub.get("published")):
            problems.append(f"{name}: status {rec['status']!r} but lists weights")
        if bundled:
            if len(bundled.get("files", [])) != len(files):
                problems.append(f"{name}: sources.bundled.files must parallel files")
            elif check_files:
                problems += [f"{name}: bundled file {f['name']} is over 16 MiB; ship it as shards"
                             for f in files if f["size"] > MAX_BUNDLED_FILE_BYTES]
                for f, rel in zip(files, bundled["files"]):
                    p = bundled_dir() / rel
                    if not p.is_file():
                        problems.append(f"{name}: bundled file {p} is missing")
                    elif p.stat().st_size != f["size"] or sha256_file(p) != f["sha256"]:
                        problems.append(f"{name}: bundled file {p} does not match its size/sha256")
    return problems


def _weight_files(source: Path) -> tuple[Path, list[Path]]:
    """(config.json or None-like path, weight files) of a ``save_pretrained`` directory or a .safetensors file."""
    if source.is_dir():
        index = source / INDEX_NAME
        if index.is_file():
            shards = sorted({source / s for s in json.loads(index.read_text())["weight_map"].values()})
            return source / CONFIG_NAME, [*shards, index]
        return source / CONFIG_NAME, [source / WEIGHTS_NAME]
    return source.parent / CONFIG_NAME, [source]


def make_record(
    name: str,
    source: str | Path,
    *,
    bundle: bool = False,
    hf_repo_id: str | None = None,
    hf_revision: str | None = None,
    license: str = "Apache-2.0",
    metrics: dict[str, Any] | None = None,
    description: str = "",
) -> dict[str, Any]:
    """Build a ``published`` manifest record from trained weights: sha256 and sizes are computed from the files.

    Args:
        name: the published name (``arch`` or ``arch.tag``).
        source: a ``save_pretrained`` directory (``config.json`` + ``model.safetensors`` or shards + index), or a
            ``.safetensors`` file with a sibling ``config.json`` or a ``config`` entry in its header metadata.
        bundle: copy the files into :func:`bundled_dir` as ``<name>.<file>`` and record them as bundled. Shards
            should be at most 16 MiB (``save_pretrained(..., max_shard_bytes=16 * 2**20)``).
        hf_repo_id, hf_revision: the hub repo holding the same files; ``hf_revision`` a full 40-hex commit.
        license, metrics, description: copied into the record (metrics as measured by ``str-distill eval``).

    Returns:
        The record (pass it to :func:`update_record`).
    """
    from ..models.registry import build_model

    src = Path(source)
    cfg_path, files = _weight_files(src)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{src}: weight files not found: {missing}")
    if cfg_path.is_file():
        cfg_dict = json.loads(cfg_path.read_text())
    else:
        meta = read_metadata(files[0])
        if "config" not in meta:
            raise FileNotFoundError(f"{src}: no {CONFIG_NAME} next to the weights and no 'config' in their metadata")
        cfg_dict = json.loads(meta["config"])
    cfg = config_from_dict(cfg_dict)
    if hf_revision is not None and not _HEX40.match(hf_revision):
        raise ValueError(f"hf_revision must be a full 40-hex commit hash, got {hf_revision!r}")
    import torch

    with torch.device("meta"):
        n_params = build_model(cfg).num_parameters()
    dtypes = sorted({dt for f in files if f.suffix == ".safetensors" for dt in _float_dtypes(f)})
    entries = [{"name": f.name, "sha256": sha256_file(f), "size": f.stat().st_size} for f in files]
    bundled = None
    if bundle:
        big = [f"{e['name']} ({e['size']} bytes)" for e in entries if e["size"] > MAX_BUNDLED_FILE_BYTES]
        if big:
            raise ValueError(f"bundled files must be at most 16 MiB, got {big}: save with "
                             f"save_pretrained(..., max_shard_bytes={MAX_BUNDLED_FILE_BYTES}) to shard them")
        bundled_dir().mkdir(parents=True, exist_ok=True)
        bundled = {"files": [f"{name}.{f.name}" for f in files]}
        for f, rel in zip(files, bundled["files"]):
            shutil.copyfile(f, bundled_dir() / rel)
    copied = record_processing(cfg)
    return {
        "status": PUBLISHED,
        "task": copied.pop("task"),
        "description": description,
        "architecture": cfg.arch,
        "config": cfg.to_dict(),
        **copied,
        "num_parameters": n_params,
        "dtype": dtypes[0] if len(dtypes) == 1 else None,
        "files": entries,
        "size_bytes": sum(e["size"] for e in entries),
        "sources": {
            "bundled": bundled,
            "hf_hub": {"repo_id": hf_repo_id, "revision": hf_revision, "published": hf_revision is not None}
            if hf_repo_id
            else None,
        },
        "license": license,
        "metrics": dict(metrics or {}),
        "created": _dt.date.today().isoformat(),
    }


def _float_dtypes(path: Path) -> set[str]:
    from safetensors import safe_open

    names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    with safe_open(str(path), framework="pt") as f:
        return {names[dt] for k in f.keys() if (dt := str(f.get_slice(k).get_dtype())) in names}


def update_record(name: str, record: dict[str, Any], path: str | Path | None = None, default: bool = False) -> Path:
    """Insert or replace ``name``'s record in the manifest file (created if missing), keeping names sorted.

    ``default=True`` also makes ``name`` the manifest's default model.

    Raises:
        ValueError: if the record lacks a required field.
    """
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        raise ValueError(f"record for {name!r} lacks fields {missing}")
    p = Path(path) if path is not None else manifest_path()
    models = load_manifest(p)
    models[name] = record
    default = name if default else json.loads(p.read_text()).get("default") if p.is_file() else None
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    if default:
        data["default"] = default
    data["models"] = dict(sorted(models.items()))
    p.write_text(json.dumps(data, indent=2) + "\n")
    return p
