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
import math
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["build_model", "build_trainer", "register", "run"]


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
                   help="override a ModelConfig field of a new model, e.g. embed_dim=64 (JSON values; repeatable)")
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


# --------------------------------------------------------------------------------------------------- building
def _model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in args.model_arg:
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError(f"--model-arg {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(val)
        except json.JSONDecodeError:
            out[key.strip()] = val
    if args.charset:
        out["charset"] = args.charset
    if args.max_length:
        out["max_label_length"] = args.max_length
    return out


def build_model(args: argparse.Namespace, resume_dir: Path | None) -> tuple[Any, list[str]]:
    """The model to train and the messages describing where its weights come from."""
    import torch

    from ..models.config import ModelConfig
    from ..models.registry import build_model as new_model
    from ..models.registry import config_from_dict, get_config
    from ..training.init import initialize_from, is_encoder_checkpoint

    torch.manual_seed(args.seed)
    if resume_dir is not None:
        cfg = json.loads((resume_dir / "model" / "config.json").read_text())
        return new_model(config_from_dict(cfg)), [f"model config from {resume_dir / 'model'}"]
    overrides = _model_overrides(args)
    if args.init and not args.model:
        enc = is_encoder_checkpoint(args.init)
        if enc is not None:
            cfg_file = enc.parent / "config.json"
            if not cfg_file.is_file():
                raise FileNotFoundError(f"{enc}: no config.json next to it; pass --model")
            base = ModelConfig.from_dict(json.loads(cfg_file.read_text())).to_dict()
            source: Any = args.init
        else:
            from ..hub.loading import load_model

            source = load_model(args.init)
            base = source.config.to_dict()
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise KeyError(f"unknown config fields {unknown}")
        base.update(overrides)
        model = new_model(config_from_dict(base))
        return model, initialize_from(model, source, str(args.init))
    model = new_model(get_config(args.model or "siga-vit-s", **overrides))
    msgs = [f"new {model.config.arch} with random weights"]
    if args.init:
        msgs = initialize_from(model, args.init)
    return model, msgs


def _resume_dir(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """``(run folder, checkpoint folder)`` for ``--resume`` (``(None, None)`` without it)."""
    if args.resume is None:
        return None, None
    target = Path(args.resume) if args.resume else (Path(args.output) if args.output else None)
    if target is None:
        raise ValueError("--resume without a folder needs --output (the run folder to continue)")
    if (target / "trainer_state.pt").is_file():
        return target.parent, target
    if (target / "checkpoint" / "trainer_state.pt").is_file():
        return target, target / "checkpoint"
    raise FileNotFoundError(f"--resume {str(target)!r}: no checkpoint there (expected checkpoint/trainer_state.pt)")


def build_trainer(args: argparse.Namespace, log: Any = None) -> Any:
    """Everything ``run`` needs: model (+ init), data stream factory, validation sets, objectives, trainer."""
    import torch

    from ..data.augment import Augmenter
    from ..data.collate import SampleProcessor
    from ..data.mix import MixedBatchStream, build_sources, default_num_workers, make_loader
    from ..data.spec import parse_specs
    from ..preprocess import Preprocessor
    from ..training.distributed import context, local_batch_size
    from ..training.evaluate import open_eval_sets
    from ..training.losses import LossWeights
    from ..training.trainer import TrainConfig, Trainer, resolve_device

    log = log or (lambda m: print(m, flush=True))
    if args.steps is None and args.minutes is None and not args.init:
        raise ValueError("give a budget: --steps N and/or --minutes M (fine-tuning with --init picks one itself)")
    run_dir, ckpt = _resume_dir(args)
    model, msgs = build_model(args, ckpt)
    for m in msgs:
        log(m)
    specs = parse_specs(args.data)
    tok = model.tokenizer
    sources, val_sets = build_sources(
        specs, tok.charset, tok.max_length, seed=args.seed, synth_pack=args.synth_pack,
        augment_real=args.augment in ("real", "all"), augment_synth=args.augment == "all", val_split=args.val_split,
    )
    if not sources:
        raise ValueError("every --data source has weight 0")
    val_sets += open_eval_sets(args.val_data)
    if args.val_synth:
        from ..data.mix import SynthSource

        synth_val = SynthSource(tok.charset, tok.max_length, args.synth_pack, seed=args.seed + 1_000_003,
                                length=args.val_synth)
        val_sets.append(("synth-val", synth_val))
    augmenter = Augmenter(strength=args.augment_strength) if args.augment != "none" else None
    pre = Preprocessor(model.config)
    if pre.variable_width:
        # variable-width models train at their minimum width (wider crops squeezed to it), normalized and padded
        # in the workers exactly as inference pads a single image
        pre = Preprocessor(model.config, fixed_width=int(pre.data["min_width"]))
        processor = SampleProcessor(tok, pre, augmenter, unknown=args.unknown_chars)
    else:
        # uint8 batches: a quarter of the bytes through shared/pinned memory and to the GPU; the trainer normalizes
        processor = SampleProcessor(tok, pre.to_uint8, augmenter, unknown=args.unknown_chars)
    device = resolve_device(args.device)
    dist = context()  # a torchrun job: this process's rank; one process otherwise
    n_real = sum(len(s.dataset) for s in sources if not s.infinite)
    if args.batch_size is None:
        args.batch_size = 256 if device.type == "cuda" else 32 if (args.init and n_real < 2000) else 64
    if args.steps is None and args.minutes is None:  # fine-tuning without a budget: ~8 epochs of the real data
        if not n_real:
            raise ValueError("give a budget (--steps or --minutes): the data has no finite real set to size it by")
        args.steps = int(min(3000, max(100, math.ceil(8 * n_real / args.batch_size))))
        log(f"budget: {args.steps} steps (about 8 epochs of {n_real} real images at batch {args.batch_size})")
    local_batch = local_batch_size(args.batch_size, dist.world_size)
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if dist.enabled else 1
    if args.workers is not None:
        workers = args.workers
    else:  # under torchrun the processes of a machine share its cores
        workers = default_num_workers() if per_machine == 1 else max(0, cores // per_machine - 1)
    if device.type == "cpu":  # the workers have their own cores: oversubscribing threads is very slow
        torch.set_num_threads(min(torch.get_num_threads(), max(1, cores // per_machine - workers)))

    def data(start: int) -> Any:  # this process's shard of every step under torchrun
        stream = MixedBatchStream(sources, processor, local_batch, seed=args.seed, start=start, rank=dist.rank,
                                  world_size=dist.world_size)
        return make_loader(stream, workers, pin_memory=device.type == "cuda")

    ctc_only = "attention" not in getattr(model, "decodings", ("attention",))
    lr = args.lr if args.lr is not None else (
        (5e-5 if ctc_only else 1e-4) if args.init or ckpt else 5e-4)
    cfg = TrainConfig(
        batch_size=args.batch_size, lr=lr, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup=args.warmup, min_lr_ratio=args.min_lr_ratio, steps=args.steps, minutes=args.minutes,
        clip_grad=args.clip_grad, label_smoothing=args.label_smoothing,
        loss_weights=LossWeights.parse(args.loss_weights), ema=args.ema, precision=args.precision,
        compile=args.compile, gpu_augment=args.gpu_augment, reuse=args.reuse, log_every=args.log_every,
        val_every=args.val_every,
        save_every=args.save_every, save_minutes=args.save_minutes, val_max_samples=args.val_max_samples,
        val_protocol=args.val_protocol, save_dtype=args.save_dtype, max_shard_mb=args.max_shard_mb,
        progress=args.progress, seed=args.seed, freeze=tuple(args.freeze), freeze_bn=args.freeze_bn,
        keep_best=args.keep_best, patience=args.patience,
    )
    objectives: list[Any] = []
    if args.teacher:
        from ..hub.loading import load_model
        from ..training.distill import CTCDistillation, FeatureDistillation, TeacherRunner, input_adapter

        if args.teacher == "init" and not args.init:
            raise ValueError("--teacher init needs --init (the weights to keep a frozen copy of)")
        teacher = load_model(args.init if args.teacher == "init" else args.teacher)
        adapter = input_adapter(model.config, teacher.config)  # e.g. 32x128 RGB student -> 48xW BGR teacher
        runner = TeacherRunner(teacher, adapter)  # one teacher pass per batch, shared by both objectives
        if args.teacher_weight > 0:
            objectives.append(CTCDistillation(teacher, tok.charset, args.teacher_weight, args.teacher_temperature,
                                              runner=runner))
            log(objectives[-1].describe())
        if args.teacher_features:
            objectives.append(FeatureDistillation(runner, model.config, args.teacher_features,
                                                  args.teacher_feature_weight))
            log(objectives[-1].describe())
        if not objectives:
            raise ValueError("--teacher with --teacher-weight 0 needs --teacher-features (else it teaches nothing)")
    if args.distill == "clip":
        from ..training.clip import build_objective

        objectives.append(build_objective(model, args))
        log(objectives[-1].describe())
    out = run_dir or Path(args.output or f"runs/{model.config.arch}-{time.strftime('%Y%m%d-%H%M%S')}")
    mix = ", ".join(f"{s.name} {w:.2f}" for s, w in zip(sources, MixedBatchStream(sources, processor, 1).weights))
    log(f"data: {mix}; validation: {', '.join(n for n, _ in val_sets) or 'none'}; {workers} workers; lr {lr:g}")
    if dist.enabled:
        log(f"distributed: {dist.world_size} processes, {local_batch} samples each per step")
    info = {"argv": sys.argv[1:], "data": [s.text for s in specs], "init": args.init, "init_messages": msgs,
            "sources": {s.name: len(s.dataset) if not s.infinite else None for s in sources}, "workers": workers}
    trainer = Trainer(model, cfg, data, out, objectives, val_sets, device, log=log, run_info=info)
    if ckpt is not None:
        saved = json.loads(torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=True)["config"])
        diff = {k: (saved.get(k), v) for k, v in cfg.to_dict().items() if saved.get(k) != v and k in saved}
        diff = {k: v for k, v in diff.items() if not (isinstance(v[0], list) and tuple(v[0]) == v[1])}
        if diff:
            log("note: settings differ from the checkpoint's (resume is exact only with the same ones): "
                + ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items()))
        trainer.resume(ckpt)
    return trainer


def run(args: argparse.Namespace) -> int:
    """Entry point of ``str-distill train``; returns the exit code.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), the process joins the job's process group first (gloo on CPUs,
    nccl on CUDA) and trains its share; only process 0 prints and writes files.
    """
    from ..training.distributed import run_entry

    return run_entry(_run, args)


def _run(args: argparse.Namespace, main: bool = True) -> int:
    try:
        trainer = build_trainer(args, log=None if main else (lambda m: None))
    except (ValueError, FileNotFoundError, KeyError, ImportError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.benchmark:
        from ..training.trainer import benchmark

        res = benchmark(trainer, steps=args.benchmark_steps)
        if main:
            print(json.dumps(res, indent=2))
        return 0
    before = None
    if trainer.val_sets and trainer.step == 0 and (args.init or args.teacher):
        res = trainer.validate()  # the starting point, on the same held-out samples (process 0's under torchrun)
        before = res.total if res is not None else None
    summary = trainer.fit()
    if not main:
        return 0
    if before is not None and summary.get("val"):
        after = summary["val"]["total"]
        print(f"validation word accuracy: before {100 * before.accuracy:.2f} % -> after "
              f"{100 * after['accuracy']:.2f} % ({after['count']} held-out images, protocol {args.val_protocol})"
              + (f"; best {100 * summary['best']['accuracy']:.2f} % at step {summary['best']['step']}"
                 if summary.get("best") else ""))
    print(json.dumps({k: summary[k] for k in ("step", "time", "final", "bad_samples", "best")}, default=str))
    return 0
