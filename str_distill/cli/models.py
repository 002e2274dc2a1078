"""``str-distill models``: the published weights (from the manifest) and the registered architectures."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["model_rows", "register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "models",
        help="list weights names and architectures",
        description="List the weights in the manifest (parameters, size, metrics, where the weights are or their "
        "status) and the registered architectures that have no published weights. Never uses the network.",
    )
    p.add_argument("pattern", nargs="?", default="*", help="glob on the name (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run)


def _where(name: str, rec: dict[str, Any]) -> str:
    """Where the weights would load from, checked locally only (bundled files, the Hugging Face cache)."""
    from ..hub.manifest import PUBLISHED, bundled_dir

    if rec.get("status") != PUBLISHED:
        return rec.get("status", "unknown")
    sources = rec.get("sources") or {}
    bundled, hub = sources.get("bundled"), sources.get("hf_hub")
    if bundled and all((bundled_dir() / f).is_file() for f in bundled["files"]):
        return f"bundled ({bundled_dir()})"
    if hub and hub.get("published") and hub.get("revision"):
        from huggingface_hub import try_to_load_from_cache

        cached = [try_to_load_from_cache(hub["repo_id"], f["name"], revision=hub["revision"]) for f in rec["files"]]
        state = "in the HF cache" if all(isinstance(c, str) for c in cached) else "downloaded on first use"
        return f"hf-hub {hub['repo_id']}@{hub['revision'][:12]} ({state})"
    return "published, but no source is available in this installation"


def _metrics(metrics: dict[str, Any]) -> str:
    parts = []
    for bench, value in metrics.items():
        v = value.get("accuracy") if isinstance(value, dict) else value
        parts.append(f"{bench} {v:.2f}" if isinstance(v, (int, float)) else bench)
    return ", ".join(parts) or "-"


def model_rows(pattern: str = "*") -> list[dict[str, Any]]:
    """One dict per manifest record, then per registered architecture without a record, matching ``pattern``."""
    import fnmatch

    import torch

    from ..hub.manifest import default_model, load_manifest
    from ..models.registry import create_model, list_models

    manifest = load_manifest()
    default = default_model()
    rows = []
    for name, rec in sorted(manifest.items()):
        if fnmatch.fnmatch(name, pattern):
            rows.append({"name": name, "default": name == default, "architecture": rec.get("architecture"),
                         "parameters": rec.get("num_parameters"),
                         "size_bytes": rec.get("size_bytes") or None, "status": rec.get("status"),
                         "where": _where(name, rec), "metrics": rec.get("metrics") or {}})
    for arch in list_models(pattern):
        if arch not in manifest:
            with torch.device("meta"):  # no memory, no initialization cost
                n = create_model(arch).num_parameters()
            rows.append({"name": arch, "default": False, "architecture": arch, "parameters": n, "size_bytes": None,
                         "status": "architecture only", "where": "no published weights (create_model() to train)",
                         "metrics": {}})
    return rows


def run(args: argparse.Namespace) -> int:
    rows = model_rows(args.pattern)
    if not rows:
        print(f"error: no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    table = [("NAME", "PARAMS", "SIZE", "WEIGHTS", "METRICS")]
    for r in rows:
        size = f"{r['size_bytes'] / 2**20:.1f} MiB" if r["size_bytes"] else "-"
        params = f"{r['parameters'] / 1e6:.1f}M" if r["parameters"] else "-"
        table.append((r["name"] + (" (default)" if r["default"] else ""), params, size, r["where"],
                      _metrics(r["metrics"])))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
    return 0
