"""CCD pretraining loop on unlabeled images: step/time budget, cosine schedules, JSONL log, checkpoints, resume.

Outputs in ``OUT``:

* ``config.json`` + ``encoder.safetensors``: the teacher's encoder, keys ``encoder.*`` exactly as in
  :meth:`ViTRecognizer.state_dict`, metadata ``kind=ccd-pretrain`` (what ``str-distill train --init OUT`` loads);
* ``ccd_heads.safetensors``: the teacher's segmentation and DINO heads (for ``str-distill visualize``);
* ``ccd_state.pt``: student, teacher, center, optimizer and counters, for ``--resume`` (tensors and plain types
  only, read back with ``torch.load(weights_only=True)``);
* ``log.jsonl``: one JSON object per logged step, including the collapse watch (``teacher_entropy``,
  ``teacher_batch_entropy``, ``feature_cosine``, ``teacher_feature_cosine``, see :class:`~.model.CCD`);
* ``curves.png``: losses, the collapse watch and the mask quality against the step (redrawn at every checkpoint).

Under ``torchrun`` (see :mod:`~str_distill.training.distributed`) the student trains in DistributedDataParallel:
``batch_size`` is the global batch, each process draws its own images (its own seed), the teacher center averages
every process's teacher outputs, logged values are averaged over the processes and process 0 writes the files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset, get_worker_info

from ...devices import resolve_device
from ...models.config import ViTConfig
from ...models.registry import get_config
from ..distributed import context as dist_context
from ..distributed import local_batch_size, wrap_ddp
from .model import CCD, CCDConfig, cosine

__all__ = [
    "CURVES_FILE",
    "ENCODER_FILE",
    "HEADS_FILE",
    "STATE_FILE",
    "ImageFiles",
    "PAPER_MOMENTUM",
    "PretrainConfig",
    "UnlabeledImages",
    "load_heads",
    "open_unlabeled",
    "pretrain",
]

ENCODER_FILE, HEADS_FILE, STATE_FILE, LOG_FILE, CURVES_FILE = (
    "encoder.safetensors",
    "ccd_heads.safetensors",
    "ccd_state.pt",
    "log.jsonl",
    "curves.png",
)
PAPER_MOMENTUM = 0.9995  # CCD's starting teacher momentum (CCD_pretrain_ViT_*.yaml)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


@dataclass
class PretrainConfig:
    """One pretraining run. The budget is ``steps`` or ``minutes`` (the first reached ends the run); every
    schedule follows ``progress = max(step / steps, elapsed / minutes)``.

    Attributes:
        model: registry architecture; ``model_overrides`` change fields of its config (e.g. a tiny test model).
            That config is what ``config.json`` holds, for fine-tuning.
        dropout: dropout inside the encoder while pretraining (CCD: none; drop-path stays the config's, 0.1).
        lr: peak AdamW learning rate; ``None`` = 5e-4 * batch_size / 256 (CCD); cosine to ``min_lr`` after a linear
            warm-up over the first ``warmup`` fraction.
        weight_decay: cosine from the first to the second value (0.04 -> 0.4); never on biases and norms.
        clip: gradient-norm clip.
        momentum: teacher EMA momentum at the start, cosine to 1. Default 0.996 (DINO's default); CCD's configs
            start at :data:`PAPER_MOMENTUM` (0.9995), which averages over ~2,000 steps, longer than a short run.
        freeze_last_layer: fraction of the budget during which the DINO head's prototype layer gets no update
            (its gradients are dropped after clipping). CCD freezes it for its first "epoch" of 1M images, about
            1% of its ~95M-image run: default 0.01. 0 disables the freeze.
        seg_warmup: fraction of the budget whose character regions come from k-means masks; later from the
            student's own segmentation.
        amp: bfloat16 autocast on CUDA.
    """

    model: str = "siga-vit-s"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    dropout: float = 0.0
    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 64
    lr: float | None = None
    min_lr: float = 1e-6
    warmup: float = 0.05
    weight_decay: tuple[float, float] = (0.04, 0.4)
    clip: float = 3.0
    momentum: float = 0.996
    freeze_last_layer: float = 0.01
    seg_warmup: float = 0.5
    amp: bool = True
    seed: int = 0
    workers: int = 4
    log_every: int = 50
    save_minutes: float = 15.0
    ccd: CCDConfig = field(default_factory=CCDConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- data
class ImageFiles(Dataset):
    """Every image file under a folder (recursive, sorted), as :class:`~str_distill.data.collate.RawSample` without
    labels: unlabeled data for pretraining."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)})")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        from ...data.collate import RawSample

        return RawSample(str(self.files[i]), "", str(self.files[i]))


def open_unlabeled(text: str) -> tuple[str, Any, float]:
    """One ``--data`` spec -> ``(name, dataset, weight)``; ``dataset`` is ``None`` for the infinite synthetic stream.

    Accepts what :func:`~str_distill.data.spec.parse_spec` accepts (``synth``, ``labels.tsv`` folders, LMDBs,
    folders of sets; labels are ignored) and, for pretraining only, any folder of image files.
    """
    from ...data.mix import open_set
    from ...data.spec import find_sets, parse_spec

    try:
        spec = parse_spec(text)
    except FileNotFoundError:
        head, sep, tail = text.rpartition(":")
        try:
            path, weight = (Path(head), float(tail)) if sep and head else (Path(text), 1.0)
        except ValueError:
            path, weight = Path(text), 1.0
        if not path.is_dir():
            raise
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"--data {text!r}: weight must be a finite number >= 0") from None
        return path.name, ImageFiles(path), weight
    weight = 1.0 if spec.weight is None else spec.weight
    if spec.kind == "synth":
        return "synth", None, weight
    parts = [open_set(p) for p in find_sets(spec.path)]
    return spec.name, parts[0] if len(parts) == 1 else ConcatDataset(parts), weight


