"""The configuration of a training run (:class:`TrainConfig`): hyper-parameters, budget, precision, validation and
saving. :class:`~str_distill.training.trainer.Trainer` runs it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..devices import DTYPES
from .losses import LossWeights
from .schedule import LRSchedule

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Hyper-parameters and housekeeping of a run (the CLI flags map one to one; see ``docs/training.md``).

    Attributes:
        batch_size: samples per step (the data stream must produce batches of this size); under ``torchrun`` the
            global batch, of which each of the ``N`` processes takes ``batch_size / N``.
        lr: peak learning rate; weight_decay, betas: AdamW (no decay on biases, norms, position embeddings).
        schedule, warmup, min_lr_ratio: see :class:`~str_distill.training.schedule.LRSchedule`.
        steps: step budget; minutes: wall-clock budget of the training loop (either or both; first reached wins).
        clip_grad: max global gradient norm (0 disables clipping; the norm is logged either way).
        label_smoothing: for the decoder cross-entropies.
        loss_weights: weights of the ar / parallel / cloze / CTC terms.
        ema: EMA decay (0 = off); validation and the final weights then use the EMA weights.
        precision: ``"auto"`` (bf16 autocast on CUDA, and on CPUs with native bfloat16 kernels such as AVX512-BF16
            or AMX; fp32 on other CPUs), ``"bf16"`` or ``"fp32"``.
        compile: ``torch.compile`` the teacher-forced forward (fixed-length targets keep shapes static).
        gpu_augment: apply :class:`~str_distill.data.augment.GpuAugment` on the device.
        reuse: train on each data batch for this many consecutive steps; repeats always get a fresh GPU
            augmentation (for data-bound machines: the CPU renders ``1 / reuse`` of the images the GPU consumes).
        log_every: steps between metric records; val_every / save_every: steps between validations / checkpoints
            (0 = only at the end); save_minutes: also checkpoint when this much time passed since the last one.
        val_max_samples: cap per validation set; val_protocol: ``"36"`` or ``"94"``; val_batch_size.
        save_dtype: dtype of the final weights; max_shard_mb: shard them into files of at most this size.
        progress: ``"auto"`` (a bar on a terminal, log lines otherwise), ``"bar"``, ``"log"``, ``"none"``.
        seed: seeds torch (initialization is done by the caller; this seeds dropout and GPU augmentation).
        freeze: parts of the model held fixed (names from the model's ``parts``: ``backbone``, ``neck``,
            ``head`` for PP-OCR models; ``encoder``, ``ctc_head``, ``decoder`` for ViT recognizers).
        freeze_bn: keep BatchNorm layers in eval mode (running statistics fixed) while training.
        keep_best: also export the weights of the best validation so far to ``best/`` (early stopping keeps them);
            the best is the highest word accuracy, ties broken by the higher 1-NED.
        patience: stop after this many validations without a better score (0 = never stop early).
    """

    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup: float = 0.05
    min_lr_ratio: float = 0.01
    steps: int | None = None
    minutes: float | None = None
    clip_grad: float = 3.0
    label_smoothing: float = 0.1
    loss_weights: LossWeights = field(default_factory=LossWeights)
    ema: float = 0.0
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = False
    gpu_augment: bool = False
    reuse: int = 1
    log_every: int = 50
    val_every: int = 1000
    save_every: int = 1000
    save_minutes: float = 10.0
    val_max_samples: int | None = 2000
    val_protocol: Literal["36", "94"] = "36"
    val_batch_size: int = 256
    save_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    max_shard_mb: float | None = None
    progress: Literal["auto", "bar", "log", "none"] = "auto"
    seed: int = 0
    freeze: tuple[str, ...] = ()
    freeze_bn: bool = False
    keep_best: bool = False
    patience: int = 0

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ValueError("give a budget: steps and/or minutes")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")
        if self.reuse < 1:
            raise ValueError(f"reuse must be >= 1, got {self.reuse}")
        self.freeze = tuple(self.freeze)
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.save_dtype not in DTYPES:
            raise ValueError(f"save_dtype must be one of {sorted(DTYPES)}, got {self.save_dtype!r}")
        LRSchedule(self.schedule, self.warmup, self.min_lr_ratio)  # validates

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss_weights"] = self.loss_weights.to_dict()
        return d
