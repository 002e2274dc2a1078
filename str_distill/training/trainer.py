"""The training loop: AdamW + schedule, bf16 autocast on CUDA, clipping, EMA, objectives, validation, checkpoints.

>>> trainer = Trainer(model, TrainConfig(steps=1000), data=make_loader, out_dir="runs/x")  # doctest: +SKIP
>>> trainer.fit()  # doctest: +SKIP

``data(start)`` must return an iterable of :class:`~str_distill.data.collate.Batch` whose first batch is batch
``start`` of a deterministic stream (:class:`~str_distill.data.mix.MixedBatchStream`): that, plus the optimizer,
EMA, objective and RNG states saved in checkpoints, makes a resumed run take exactly the steps the uninterrupted
run would have taken (for step budgets; a time budget depends on the wall clock by nature).

Outputs in ``out_dir``: ``metrics.jsonl`` (one JSON record per log / validation / event), ``curves.png``,
``bad_samples.json``, ``checkpoint/`` (the latest resumable state) and ``final/`` (the trained weights,
``save_pretrained`` format; the EMA weights when EMA is on).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.collate import Batch
from ..data.report import BadSampleReport
from ..devices import DTYPES, cpu_has_native_bf16, resolve_device
from ..models.model import ViTRecognizer
from .checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from .config import TrainConfig
from .distributed import context as dist_context
from .distributed import local_batch_size, wrap_ddp
from .ema import ModelEMA
from .losses import LossWeights, RecognitionLoss
from .objectives import Objective, check_objective, encoder_layers_needed, view_for
from .schedule import LRSchedule, param_groups

__all__ = ["TrainConfig", "Trainer", "freeze_parts"]


def freeze_parts(model: torch.nn.Module, parts: Sequence[str]) -> list[str]:
    """Set ``requires_grad=False`` on the named parts of ``model`` (its ``parts`` mapping); returns the
    frozen parameter names.

    Raises:
        ValueError: for a part the model does not have (the message lists the ones it has).
    """
    table: dict[str, tuple[str, ...]] = getattr(model, "parts", {})
    unknown = [p for p in parts if p not in table]
    if unknown:
        raise ValueError(f"cannot freeze {unknown}: {type(model).__name__} has parts {sorted(table)}")
    prefixes = tuple(pre for p in parts for pre in table[p])
    frozen = []
    for name, param in model.named_parameters():
        if prefixes and name.startswith(prefixes):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


class Trainer:
    """Trains an :class:`ViTRecognizer` on a stream of batches.

    Args:
        model: the recognizer (already initialized, e.g. by :func:`~str_distill.training.warm_start.initialize_from`).
        config: hyper-parameters.
        data: ``start -> iterable of Batch`` beginning at batch ``start`` (see the module docstring).
        out_dir: run folder (created).
        objectives: extra loss terms (:class:`~str_distill.training.objectives.Objective`).
        val_sets: ``(name, dataset of RawSample)`` pairs for periodic validation.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        log: where messages go (default: print to stdout, flushed).
        run_info: extra JSON-able facts recorded in the first metrics record (command line, data specs...).

    In a process group (``torchrun``, see :mod:`~str_distill.training.distributed`), the model and the objectives'
    trainable modules train in :class:`~torch.nn.parallel.DistributedDataParallel`: ``data(start)`` must then yield
    this process's share of every step (:attr:`local_batch_size` samples), metrics are averaged over the processes
    and only process 0 validates and writes files (its ``log`` alone prints).
    """

    def __init__(
        self,
        model: ViTRecognizer,
        config: TrainConfig,
        data: Callable[[int], Iterable[Batch]],
        out_dir: str | Path,
        objectives: Sequence[Objective] = (),
        val_sets: Sequence[tuple[str, Any]] = (),
        device: str | torch.device = "auto",
        log: Callable[[str], None] | None = None,
        run_info: dict[str, Any] | None = None,
    ) -> None:
        self.config = c = config
        self.device = resolve_device(device)
        self.dist = dist_context()
        #: samples per step in this process (``batch_size`` divided among the processes of a ``torchrun`` job)
        self.local_batch_size = local_batch_size(c.batch_size, self.dist.world_size)
        self.model = model.to(self.device).train()
        self.data = data
        self.out = Path(out_dir)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.objectives = [check_objective(o) for o in objectives]
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        self.val_sets = list(val_sets)
        self.log = log or (lambda msg: print(msg, flush=True))
        if not self.dist.is_main:
            self.log = lambda msg: None
        self.run_info = run_info or {}
        if "attention" not in getattr(model, "decodings", ("attention",)) and (
                c.loss_weights.ar or c.loss_weights.parallel or c.loss_weights.cloze):
            c.loss_weights = LossWeights.ctc_only()  # no decoder: CTC alone, and no decoder passes are run
        self.frozen = freeze_parts(model, c.freeze)
        self.loss = RecognitionLoss(model.tokenizer, c.loss_weights, c.label_smoothing)
        self.layers = encoder_layers_needed(self.objectives)
        modules: list[torch.nn.Module] = [self.model]
        for o in self.objectives:
            mod = o.modules()
            if mod is not None:
                modules.append(mod.to(self.device).train())
        self.params = [p for m in modules for p in m.parameters() if p.requires_grad]
        groups = param_groups(modules, c.weight_decay)
        kw: dict[str, Any] = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(groups, lr=c.lr, betas=c.betas, **kw)
        self.schedule = LRSchedule(c.schedule, c.warmup, c.min_lr_ratio)
        self.ema = ModelEMA(self.model, c.ema) if c.ema > 0 else None
        self.amp = c.precision == "bf16" or (c.precision == "auto" and (self.device.type == "cuda"
                                                                         or cpu_has_native_bf16()))
        self.channels_last = bool(getattr(model, "channels_last", False)) and self.device.type == "cpu"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        from ..preprocess import Preprocessor

        self.preprocessor = Preprocessor(model.config)  # normalizes uint8 batches on the device
        self.gpu_augment = None
        if c.gpu_augment or c.reuse > 1:
            from ..data.augment import GpuAugment

            self.gpu_augment = GpuAugment(seed=c.seed + 100_003 * self.dist.rank)  # each process its own draws
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self._forward = model.forward_train
        if c.compile:
            self._forward = torch.compile(model.forward_train)
        self._loss_fn: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]]
        self._loss_fn = self.compute_loss
        if self.dist.enabled:  # gradients averaged over the processes in backward; the same unused parameters
            self._loss_fn = wrap_ddp(_StepLoss(self, modules), self.device, static_graph=True)  # at every step
        self.step = 0
        self.elapsed = 0.0
        self.bad = BadSampleReport()
        self.best: dict[str, Any] | None = None
        self.metrics_path = self.out / "metrics.jsonl"
        self._last_save_time = 0.0
        self._stale = 0  # validations since the best one (early stopping)
        self.stopped_early = False
        self._train_mode()

    def _train_mode(self) -> None:
        """Training mode, with BatchNorm held in eval mode under ``freeze_bn``."""
        self.model.train()
        if self.config.freeze_bn:
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    # ------------------------------------------------------------------------------------------------ state
    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    def progress(self) -> float:
        """Fraction of the budget used, in ``[0, 1]`` (the larger of steps and time)."""
        c = self.config
        p = 0.0
        if c.steps is not None:
            p = max(p, self.step / c.steps)
        if c.minutes is not None:
            p = max(p, self.elapsed / (c.minutes * 60))
        return min(p, 1.0)

    def lr(self) -> float:
        return self.config.lr * self.schedule(self.progress())

    def resume(self, directory: str | Path | None = None) -> int:
        """Restore the latest checkpoint (default ``out_dir/checkpoint``); returns the step resumed at."""
        d = Path(directory) if directory is not None else self.checkpoint_dir
        state = load_checkpoint(d, self.model, self.optimizer, self.ema, self.objectives)
        self.model.to(self.device)
        if self.ema is not None:
            self.ema.module.to(self.device)
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self._last_save_time = self.elapsed
        ranks = state.get("rng_ranks")
        if self.dist.enabled and ranks is not None and len(ranks) == self.dist.world_size:
            set_rng_state(ranks[self.dist.rank])
        # the saved report counts every process's samples: process 0 carries it on, the others count anew
        saved_bad = json.loads(state.get("bad_samples", "{}")) if self.dist.is_main else {}
        self.bad = BadSampleReport.from_dict(saved_bad)
        self.best = json.loads(state["best"]) if state.get("best") else None
        self._truncate_metrics(self.step)
        self._record({"type": "event", "event": "resume", "step": self.step, "from": str(d)})
        self.log(f"resumed from {d} at step {self.step} ({self.elapsed / 60:.1f} min already trained)")
        return self.step

    def save_checkpoint(self, collective: bool = True) -> Path:
        """Write ``out_dir/checkpoint`` (refuses to overwrite a good checkpoint with non-finite weights).

        In a process group every process calls it (``collective``): process 0 gathers the others' RNG states and
        bad-sample counts and writes the folder. ``collective=False`` (on an interrupt) writes process 0's alone.
        """
        with torch.no_grad():
            finite = bool(torch.stack([p.isfinite().all() for p in self.model.parameters()]).all())
        if not finite:
            raise FloatingPointError(
                f"step {self.step}: the weights contain NaN/inf; the last good checkpoint in {self.checkpoint_dir} "
                "is kept. Lower --lr or --clip-grad and resume."
            )
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "bad_samples": json.dumps(self.bad.to_dict()),
            "best": json.dumps(self.best) if self.best else "",
            "config": json.dumps(self.config.to_dict()),
        }
        if self.dist.enabled and collective:
            gathered = self.dist.gather((get_rng_state(), self.bad.to_dict()))
            if gathered is not None:  # process 0: every process's RNG (exact resume) and the run's bad samples
                state["rng_ranks"] = [g[0] for g in gathered]
                state["bad_samples"] = json.dumps(self._merged_bad([g[1] for g in gathered]).to_dict())
        self._last_save_time = self.elapsed
        if not self.dist.is_main:
            return self.checkpoint_dir
        return save_checkpoint(self.checkpoint_dir, self.model, self.optimizer, state, self.ema, self.objectives)

    @staticmethod
    def _merged_bad(reports: Sequence[dict[str, Any]]) -> BadSampleReport:
        merged = BadSampleReport()
        for r in reports:
            merged.merge(BadSampleReport.from_dict(r))
        return merged

    def _bad_total(self) -> BadSampleReport:
        """The bad-sample report of the whole run (every process's) on process 0; this process's elsewhere."""
        if not self.dist.enabled:
            return self.bad
        gathered = self.dist.gather(self.bad.to_dict())
        return self._merged_bad(gathered) if gathered is not None else self.bad

    # ------------------------------------------------------------------------------------------------ steps
    def train_step(self, batch: Batch, repeat: bool = False) -> dict[str, torch.Tensor]:
        """One optimizer step on ``batch``; returns detached loss terms (tensors on the device, no sync).

        Args:
            repeat: the batch was already used (``reuse > 1``): it is always augmented on the device.
        """
        c, dev = self.config, self.device
        images = batch.images.to(dev, non_blocking=True)
        if images.dtype == torch.uint8:  # loaders hand batches over unnormalized (Preprocessor.to_uint8)
            images = self.preprocessor.normalize(images)
        if self.gpu_augment is not None and (c.gpu_augment or repeat):
            images = self.gpu_augment(images, self.step)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets, ctc_t, ctc_l = self.loss.targets(
            batch.labels, dev, fixed_length=c.compile, precomputed=(batch.targets, batch.ctc_targets, batch.ctc_lengths)
        )
        lr = self.lr()
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
        with ctx:
            loss, terms, logs = self._loss_fn(images, targets, ctc_t, ctc_l, batch.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = c.clip_grad if c.clip_grad > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        logs.update(terms)
        logs["loss"] = loss.detach()
        logs["grad_norm"] = grad_norm.detach()
        return logs

    def compute_loss(self, images: torch.Tensor, targets: torch.Tensor, ctc_t: torch.Tensor, ctc_l: torch.Tensor,
                     labels: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The teacher-forced forward and the loss of one batch (what a ``torchrun`` job runs inside DDP).

        Returns:
            ``(loss, recognition loss terms, objective logs keyed "{objective}/{key}")``.
        """
        logs: dict[str, torch.Tensor] = {}
        out = self._forward(images, targets, passes=self.config.loss_weights.passes, return_layers=self.layers)
        loss, terms = self.loss(out, targets, ctc_t, ctc_l)
        for obj in self.objectives:
            extra, obj_logs = obj(view_for(out, self.layers, obj), images, labels)
            loss = loss + extra
            for k, v in obj_logs.items():
                logs[f"{obj.name}/{k}"] = torch.as_tensor(float(v))
        return loss, terms, logs

    # ------------------------------------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        """Train until the budget is used; validate, checkpoint, export ``final/`` and draw the curves.

        Returns:
            The summary record (also the last line of ``metrics.jsonl``).
        """
        c = self.config
        if self.step == 0:
            self._record({"type": "config", "train": c.to_dict(), "model": self.model.config.to_dict(),
                          "parameters": self.model.num_parameters(), "device": str(self.device),
                          "amp_bf16": self.amp, "objectives": [o.name for o in self.objectives],
                          "world_size": self.dist.world_size, **self.run_info})
        if self.step == 0:  # dropout / drop-path (each process its own); a resumed run restores the saved states
            torch.manual_seed(c.seed + self.dist.rank)
        budget = [f"{c.steps} steps"] if c.steps else []
        budget += [f"{c.minutes:g} min"] if c.minutes else []
        self.log(
            f"training {self.model.config.arch} ({self.model.num_parameters() / 1e6:.2f}M params) on {self.device}"
            f"{' with bf16 autocast' if self.amp else ''}: batch {c.batch_size}, budget {' / '.join(budget)}"
            + (f"; {self.dist.world_size} processes of {self.local_batch_size} samples" if self.dist.enabled else "")
        )
        bar = self._bar()
        window: dict[str, torch.Tensor] = {}
        win_steps, win_images, win_wait = 0, 0, 0.0
        t_window = time.perf_counter()
        t_last = time.perf_counter()
        reuse = c.reuse
        rng = torch.get_rng_state()
        iterator = iter(self.data(self.step // reuse))
        torch.set_rng_state(rng)  # a DataLoader draws its seed here: a resumed run's dropout would shift by one draw
        batch: Batch | None = None
        uses_left = 0
        try:
            while self.progress() < 1.0:
                if uses_left == 0:
                    t0 = time.perf_counter()
                    try:
                        batch = next(iterator)
                    except StopIteration:
                        self.log(f"data stream ended at step {self.step}")
                        break
                    win_wait += time.perf_counter() - t0
                    if len(batch) != self.local_batch_size:
                        raise ValueError(f"batch {batch.index} has {len(batch)} samples; expected "
                                         f"{self.local_batch_size}")
                    if self.step % reuse == 0:  # a resume in the middle of a reused batch merged it already
                        self.bad.merge(batch.bad)
                    uses_left = reuse - self.step % reuse
                    if reuse > 1:
                        batch.images = batch.images.to(self.device, non_blocking=True)
                assert batch is not None
                logs = self.train_step(batch, repeat=self.step % reuse != 0)  # step s trains on batch s // reuse
                uses_left -= 1
                for k, v in logs.items():
                    window[k] = window[k] + v.float() if k in window else v.float().clone()
                win_steps += 1
                win_images += len(batch)
                now = time.perf_counter()
                self.elapsed += now - t_last
                t_last = now
                if self.dist.enabled and (c.minutes is not None or c.save_minutes):
                    self.elapsed = float(self.dist.broadcast(self.elapsed))  # one clock: same steps, same lr
                if bar is not None:
                    bar.update(1)
                last = self.progress() >= 1.0
                if self.step % c.log_every == 0 or last:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t_window
                    keys = list(window)
                    means = self.dist.all_mean(torch.stack(
                        [window[k].to(self.device, torch.float64) / win_steps for k in keys]
                        + [torch.tensor(win_wait / max(dt, 1e-9), dtype=torch.float64, device=self.device)]))
                    bad_total = self.bad.total if not self.dist.enabled else int(
                        self.dist.all_sum(torch.tensor([self.bad.total], device=self.device)).item())
                    rec = {k: float(v) for k, v in zip(keys, means.tolist())}
                    rec.update({"type": "train", "step": self.step, "time": round(self.elapsed, 2), "lr": self.lr(),
                                "images_per_s": win_images * self.dist.world_size / max(dt, 1e-9),
                                "data_wait": float(means[-1]), "bad_samples": bad_total})
                    if not math.isfinite(rec["loss"]):
                        raise FloatingPointError(
                            f"step {self.step}: the loss is {rec['loss']}; lower --lr or --clip-grad (the last good "
                            f"checkpoint is {self.checkpoint_dir})"
                        )
                    self._record(rec)
                    self._show(rec, bar)
                    window, win_steps, win_images, win_wait = {}, 0, 0, 0.0
                    t_window = time.perf_counter()
                # Validation and checkpoint time count against the budget but not against the throughput.
                if not last and c.val_every and self.step % c.val_every == 0 and self.val_sets:
                    self.validate()
                    t_window = time.perf_counter() - (now - t_window)
                    if self.stopped_early:
                        self.log(f"early stop at step {self.step}: no better validation in {c.patience} checks; "
                                 f"the best (step {self.best['step'] if self.best else '?'}) is in best/")
                        self._record({"type": "event", "event": "early_stop", "step": self.step})
                        break
                if not last and (
                    (c.save_every and self.step % c.save_every == 0)
                    or (c.save_minutes and self.elapsed - self._last_save_time >= c.save_minutes * 60)
                ):
                    t1 = time.perf_counter()
                    self.save_checkpoint()
                    t_window += time.perf_counter() - t1
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            self.log(f"interrupted at step {self.step}: saving a checkpoint for --resume")
            self.save_checkpoint(collective=False)  # the other processes may be gone already
            raise
        finally:
            if bar is not None:
                bar.close()
            del iterator
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Final validation, checkpoint, exported weights, bad-sample report, curves and summary."""
        results = self.validate() if self.val_sets else None
        self.save_checkpoint()
        final = self.export(self.out / "final") if self.dist.is_main else self.out / "final"
        bad = self._bad_total()
        if self.dist.is_main:
            bad.save(self.out / "bad_samples.json")
        self._record({"type": "bad_samples", "step": self.step, **bad.to_dict()})
        self.log(bad.format("bad samples (whole run)"))
        summary = {
            "type": "summary", "step": self.step, "time": round(self.elapsed, 2), "final": str(final),
            "weights": "ema" if self.ema is not None else "raw", "bad_samples": bad.total,
            "val": results.to_dict() if results is not None else None, "best": self.best,
        }
        self._record(summary)
        if self.dist.is_main:
            self.plot()
        self.log(f"done: {self.step} steps in {self.elapsed / 60:.1f} min; weights in {final}")
        return summary

    def export(self, directory: str | Path) -> Path:
        """Write the trained weights (EMA when on) with ``save_pretrained`` in ``save_dtype``, sharded if asked."""
        from ..hub.serialization import save_pretrained

        c = self.config
        model = self.ema.module if self.ema is not None else self.model
        shard = int(c.max_shard_mb * 2**20) if c.max_shard_mb else None
        meta = {"trained_steps": str(self.step), "weights": "ema" if self.ema is not None else "raw"}
        return save_pretrained(model, directory, dtype=DTYPES[c.save_dtype], max_shard_bytes=shard, metadata=meta)

    def validate(self) -> Any:
        """Evaluate on the validation sets (EMA weights when on); records one ``val`` line per set and the total.

        In a process group every process calls it: process 0 evaluates (the others get ``None``) and tells the
        others whether to stop early.
        """
        if self.dist.enabled:
            res = self._validate() if self.dist.is_main else None
            self.stopped_early = bool(self.dist.broadcast(self.stopped_early))
            return res
        return self._validate()

    def _validate(self) -> Any:
        from ..predictor import Recognizer
        from .evaluate import evaluate

        c = self.config
        model = self.ema.module if self.ema is not None else self.model
        was_training = model.training
        try:
            rec = Recognizer(model, device=self.device)
            res = evaluate(rec, self.val_sets, protocol=c.val_protocol, batch_size=c.val_batch_size,
                           max_samples=c.val_max_samples)
        finally:
            model.train(was_training)
            if was_training and model is self.model:
                self._train_mode()
        for s in res.sets:
            self._record({"type": "val", "step": self.step, **s.to_dict()})
        tot = res.total
        if len(res.sets) > 1:
            self._record({"type": "val", "step": self.step, "set": "total", **tot.to_dict()})
        # word accuracy first, 1-NED breaks ties: early in training (every word still wrong) the best weights are
        # those closest to the text, not the first ones validated
        if self.best is None or (tot.accuracy, tot.one_minus_ned) > (self.best["accuracy"],
                                                                     self.best.get("one_minus_ned", 0.0)):
            self.best = {"step": self.step, "accuracy": tot.accuracy, "one_minus_ned": tot.one_minus_ned}
            self._stale = 0
            if c.keep_best:
                self.export(self.out / "best")
        else:
            self._stale += 1
            if c.patience and self._stale >= c.patience:
                self.stopped_early = True
        self.log(f"validation at step {self.step}:\n{res.table()}")
        return res

    def plot(self) -> Path | None:
        from .plot import plot_curves, read_metrics

        if not self.metrics_path.is_file():
            return None
        title = f"{self.model.config.arch} - {self.out.name}"
        return plot_curves(read_metrics(self.metrics_path), self.out / "curves.png", title=title)

    # ------------------------------------------------------------------------------------------------ logging
    def _record(self, rec: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=str) + "\n")

    def _truncate_metrics(self, step: int) -> None:
        """After a resume, drop records written past the checkpoint by the interrupted run."""
        if not self.dist.is_main or not self.metrics_path.is_file():
            return
        keep = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("type") in ("train", "val") and rec.get("step", 0) > step:
                continue
            if rec.get("type") in ("summary", "bad_samples"):
                continue
            keep.append(line)
        self.metrics_path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

    def _bar(self) -> Any:
        mode = self.config.progress if self.dist.is_main else "none"
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self._progress_mode = mode
        if mode != "bar":
            return None
        from tqdm.auto import tqdm

        total = self.config.steps if self.config.minutes is None else None
        return tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr)

    def _show(self, rec: dict[str, Any], bar: Any) -> None:
        keys = ["loss", "ar", "parallel", "cloze", "ctc", "train_acc"]
        if bar is not None:
            bar.set_postfix({k: f"{rec[k]:.3f}" for k in keys if k in rec} | {"img/s": f"{rec['images_per_s']:.0f}"})
            return
        if self._progress_mode == "none":
            return
        p = self.progress()
        eta = self.elapsed / p - self.elapsed if p > 0 else float("nan")
        terms = " ".join(f"{k} {rec[k]:.4f}" for k in keys if k in rec)
        extra = " ".join(f"{k} {v:.4f}" for k, v in rec.items() if "/" in k)
        self.log(
            f"step {self.step} ({100 * p:.1f}%) {terms}{' ' + extra if extra else ''} lr {rec['lr']:.2e} "
            f"gn {rec['grad_norm']:.2f} {rec['images_per_s']:.0f} img/s data-wait {100 * rec['data_wait']:.0f}% "
            f"elapsed {self.elapsed / 60:.1f} min eta {eta / 60:.1f} min"
        )


class _StepLoss(torch.nn.Module):
    """The model and the objectives' trainable modules, whose forward is :meth:`Trainer.compute_loss`: what
    DistributedDataParallel wraps, so that every trainable parameter is used inside its forward."""

    def __init__(self, trainer: Trainer, modules: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        self.parts = torch.nn.ModuleList(modules)
        self._compute = trainer.compute_loss

    def forward(self, images: torch.Tensor, targets: torch.Tensor, ctc_t: torch.Tensor, ctc_l: torch.Tensor,
                labels: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return self._compute(images, targets, ctc_t, ctc_l, labels)