class UnlabeledImages(IterableDataset):
    """Infinite stream of ``(3, H, W)`` uint8 images drawn at random from weighted ``--data`` specs (labels ignored).

    The sources are read with the training data readers (:func:`~str_distill.data.mix.open_set`,
    :class:`~str_distill.data.synth.SynthDataset`); see :func:`open_unlabeled`. Samples are drawn with replacement,
    each worker with its own generator seeded by ``(seed, worker)``. Unreadable images raise an error naming them.

    Args:
        specs: ``SOURCE[:WEIGHT]`` strings.
        img_size: ``(H, W)`` every image is resized to (aspect ratio not kept, as at inference).
        interpolation: the model's resampling (``bicubic``, ``bilinear``, ``area``, ``nearest``).
    """

    def __init__(self, specs: list[str], img_size: tuple[int, int], interpolation: str = "bicubic", seed: int = 0):
        super().__init__()
        from ...data.synth import SynthDataset

        if not specs:
            raise ValueError("no --data given")
        self.sources = [open_unlabeled(s) for s in specs]
        self.weights = np.array([w for _, _, w in self.sources], dtype=np.float64)
        if not self.weights.sum() > 0:
            raise ValueError(f"--data {specs}: all weights are 0")
        self.weights /= self.weights.sum()
        self.synth = SynthDataset(seed=seed) if any(d is None for _, d, _ in self.sources) else None
        self.img_size, self.interpolation, self.seed = img_size, interpolation, seed

    def preload(self) -> None:
        """Load the synthetic resource pack before DataLoader workers fork (they then share it)."""
        if self.synth is not None:
            self.synth.preload()

    def __iter__(self) -> Iterator[torch.Tensor]:
        from PIL import Image

        from ...data.collate import decode_image

        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info is not None else 0])
        h, w = self.img_size
        resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "area": Image.BOX, "nearest": Image.NEAREST}
        while True:
            name, ds, _ = self.sources[rng.choice(len(self.sources), p=self.weights)]
            if ds is None:
                img = Image.fromarray(self.synth[int(rng.integers(1 << 40))][0])
            else:
                raw = ds[int(rng.integers(len(ds)))]
                if raw.image is None:
                    raise FileNotFoundError(f"{name}: image {raw.key} is missing")
                img = decode_image(raw.image, raw.key)
            img = img.resize((w, h), resample[self.interpolation])
            yield torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


