"""``str-distill pretrain --method ccd``: self-supervised pretraining of the encoder on unlabeled images.

Also under ``torchrun --nproc_per_node N -m str_distill pretrain ...`` (``--batch-size`` is then the global batch).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "run"]


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _momentum(text: str) -> float:
    """``--momentum`` value: a float in ``[0, 1]`` or ``paper`` (CCD's 0.9995)."""
    from ..training.ccd.pretrain import PAPER_MOMENTUM

    if text == "paper":
        return PAPER_MOMENTUM
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'paper', got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"momentum must lie in [0, 1], got {value}")
    return value


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised pretraining of the encoder (CCD) on unlabeled images",
        description="Character-to-character distillation (CCD) on unlabeled text crops; labels, if any, are ignored. "
        "Writes OUT/config.json + OUT/encoder.safetensors (the teacher's encoder; fine-tune it with "
        "`str-distill train --init OUT`), OUT/ccd_heads.safetensors, OUT/ccd_state.pt (resume) and OUT/log.jsonl.",
    )
    p.add_argument("--method", choices=("ccd",), default="ccd", help="pretraining method (default: ccd)")
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="SPEC",
        help="SOURCE[:WEIGHT]: synth, a labels.tsv folder, an LMDB, a folder of sets or any folder of images",
    )
    p.add_argument("--model", default="siga-vit-s", help="architecture whose encoder is pretrained")
    p.add_argument(
        "--model-arg",
        "--set",
        dest="overrides",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the model config, e.g. --model-arg depth=6 (repeatable)",
    )
    p.add_argument("--steps", type=int, help="optimizer steps (budget)")
    p.add_argument("--minutes", type=float, help="training time (budget); the first budget reached ends the run")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, help="peak learning rate (default 5e-4 * batch_size / 256)")
    p.add_argument(
        "--momentum",
        type=_momentum,
        default=0.996,
        help="teacher EMA momentum at the start, cosine to 1 (default 0.996; 'paper' = CCD's 0.9995)",
    )
    p.add_argument(
        "--freeze-last-layer",
        type=float,
        default=0.01,
        metavar="FRACTION",
        help="fraction of the budget during which the DINO head's prototype layer is not updated (default 0.01, "
        "CCD's first 1M of ~95M images; 0 = never)",
    )
    p.add_argument("--seg-warmup", type=float, default=0.5, help="fraction of the budget using k-means regions")
    p.add_argument(
        "--min-seg-iou",
        type=float,
        default=0.5,
        help="after the warm-up, use a batch's predicted mask if its IoU with k-means is at least this (0: always)",
    )
    p.add_argument("--out-dim", type=int, default=65536, help="prototypes of the DINO head")
    p.add_argument("-o", "--out", "--output", dest="out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ccd_state.pt")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default: CPU cores - 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    p.add_argument("--log-every", type=int, default=50, help="steps between log.jsonl records")
    p.add_argument("--save-minutes", type=float, default=15.0, help="minutes between checkpoints")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``str-distill pretrain``; under ``torchrun`` joins the process group first."""
    from ..training.distributed import run_entry

    if args.steps is None and args.minutes is None:
        print("error: give a budget with --steps and/or --minutes", file=sys.stderr)
        return 2
    return run_entry(_run, args)


def _run(args: argparse.Namespace, main: bool = True) -> int:
    import os

    from ..data.mix import default_num_workers
    from ..training.ccd.model import CCDConfig
    from ..training.ccd.pretrain import PretrainConfig, pretrain
    from ..training.distributed import launched

    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if launched() else 1
    if args.workers is None and per_machine > 1:  # the processes of a machine share its cores
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        args.workers = max(0, cores // per_machine - 1)
    cfg = PretrainConfig(
        model=args.model,
        steps=args.steps,
        minutes=args.minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        freeze_last_layer=args.freeze_last_layer,
        seg_warmup=args.seg_warmup,
        amp=not args.no_amp,
        seed=args.seed,
        workers=default_num_workers() if args.workers is None else args.workers,
        log_every=args.log_every,
        save_minutes=args.save_minutes,
        ccd=CCDConfig(out_dim=args.out_dim, min_seg_iou=args.min_seg_iou),
    )
    cfg.model_overrides.update(dict(args.overrides))
    try:
        summary = pretrain(args.data, args.out, cfg, resume=args.resume, device=args.device)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not main:
        return 0
    logs = " ".join(f"{k}={v:.4g}" for k, v in summary["logs"].items())
    print(f"pretrained {summary['steps']} steps ({summary['images']} images, {summary['seconds']} s): {logs}")
    print(f"encoder: {summary['out']}/encoder.safetensors (fine-tune with `str-distill train --init {summary['out']}`)")
    return 0
