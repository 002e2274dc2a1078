"""``str-distill eval``: word accuracy and 1-NED of a model on labelled sets (folders with labels.tsv or LMDBs).

Standard protocol (default): lower-case, keep ``[0-9a-z]``, exact match; samples whose filtered label is empty are
dropped. ``--protocol 94``: the 94 printable ASCII characters, case-sensitive. Prints one row per set and the
sample-weighted total; with ``--failures FILE``, writes every failure (set, path, label, prediction, confidence) to
FILE (no file is written without it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on labelled sets",
        description="Evaluate a model on labelled sets (folders with labels.tsv, LMDBs, or folders of sets) with the "
        "standard STR protocol, through the same predictor (and preprocessing) as inference.",
    )
    p.add_argument("--model", default=None, help="weights name, directory, .safetensors file or hf-hub:org/repo "
                   "(default: the bundled default model)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="sets to evaluate")
    p.add_argument("--protocol", choices=("36", "94"), default="36",
                   help="36: case-insensitive alphanumerics (default); 94: printable ASCII, case-sensitive")
    p.add_argument("--decoding", choices=("attention", "ctc", "greedy", "joint"), default=None,
                   help="default: the model's first method (attention for ViT recognizers, ctc for CTC-only models)")
    p.add_argument("--mode", choices=("autoregressive", "parallel"), default="autoregressive")
    p.add_argument("--refine-iters", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="inference precision (default: the model's default on this device)")
    p.add_argument("--max-samples", "--limit", dest="max_samples", type=int, metavar="N",
                   help="only the first N samples of each set (--limit is the same option)")
    p.add_argument("--val-split", type=float, metavar="F",
                   help="evaluate only the validation samples that `train --val-split F --seed S` (and `data pack "
                   "--val-split F --seed S`) carve out of each set")
    p.add_argument("--seed", type=int, default=0, help="seed of --val-split (default: %(default)s)")
    p.add_argument("--failures", metavar="FILE",
                   help="write every wrong or unreadable sample to this TSV file (default: no file)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--keep-aspect-ratio", action="store_true", help="resize without distortion and pad")
    p.add_argument("--min-width", type=int, default=None, metavar="PX",
                   help="variable-width models: pad narrower images to this width (default: the weights' own; "
                        "smaller is faster on short words)")
    p.add_argument("--local-files-only", action="store_true")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress on stderr (default: a bar on a terminal, otherwise a line every 30 s; "
                   "--progress: always a bar; --no-progress: nothing)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``str-distill eval``; returns the exit code (2 for bad arguments or unloadable weights)."""
    from ..predictor import Recognizer
    from ..training.evaluate import evaluate, open_eval_sets

    try:
        sets = open_eval_sets(args.data)
        if args.val_split is not None:
            from ..data.mix import split_validation

            sets = [(f"{name}:val", split_validation(ds, args.val_split, args.seed)[1]) for name, ds in sets]
        rec = Recognizer.from_pretrained(
            args.model, device=args.device, dtype=args.dtype, local_files_only=args.local_files_only,
            keep_aspect_ratio=args.keep_aspect_ratio, min_width=args.min_width,
        )
    except (ValueError, FileNotFoundError, KeyError, ImportError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failures = None if args.failures in (None, "", "none") else Path(args.failures)
    from .progress import Progress

    total = sum(len(ds) if args.max_samples is None else min(len(ds), args.max_samples) for _, ds in sets)
    with Progress("eval", total=total, unit="img", mode=args.progress) as bar:
        res = evaluate(
            _Counted(rec, bar), sets, protocol=args.protocol, decoding=args.decoding, mode=args.mode,
            refine_iters=args.refine_iters, batch_size=args.batch_size, max_samples=args.max_samples,
            failures=failures,
        )
    print(f"model {rec.name}")
    print(res.table())
    if failures is not None:
        print(f"failures written to {failures}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": rec.name, **res.to_dict()}, indent=2) + "\n")
    return 0


class _Counted:
    """A recognizer whose ``predict`` also advances a progress display by the images it read."""

    def __init__(self, rec: Any, bar: Any) -> None:
        self._rec, self._bar = rec, bar

    @property
    def model(self) -> Any:
        return self._rec.model

    def predict(self, images: Any, **kwargs: Any) -> list[Any]:
        out = self._rec.predict(images, **{**kwargs, "progress": False})
        self._bar.update(len(out))
        return out