# ---------------------------------------------------------------------------------------------- checkpoints
def save_outputs(model: CCD, out: Path, meta: dict[str, str], config: ViTConfig | None = None) -> None:
    """Write ``config.json`` (``config``, default ``model.config``), ``encoder.safetensors`` (the teacher's encoder)
    and ``ccd_heads.safetensors`` (the teacher's heads)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / "config.json", json.dumps((config or model.config).to_dict(), indent=2) + "\n")
    base = {"format": "pt", "str_distill_format": "1", "arch": model.config.arch, **meta}
    enc = {k: v.detach().float().cpu().contiguous() for k, v in model.teacher_encoder_state().items()}
    save_file(enc, str(out / (ENCODER_FILE + ".tmp")), metadata={**base, "kind": "ccd-pretrain"})
    os.replace(out / (ENCODER_FILE + ".tmp"), out / ENCODER_FILE)
    heads = {
        k: v.detach().float().cpu().contiguous()
        for k, v in model.teacher.state_dict().items()
        if not k.startswith("encoder.")
    }
    meta_heads = {**base, "kind": "ccd-heads", "ccd_config": json.dumps(model.cfg.to_dict())}
    save_file(heads, str(out / (HEADS_FILE + ".tmp")), metadata=meta_heads)
    os.replace(out / (HEADS_FILE + ".tmp"), out / HEADS_FILE)


def load_heads(directory: str | Path, device: str | torch.device = "cpu") -> CCD:
    """Rebuild a :class:`CCD` whose teacher holds the encoder and heads saved in ``directory`` (student = teacher).

    Raises:
        FileNotFoundError: naming the missing file.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    d = Path(directory)
    for name in ("config.json", ENCODER_FILE, HEADS_FILE):
        if not (d / name).is_file():
            raise FileNotFoundError(
                f"{d}: no {name}; expected a directory written by `str-distill pretrain --method ccd`"
            )
    with safe_open(str(d / HEADS_FILE), framework="pt") as f:
        cfg = CCDConfig.from_dict(json.loads(f.metadata()["ccd_config"]))
    model = CCD(ViTConfig.from_dict(json.loads((d / "config.json").read_text())), cfg)
    state = {k[len("encoder.") :]: v for k, v in load_file(str(d / ENCODER_FILE)).items()}
    model.teacher.encoder.load_state_dict(state, strict=True)
    missing, unexpected = model.teacher.load_state_dict(load_file(str(d / HEADS_FILE)), strict=False)
    if unexpected or [k for k in missing if not k.startswith("encoder.")]:
        raise RuntimeError(f"{d / HEADS_FILE}: heads do not match: missing {missing}, unexpected {unexpected}")
    model.student.load_state_dict(model.teacher.state_dict())
    return model.to(device).eval()


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _draw_curves(out: Path, out_dim: int) -> None:
    """Redraw ``out/curves.png`` from ``out/log.jsonl`` (skipped while the log is empty); ``out_dim`` prototypes."""
    from ..plot import read_metrics
    from .curves import plot_pretrain_curves

    if (out / LOG_FILE).is_file():
        records = read_metrics(out / LOG_FILE)
        if records:
            plot_pretrain_curves(records, out / CURVES_FILE, out_dim, title=f"CCD pretraining: {out.name}")


