"""``str-distill train``: train or fine-tune a recognizer on mixed data sources.

Fine-tune the bundled default model on your own words in one command (batch size, steps and learning rate are
chosen from the data size; accuracy before and after is reported on a held-out split)::

    str-distill train --init ppocrv6-small --data my_words/

Train from scratch on synthetic + real data for 25 minutes::

    str-distill train --model siga-vit-s --data synth:0.7 IIIT5K_train:0.3 --minutes 25 --val-split 0.05

On several GPUs (or nodes) launch the same command with ``torchrun``; ``--batch-size`` is then the global batch::

    torchrun --nproc_per_node 4 -m str_distill train --model siga-vit-s --data synth --steps 100000 --batch-size 1024
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["build_trainer", "register", "run"]


def _layers(text: str) -> tuple[int, ...]:
    """``"6,12"`` -> ``(6, 12)`` (argparse type of ``--teacher-features``)."""
    try:
        layers = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated block numbers such as 6,12, got {text!r}") from None
    if not layers or min(layers) < 1:
        raise argparse.ArgumentTypeError(f"block numbers start at 1, got {text!r}")
    return layers


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a recognizer",
        description="Train or fine-tune a recognizer. Data: --data SOURCE[:WEIGHT] ... where SOURCE is 'synth', a "
        "folder with labels.tsv, an LMDB or a folder of such sets. Outputs in --output: final/ (weights), "
        "metrics.jsonl, curves.png, bad_samples.json, checkpoint/ (for --resume).",
        epilog="See docs/training.md for the loss weights, the augmentation and the GPU recipe.",
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", help="architecture to build (default: the --init source's, else siga-vit-s)")
    g.add_argument("--init", help="start from these weights: name, directory, .safetensors, hf-hub:org/repo, or an "
                   "encoder-only pretraining checkpoint; charset layers are re-initialized if --charset differs")
    g.add_argument("--resume", nargs="?", const="", metavar="DIR",
                   help="continue a run exactly: a run folder or its checkpoint/ (default: --output)")
    g.add_argument("--charset", help="charset of the model: 36, 62, 94, ppocrv6, ppocrv6-en or the literal "
                   "characters (with --init: rows of shared characters are kept where the model family allows)")
    g.add_argument("--max-length", type=int, help="max label length of a new model (default 25)")
    g.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ViTConfig field of a new model, e.g. embed_dim=64 (JSON values; repeatable)")
    d = p.add_argument_group("data")
    d.add_argument("--data", nargs="+", required=True, metavar="SPEC", help="SOURCE[:WEIGHT] ... (weights relative)")
    d.add_argument("--val-data", nargs="*", default=[], metavar="DIR", help="validation sets (folders or LMDBs)")
    d.add_argument("--val-split", type=float, default=0.0,
                   help="carve this fraction of every real --data set out for validation (not trained on)")
    d.add_argument("--val-synth", type=int, default=0, metavar="N",
                   help="also validate on N fixed synthetic samples (rendered with another seed)")
    d.add_argument("--augment", choices=("real", "all", "none"), default="real",
                   help="CPU augmentation for real sources only (default), all sources, or none")
    d.add_argument("--augment-strength", type=float, default=1.0, help="magnitude multiplier (default: 1)")
    d.add_argument("--gpu-augment", action="store_true", help="also augment whole batches on the device")
    d.add_argument("--unknown-chars", choices=("skip", "strip"), default="skip",
                   help="labels with characters outside the charset: skip the sample (default) or strip them; "
                   "both are counted in the bad-sample report")
    d.add_argument("--synth-pack", help="resource pack folder for 'synth' (default: $STR_DISTILL_SYNTH_PACK, "
                   ".synth_pack/, or system fonts)")
    d.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: CPU cores - 2)")
    d.add_argument("--reuse", type=int, default=1, metavar="K",
                   help="train K consecutive steps on each batch, repeats augmented on the GPU (data-bound machines)")
    o = p.add_argument_group("optimization")
    o.add_argument("--steps", type=int, help="step budget (with --init and no budget: about 8 epochs of the real "
                   "data, 100 to 3000 steps)")
    o.add_argument("--minutes", type=float, help="wall-clock budget of the training loop")
    o.add_argument("--batch-size", type=int, default=None,
                   help="default: 256 on a GPU; on a CPU 64 (32 for fine-tuning sets under 2,000 images)")
    o.add_argument("--lr", type=float, help="peak learning rate (default: 5e-4 from scratch, 1e-4 with --init; "
                   "5e-5 when fine-tuning a CTC-only model)")
    o.add_argument("--freeze", nargs="+", default=[], metavar="PART",
                   help="hold parts fixed: backbone, neck, head (PP-OCR models); encoder, ctc_head, decoder (ViT)")
    o.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm statistics fixed (eval mode)")
    o.add_argument("--keep-best", action="store_true", help="also export the best validation weights to best/")
    o.add_argument("--patience", type=int, default=0, help="stop after N validations without improvement")
    o.add_argument("--weight-decay", type=float, default=0.05)
    o.add_argument("--schedule", choices=("cosine", "onecycle", "constant"), default="cosine")
    o.add_argument("--warmup", type=float, default=0.05, help="warm-up as a fraction of the run (default: 0.05)")
    o.add_argument("--min-lr-ratio", type=float, default=0.01, help="final lr / peak lr of the cosine schedule")
    o.add_argument("--clip-grad", type=float, default=3.0, help="max gradient norm, 0 = off (default: 3)")
    o.add_argument("--label-smoothing", type=float, default=0.1)
    o.add_argument("--loss-weights", default="", metavar="ar=1,parallel=0.5,cloze=0.5,ctc=0.5",
                   help="weights of the decoder passes and CTC (defaults shown)")
    o.add_argument("--ema", type=float, default=0.0, metavar="DECAY", help="EMA of the weights, e.g. 0.999 (0 = off)")
    o.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto = bf16 autocast on CUDA, fp32 on CPU")
    o.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--device", default="auto")
    x = p.add_argument_group("distillation")
    x.add_argument("--distill", choices=("clip",), help="add a distillation objective")
    x.add_argument("--teacher", metavar="MODEL",
                   help="frozen teacher recognizer (name, directory, file) whose CTC posteriors are soft targets on "
                   "every batch; 'init' = a frozen copy of the --init weights (fine-tuning without forgetting)")
    x.add_argument("--teacher-weight", type=float, default=1.0,
                   help="weight of the teacher's soft CTC targets (default: 1; 0 turns them off)")
    x.add_argument("--teacher-features", metavar="LAYERS", type=_layers, default=(),
                   help="also match these 1-based student encoder blocks (e.g. 6,12) to the teacher's per-frame "
                   "features (ViT student, PP-OCR teacher; CLIP-OCR's consistency loss)")
    x.add_argument("--teacher-feature-weight", type=float, default=1.0,
                   help="weight of the feature matching (default: 1)")
    x.add_argument("--teacher-temperature", type=float, default=2.0, help="softening temperature (default: 2)")
    x.add_argument("--clip-weights", help="CLIP ViT checkpoint (.safetensors) for --distill clip")
    x.add_argument(
        "--clip-arch", default="auto", choices=("auto", "openai", "openclip"), help="CLIP key layout (--distill clip)"
    )
    x.add_argument(
        "--clip-decoder-layers",
        default="all-but-last",
        choices=("all-but-last", "all"),
        help="decoder layers distilled to CLIP's text tower (default: all but the last, which feeds the classifier, "
        "as in CLIP-OCR)",
    )
    r = p.add_argument_group("output and logging")
    r.add_argument("-o", "--output", help="run folder (default: runs/<arch>-<date>-<time>)")
    r.add_argument("--log-every", type=int, default=50)
    r.add_argument("--val-every", type=int, default=1000, help="steps between validations (0 = end only)")
    r.add_argument("--val-max-samples", type=int, default=2000, help="per validation set")
    r.add_argument("--val-protocol", choices=("36", "94"), default="36")
    r.add_argument("--save-every", type=int, default=1000, help="steps between checkpoints (0 = end only)")
    r.add_argument("--save-minutes", type=float, default=10.0, help="also checkpoint after this many minutes")
    r.add_argument("--save-dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="dtype of the final weights")
    r.add_argument("--max-shard-mb", type=float, help="shard the final weights into files of at most this size")
    r.add_argument("--progress", choices=("auto", "bar", "log", "none"), default="auto")
    r.add_argument("--benchmark", action="store_true",
                   help="measure data and training images/s and GPU utilization, then exit (no training)")
    r.add_argument("--benchmark-steps", type=int, default=30)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``str-distill train``; returns the exit code.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), the process joins the job's process group first (gloo on CPUs,
    nccl on CUDA) and trains its share; only process 0 prints and writes files.
    """
    from ..training.distributed import run_entry

    return run_entry(_run, args)


