"""Throughput of a training setup, measured before training: data alone, training with data, training on a
resident batch (the model's ceiling) and GPU utilization (``str-distill train --benchmark``,
``benchmarks/train_throughput.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["benchmark"]


class _UtilSampler:
    """Samples GPU utilization (percent) in a background thread: ``torch.cuda.utilization`` or ``nvidia-smi``."""

    def __init__(self, device: torch.device, interval: float = 0.25) -> None:
        import threading

        self.device, self.interval = device, interval
        self.samples: list[float] = []
        self.source = "none"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        if self.device.type != "cuda":
            return None
        if self.source in ("none", "torch.cuda.utilization"):
            try:
                v = float(torch.cuda.utilization(self.device))
                self.source = "torch.cuda.utilization"
                return v
            except Exception:
                self.source = "nvidia-smi"
        import subprocess

        try:
            idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
            out = subprocess.run(
                ["nvidia-smi", f"--id={idx}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=5,
            )
            self.source = "nvidia-smi"
            return float(out.stdout.strip().splitlines()[0])
        except Exception:
            self.source = "unavailable"
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            v = self._read()
            if v is not None:
                self.samples.append(v)
            self._stop.wait(self.interval)

    def __enter__(self) -> _UtilSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def benchmark(trainer: Trainer, steps: int = 30, warmup: int = 10, log: Callable[[str], None] | None = None
              ) -> dict[str, Any]:
    """Measure before training: data images/s alone, training images/s with data, training images/s on one
    device-resident batch (the model's ceiling), and GPU utilization during the training-with-data phase.

    The trainer's model and optimizer are modified (optimizer steps are taken): benchmark a throw-away trainer.

    Returns:
        ``{"data_images_per_s", "train_images_per_s", "model_images_per_s", "gpu_util_percent", ...}``.
    """
    log = log or trainer.log
    dev = trainer.device
    bsz = trainer.config.batch_size

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    # 1. data alone (workers started and warmed up first)
    it = iter(trainer.data(0))
    t0 = time.perf_counter()
    for _ in range(warmup):
        next(it)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    data_rate = steps * bsz / (time.perf_counter() - t0)
    del it
    log(f"benchmark: data alone {data_rate:.0f} images/s (workers warmed up in {startup:.1f} s)")
    # 2. training with data
    it = iter(trainer.data(10_000))
    t0 = time.perf_counter()
    for _ in range(warmup):
        trainer.train_step(next(it))
    sync()
    compile_s = time.perf_counter() - t0
    with _UtilSampler(dev) as util:
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(next(it))
        sync()
        train_rate = steps * bsz / (time.perf_counter() - t0)
    batch = next(it)
    del it
    log(f"benchmark: training with data {train_rate:.0f} images/s (warm-up {compile_s:.1f} s), GPU utilization "
        + (f"{util.mean:.0f}% ({util.source})" if util.mean is not None else f"n/a ({util.source})"))
    # 3. training on one resident batch (no data cost)
    batch.images = batch.images.to(dev)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    sync()
    model_rate = steps * bsz / (time.perf_counter() - t0)
    log(f"benchmark: training on a resident batch {model_rate:.0f} images/s (the model's ceiling)")
    res = {
        "type": "benchmark", "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "batch_size": bsz, "steps": steps, "warmup": warmup, "amp_bf16": trainer.amp,
        "compile": trainer.config.compile, "data_images_per_s": data_rate, "train_images_per_s": train_rate,
        "model_images_per_s": model_rate, "gpu_util_percent": util.mean, "gpu_util_source": util.source,
        "warmup_seconds": compile_s, "worker_startup_seconds": startup,
    }
    trainer._record(res)
    return res