# ---------------------------------------------------------------------------------------------- loop
def pretrain(
    data: list[str],
    out: str | Path,
    cfg: PretrainConfig,
    resume: bool = False,
    device: str = "auto",
    batches: Iterator[torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Run CCD pretraining.

    Args:
        data: ``--data`` specs (ignored when ``batches`` is given).
        out: output directory (see the module docstring).
        cfg: the run's settings.
        resume: continue from ``out/ccd_state.pt`` (which must exist).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        batches: an iterator of ``(B, 3, H, W)`` uint8 batches replacing the data loader (tests); under ``torchrun``
            this process's batches.

    Returns:
        A summary: steps, images, seconds, last logs and the output directory.
    """
    if cfg.steps is None and cfg.minutes is None:
        raise ValueError("give a budget: steps and/or minutes")
    dev = resolve_device(device)
    out = Path(out)
    ctx = dist_context()
    local_batch = local_batch_size(cfg.batch_size, ctx.world_size)
    torch.manual_seed(cfg.seed)
    config = get_config(cfg.model, **cfg.model_overrides)
    model = CCD(replace(config, dropout=cfg.dropout), cfg.ccd).to(dev)
    decay = [p for n, p in model.student.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
    no_decay = [p for n, p in model.student.named_parameters() if p.ndim <= 1 or "pos_embed" in n]
    peak_lr = cfg.lr if cfg.lr is not None else 5e-4 * cfg.batch_size / 256
    opt = torch.optim.AdamW(
        [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=peak_lr, fused=dev.type == "cuda"
    )
    step, elapsed = 0, 0.0
    if resume:
        path = out / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"--resume: {path} does not exist")
        state = torch.load(path, map_location=dev, weights_only=True)
        if state["model_config"] != config.to_dict():
            raise ValueError(f"--resume: {path} was trained with another model config: {state['model_config']}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
        torch.manual_seed(cfg.seed + step)
    if ctx.enabled:  # the replicas start from process 0's weights; views and drop-path differ per process
        torch.manual_seed(cfg.seed + step + 1_000_003 * ctx.rank)
    forward = wrap_ddp(model, dev, find_unused_parameters=True) if ctx.enabled else model  # no pairs: unused head
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_text(out / "pretrain_config.json", json.dumps({"data": data, **cfg.to_dict()}, indent=2) + "\n")
    if batches is None:
        from ...data.workers import fork_safe_opencv, worker_init

        fork_safe_opencv()

        stream = UnlabeledImages(data, config.img_size, config.interpolation, cfg.seed + step + 1_000_003 * ctx.rank)
        stream.preload()
        loader = DataLoader(
            stream,
            local_batch,
            num_workers=cfg.workers,
            pin_memory=dev.type == "cuda",
            persistent_workers=cfg.workers > 0,
            prefetch_factor=4 if cfg.workers else None,
            worker_init_fn=worker_init,
        )
        batches = iter(loader)
    amp = (
        torch.autocast("cuda", torch.bfloat16)
        if cfg.amp and dev.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )

    def progress() -> float:
        return max(step / cfg.steps if cfg.steps else 0.0, elapsed / (cfg.minutes * 60) if cfg.minutes else 0.0)

    def save() -> None:
        meta = {"step": str(step), "images": str(step * cfg.batch_size)}
        save_outputs(model, out, meta, config)
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "elapsed": elapsed,
            "model_config": config.to_dict(),
            "pretrain_config": json.dumps(cfg.to_dict()),
        }
        torch.save(state, out / (STATE_FILE + ".tmp"))
        os.replace(out / (STATE_FILE + ".tmp"), out / STATE_FILE)
        _draw_curves(out, cfg.ccd.out_dim)  # after the checkpoint: a picture never costs a checkpoint

    model.train()
    logs: dict[str, float] = {}
    last_save, t_log, n_log = time.time(), time.time(), 0
    with open(out / LOG_FILE, "a") if ctx.is_main else contextlib.nullcontext() as log:
        while (p := progress()) < 1:
            t0 = time.time()
            lr = (
                peak_lr * p / cfg.warmup
                if p < cfg.warmup
                else cosine((p - cfg.warmup) / (1 - cfg.warmup), peak_lr, cfg.min_lr)
            )
            wd = cosine(p, *cfg.weight_decay)
            opt.param_groups[0].update(lr=lr, weight_decay=wd)
            opt.param_groups[1].update(lr=lr)
            images = next(batches).to(dev, non_blocking=True).float().div_(255)
            with amp:
                loss, logs = forward(images, use_predicted_mask=p >= cfg.seg_warmup)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"step {step}: loss is {loss.item()}; logs {logs}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.student.parameters(), cfg.clip)
            frozen = p < cfg.freeze_last_layer
            if frozen:  # as CCD/DINO: clip first, then drop the prototype layer's gradients (AdamW skips it)
                model.freeze_last_layer()
            opt.step()
            momentum = cosine(p, cfg.momentum, 1.0)
            model.update_teacher(momentum)
            step += 1
            n_log += images.shape[0] * ctx.world_size
            elapsed += time.time() - t0
            if ctx.enabled:  # process 0's clock for every process: the same budget and schedules
                elapsed = float(ctx.broadcast(elapsed))
            if step % cfg.log_every == 0 or progress() >= 1:
                if ctx.enabled:  # averaged over the processes (NaN where a process had no pair is left out)
                    keys = list(logs)
                    logs = dict(zip(keys, ctx.all_mean(torch.tensor([logs[k] for k in keys], device=dev)).tolist()))
                now = time.time()
                rec = {
                    "step": step,
                    "progress": round(progress(), 5),
                    "elapsed_s": round(elapsed, 2),
                    "lr": lr,
                    "wd": wd,
                    "momentum": momentum,
                    "grad_norm": float(grad_norm),
                    "last_layer_frozen": frozen,
                    "phase": "predicted-mask" if p >= cfg.seg_warmup else "kmeans-mask",
                    "images_per_s": round(n_log / max(now - t_log, 1e-9), 1),
                    **{k: round(v, 5) if math.isfinite(v) else None for k, v in logs.items()},
                }
                if log is not None:
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                t_log, n_log = now, 0
            if time.time() - last_save > cfg.save_minutes * 60:
                if ctx.is_main:
                    save()
                last_save = time.time()
    if ctx.is_main:
        save()
    return {"steps": step, "images": step * cfg.batch_size, "seconds": round(elapsed, 1), "logs": logs, "out": str(out)}
