"""Training from Python: :class:`TrainSpec` says what to train and on what, :func:`finetune` runs it.

``str-distill train`` is this module behind a command line (every field of :class:`TrainSpec` is the flag of the
same name). Fine-tune the bundled default model on your own words, without forgetting what it read before::

    from str_distill.training import TrainSpec, finetune

    summary = finetune(TrainSpec(data=["my_words/"], init="ppocrv6-small.scene-ft-neck", val_split=0.1,
                                 teacher="init", freeze_bn=True, output="runs/my-model"))
    summary["final"]          # the trained weights: Recognizer.from_pretrained(summary["final"])

:func:`build_trainer` stops one step earlier, at a :class:`~str_distill.training.trainer.Trainer` ready to
``fit()``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from .trainer import Trainer

__all__ = ["TrainSpec", "build_model", "build_trainer", "finetune", "fit"]


@dataclass
class TrainSpec:
    """A training run: the model, the data, the budget and the outputs. Defaults are those of ``str-distill train``.

    Attributes:
        data: sources ``SOURCE[:WEIGHT]``: ``"synth"``, a folder with ``labels.tsv``, an LMDB, or a folder of such
            sets; weights are relative.
        model: architecture of a new model (default: the ``init`` source's, else ``siga-vit-s``).
        init: start from these weights: a name, a directory, a ``.safetensors`` file, ``hf-hub:org/repo``, or an
            encoder-only pretraining checkpoint.
        resume: continue a run exactly: a run folder or its ``checkpoint/`` (``""``: the ``output`` folder).
        charset, max_length: of the model (with ``init``, rows of shared characters are kept where the family
            allows); model_args: other config fields of a new model, e.g. ``{"embed_dim": 64}``.
        val_data: validation sets (folders or LMDBs); val_split: carve this fraction of every real ``data`` set
            out for validation; val_synth: also validate on this many fixed synthetic samples.
        augment: CPU augmentation of ``"real"`` sources (default), ``"all"`` or ``"none"``; augment_strength: its
            magnitude; gpu_augment: also augment whole batches on the device.
        unknown_chars: labels with characters outside the charset: ``"skip"`` the sample or ``"strip"`` them.
        synth_pack: resource pack folder of the synthetic renderer.
        workers: DataLoader workers (default: CPU cores - 2); reuse: train this many steps on each batch.
        steps, minutes: budget (either or both; with ``init`` and neither, about 8 epochs of the real data, 100 to
            3,000 steps).
        batch_size: default 256 on a GPU; on a CPU 64 (32 for fine-tuning sets under 2,000 images).
        lr: peak learning rate (default: 5e-4 from scratch, 1e-4 with ``init``, 5e-5 fine-tuning a CTC-only model).
        freeze: parts held fixed (``backbone``, ``neck``, ``head`` for PP-OCR models; ``encoder``, ``ctc_head``,
            ``decoder`` for ViT); freeze_bn: keep BatchNorm statistics fixed.
        keep_best, patience: export the best validation weights to ``best/``; stop after this many validations
            without improvement (0: never).
        weight_decay, schedule, warmup, min_lr_ratio, clip_grad, label_smoothing, ema, precision, compile, seed:
            see :class:`~str_distill.training.config.TrainConfig`; loss_weights: ``"ar=1,parallel=0.5,..."``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        distill: ``"clip"`` adds the CLIP-OCR objective (clip_weights, clip_arch, clip_decoder_layers).
        teacher: frozen teacher recognizer whose CTC posteriors are soft targets (``"init"``: a frozen copy of the
            ``init`` weights); teacher_weight, teacher_temperature; teacher_features: 1-based student blocks
            matched to the teacher's features, with teacher_feature_weight.
        output: run folder (default ``runs/<arch>-<date>-<time>``); log_every, val_every, val_max_samples,
            val_protocol, save_every, save_minutes, save_dtype, max_shard_mb, progress: see
            :class:`~str_distill.training.config.TrainConfig`.
    """

    data: list[str]
    model: str | None = None
    init: str | Path | None = None
    resume: str | None = None
    charset: str | None = None
    max_length: int | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    val_data: list[str] = field(default_factory=list)
    val_split: float = 0.0
    val_synth: int = 0
    augment: Literal["real", "all", "none"] = "real"
    augment_strength: float = 1.0
    gpu_augment: bool = False
    unknown_chars: Literal["skip", "strip"] = "skip"
    synth_pack: str | None = None
    workers: int | None = None
    reuse: int = 1
    steps: int | None = None
    minutes: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    freeze: tuple[str, ...] = ()
    freeze_bn: bool = False
    keep_best: bool = False
    patience: int = 0
    weight_decay: float = 0.05
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup: float = 0.05
    min_lr_ratio: float = 0.01
    clip_grad: float = 3.0
    label_smoothing: float = 0.1
    loss_weights: str = ""
    ema: float = 0.0
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    distill: Literal["clip"] | None = None
    teacher: str | None = None
    teacher_weight: float = 1.0
    teacher_features: tuple[int, ...] = ()
    teacher_feature_weight: float = 1.0
    teacher_temperature: float = 2.0
    clip_weights: str | None = None
    clip_arch: Literal["auto", "openai", "openclip"] = "auto"
    clip_decoder_layers: Literal["all-but-last", "all"] = "all-but-last"
    output: str | None = None
    log_every: int = 50
    val_every: int = 1000
    val_max_samples: int | None = 2000
    val_protocol: Literal["36", "94"] = "36"
    save_every: int = 1000
    save_minutes: float = 10.0
    save_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    max_shard_mb: float | None = None
    progress: Literal["auto", "bar", "log", "none"] = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            raise TypeError(f"data must be a list of sources, got the string {self.data!r}")
        self.data, self.val_data = list(self.data), list(self.val_data)
        self.freeze, self.teacher_features = tuple(self.freeze), tuple(self.teacher_features)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainSpec:
        """The spec of parsed ``str-distill train`` arguments (``--model-arg KEY=VALUE`` become ``model_args``).

        Raises:
            ValueError: a ``--model-arg`` without ``=``.
        """
        model_args: dict[str, Any] = {}
        for item in getattr(args, "model_arg", None) or []:
            key, sep, val = item.partition("=")
            if not sep:
                raise ValueError(f"--model-arg {item!r}: expected KEY=VALUE")
            try:
                model_args[key.strip()] = json.loads(val)
            except json.JSONDecodeError:
                model_args[key.strip()] = val
        names = {f.name for f in fields(cls)} - {"model_args"}
        return cls(**{n: getattr(args, n) for n in names if hasattr(args, n)}, model_args=model_args)


def _model_overrides(spec: TrainSpec) -> dict[str, Any]:
    out: dict[str, Any] = dict(spec.model_args)
    if spec.charset:
        out["charset"] = spec.charset
    if spec.max_length:
        out["max_label_length"] = spec.max_length
    return out


def build_model(spec: TrainSpec, resume_dir: Path | None = None) -> tuple[Any, list[str]]:
    """The model to train (seeded with ``spec.seed``) and the messages describing where its weights come from:
    the config saved in ``resume_dir`` (a checkpoint folder), else ``spec.init`` and/or ``spec.model``."""
    import torch

    from ..models.config import ViTConfig
    from ..models.registry import build_model as new_model
    from ..models.registry import config_from_dict, get_config
    from .warm_start import initialize_from, is_encoder_checkpoint

    torch.manual_seed(spec.seed)
    if resume_dir is not None:
        cfg = json.loads((resume_dir / "model" / "config.json").read_text())
        return new_model(config_from_dict(cfg)), [f"model config from {resume_dir / 'model'}"]
    overrides = _model_overrides(spec)
    if spec.init and not spec.model:
        enc = is_encoder_checkpoint(spec.init)
        if enc is not None:
            cfg_file = enc.parent / "config.json"
            if not cfg_file.is_file():
                raise FileNotFoundError(f"{enc}: no config.json next to it; pass --model")
            base = ViTConfig.from_dict(json.loads(cfg_file.read_text())).to_dict()
            source: Any = spec.init
        else:
            from ..hub.loading import load_model

            source = load_model(spec.init)
            base = source.config.to_dict()
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise KeyError(f"unknown config fields {unknown}")
        base.update(overrides)
        model = new_model(config_from_dict(base))
        return model, initialize_from(model, source, str(spec.init))
    model = new_model(get_config(spec.model or "siga-vit-s", **overrides))
    msgs = [f"new {model.config.arch} with random weights"]
    if spec.init:
        msgs = initialize_from(model, spec.init)
    return model, msgs


def _resume_dir(spec: TrainSpec) -> tuple[Path | None, Path | None]:
    """``(run folder, checkpoint folder)`` for ``spec.resume`` (``(None, None)`` without it)."""
    if spec.resume is None:
        return None, None
    target = Path(spec.resume) if spec.resume else (Path(spec.output) if spec.output else None)
    if target is None:
        raise ValueError("--resume without a folder needs --output (the run folder to continue)")
    if (target / "trainer_state.pt").is_file():
        return target.parent, target
    if (target / "checkpoint" / "trainer_state.pt").is_file():
        return target, target / "checkpoint"
    raise FileNotFoundError(f"--resume {str(target)!r}: no checkpoint there (expected checkpoint/trainer_state.pt)")


def build_trainer(spec: TrainSpec, log: Callable[[str], None] | None = None) -> Trainer:
    """The :class:`~str_distill.training.trainer.Trainer` of ``spec``, ready to ``fit()``: the model (new, from
    ``spec.init`` or resumed), the data stream, the validation sets and the objectives (teacher, CLIP-OCR).

    Args:
        spec: what to train and on what.
        log: receives one line per message (default: print).

    Raises:
        ValueError, FileNotFoundError, KeyError: a spec that cannot run (no budget, unknown config fields, a
            missing checkpoint, a teacher that teaches nothing...); the message says what to change.
    """
    import torch

    from ..data.augment import Augmenter
    from ..data.collate import SampleProcessor
    from ..data.mix import MixedBatchStream, build_sources, default_num_workers, make_loader
    from ..data.spec import parse_specs
    from ..devices import resolve_device
    from ..preprocess import Preprocessor
    from .config import TrainConfig
    from .distributed import context, local_batch_size
    from .evaluate import open_eval_sets
    from .losses import LossWeights

    log = log or (lambda m: print(m, flush=True))
    if spec.steps is None and spec.minutes is None and not spec.init:
        raise ValueError("give a budget: --steps N and/or --minutes M (fine-tuning with --init picks one itself)")
    run_dir, ckpt = _resume_dir(spec)
    model, msgs = build_model(spec, ckpt)
    for m in msgs:
        log(m)
    data_specs = parse_specs(spec.data)
    tok = model.tokenizer
    sources, val_sets = build_sources(
        data_specs, tok.charset, tok.max_length, seed=spec.seed, synth_pack=spec.synth_pack,
        augment_real=spec.augment in ("real", "all"), augment_synth=spec.augment == "all", val_split=spec.val_split,
    )
    if not sources:
        raise ValueError("every --data source has weight 0")
    val_sets += open_eval_sets(spec.val_data)
    if spec.val_synth:
        from ..data.mix import SynthSource

        synth_val = SynthSource(tok.charset, tok.max_length, spec.synth_pack, seed=spec.seed + 1_000_003,
                                length=spec.val_synth)
        val_sets.append(("synth-val", synth_val))
    augmenter = Augmenter(strength=spec.augment_strength) if spec.augment != "none" else None
    pre = Preprocessor(model.config)
    if pre.variable_width:
        # variable-width models train at their minimum width (wider crops squeezed to it), normalized and padded
        # in the workers exactly as inference pads a single image
        pre = Preprocessor(model.config, fixed_width=int(pre.data["min_width"]))
        processor = SampleProcessor(tok, pre, augmenter, unknown=spec.unknown_chars)
    else:
        # uint8 batches: a quarter of the bytes through shared/pinned memory and to the GPU; the trainer normalizes
        processor = SampleProcessor(tok, pre.to_uint8, augmenter, unknown=spec.unknown_chars)
    device = resolve_device(spec.device)
    dist = context()  # a torchrun job: this process's rank; one process otherwise
    n_real = sum(len(s.dataset) for s in sources if not s.infinite)
    batch_size, steps = spec.batch_size, spec.steps
    if batch_size is None:
        batch_size = 256 if device.type == "cuda" else 32 if (spec.init and n_real < 2000) else 64
    if steps is None and spec.minutes is None:  # fine-tuning without a budget: ~8 epochs of the real data
        if not n_real:
            raise ValueError("give a budget (--steps or --minutes): the data has no finite real set to size it by")
        steps = int(min(3000, max(100, math.ceil(8 * n_real / batch_size))))
        log(f"budget: {steps} steps (about 8 epochs of {n_real} real images at batch {batch_size})")
    local_batch = local_batch_size(batch_size, dist.world_size)
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if dist.enabled else 1
    if spec.workers is not None:
        workers = spec.workers
    else:  # under torchrun the processes of a machine share its cores
        workers = default_num_workers() if per_machine == 1 else max(0, cores // per_machine - 1)
    if device.type == "cpu":  # the workers have their own cores: oversubscribing threads is very slow
        torch.set_num_threads(min(torch.get_num_threads(), max(1, cores // per_machine - workers)))

    def data(start: int) -> Any:  # this process's shard of every step under torchrun
        stream = MixedBatchStream(sources, processor, local_batch, seed=spec.seed, start=start, rank=dist.rank,
                                  world_size=dist.world_size)
        return make_loader(stream, workers, pin_memory=device.type == "cuda")

    ctc_only = "attention" not in getattr(model, "decodings", ("attention",))
    lr = spec.lr if spec.lr is not None else (
        (5e-5 if ctc_only else 1e-4) if spec.init or ckpt else 5e-4)
    cfg = TrainConfig(
        batch_size=batch_size, lr=lr, weight_decay=spec.weight_decay, schedule=spec.schedule,
        warmup=spec.warmup, min_lr_ratio=spec.min_lr_ratio, steps=steps, minutes=spec.minutes,
        clip_grad=spec.clip_grad, label_smoothing=spec.label_smoothing,
        loss_weights=LossWeights.parse(spec.loss_weights), ema=spec.ema, precision=spec.precision,
        compile=spec.compile, gpu_augment=spec.gpu_augment, reuse=spec.reuse, log_every=spec.log_every,
        val_every=spec.val_every,
        save_every=spec.save_every, save_minutes=spec.save_minutes, val_max_samples=spec.val_max_samples,
        val_protocol=spec.val_protocol, save_dtype=spec.save_dtype, max_shard_mb=spec.max_shard_mb,
        progress=spec.progress, seed=spec.seed, freeze=tuple(spec.freeze), freeze_bn=spec.freeze_bn,
        keep_best=spec.keep_best, patience=spec.patience,
    )
    objectives: list[Any] = []
    if spec.teacher:
        from ..hub.loading import load_model
        from .distill import CTCDistillation, FeatureDistillation, TeacherRunner, input_adapter

        if spec.teacher == "init" and not spec.init:
            raise ValueError("--teacher init needs --init (the weights to keep a frozen copy of)")
        teacher = load_model(spec.init if spec.teacher == "init" else spec.teacher)
        adapter = input_adapter(model.config, teacher.config)  # e.g. 32x128 RGB student -> 48xW BGR teacher
        runner = TeacherRunner(teacher, adapter)  # one teacher pass per batch, shared by both objectives
        if spec.teacher_weight > 0:
            objectives.append(CTCDistillation(teacher, tok.charset, spec.teacher_weight, spec.teacher_temperature,
                                              runner=runner))
            log(objectives[-1].describe())
        if spec.teacher_features:
            objectives.append(FeatureDistillation(runner, model.config, spec.teacher_features,
                                                  spec.teacher_feature_weight))
            log(objectives[-1].describe())
        if not objectives:
            raise ValueError("--teacher with --teacher-weight 0 needs --teacher-features (else it teaches nothing)")
    if spec.distill == "clip":
        from .clip import build_objective

        objectives.append(build_objective(model, spec))
        log(objectives[-1].describe())
    out = run_dir or Path(spec.output or f"runs/{model.config.arch}-{time.strftime('%Y%m%d-%H%M%S')}")
    mix = ", ".join(f"{s.name} {w:.2f}" for s, w in zip(sources, MixedBatchStream(sources, processor, 1).weights))
    log(f"data: {mix}; validation: {', '.join(n for n, _ in val_sets) or 'none'}; {workers} workers; lr {lr:g}")
    if dist.enabled:
        log(f"distributed: {dist.world_size} processes, {local_batch} samples each per step")
    init = None if spec.init is None else str(spec.init)
    info = {"argv": sys.argv[1:], "data": [s.text for s in data_specs], "init": init, "init_messages": msgs,
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


def finetune(spec: TrainSpec, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train as ``spec`` says and return the run's summary (:func:`build_trainer`, then :func:`fit`).

    Returns:
        ``{"step", "time", "final" (the folder of the trained weights), "val" and "val_before" (the validation
        scores after and before, ``["total"]["accuracy"]`` in ``[0, 1]``; ``None`` without them), "best",
        "bad_samples", ...}``.

    Raises:
        ValueError, FileNotFoundError, KeyError: see :func:`build_trainer`.
    """
    return fit(build_trainer(spec, log), spec)


def fit(trainer: Trainer, spec: TrainSpec) -> dict[str, Any]:
    """Run ``trainer`` (built from ``spec``) to the end of its budget and return its summary; when fine-tuning
    (``init`` or ``teacher``) with validation sets, the starting weights are read on them first (``val_before``)."""
    before = None
    if trainer.val_sets and trainer.step == 0 and (spec.init or spec.teacher):
        res = trainer.validate()  # the starting point, on the same held-out samples (process 0's under torchrun)
        before = res.to_dict() if res is not None else None
    summary = trainer.fit()
    summary["val_before"] = before
    return summary