def build_trainer(args: argparse.Namespace, log: Any = None) -> Any:
    """The trainer of parsed ``str-distill train`` arguments (:func:`str_distill.training.run.build_trainer`)."""
    from ..training.run import TrainSpec
    from ..training.run import build_trainer as build

    return build(TrainSpec.from_args(args), log)


def _run(args: argparse.Namespace, main: bool = True) -> int:
    from ..training.run import TrainSpec
    from ..training.run import build_trainer as build
    from .progress import Heartbeat

    # output not on a terminal (a file, a CI log): a line at least every minute, even between two log lines
    logging = main and (args.progress == "log" or (args.progress == "auto" and not sys.stderr.isatty()))
    heartbeat = Heartbeat("train", enabled=logging)
    try:
        spec = TrainSpec.from_args(args)
        trainer = build(spec, heartbeat.log if main else (lambda m: None))
    except (ValueError, FileNotFoundError, KeyError, ImportError, RuntimeError) as e:
        heartbeat.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _fit(args, trainer, spec, main)
    finally:
        heartbeat.close()


def _fit(args: argparse.Namespace, trainer: Any, spec: Any, main: bool) -> int:
    from ..training.run import fit

    if args.benchmark:
        from ..training.benchmark import benchmark

        res = benchmark(trainer, steps=args.benchmark_steps)
        if main:
            print(json.dumps(res, indent=2))
        return 0
    summary = fit(trainer, spec)
    if not main:
        return 0
    before = summary.get("val_before")
    if before is not None and summary.get("val"):
        after = summary["val"]["total"]
        print(f"validation word accuracy: before {100 * before['total']['accuracy']:.2f} % -> after "
              f"{100 * after['accuracy']:.2f} % ({after['count']} held-out images, protocol {args.val_protocol})"
              + (f"; best {100 * summary['best']['accuracy']:.2f} % at step {summary['best']['step']}"
                 if summary.get("best") else ""))
    print(json.dumps({k: summary[k] for k in ("step", "time", "final", "bad_samples", "best")}, default=str))
    return 0
