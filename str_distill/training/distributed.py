"""Multi-process training with ``torchrun``: process group, rank-0 duties and the few collectives the loops need.

``torchrun --nproc_per_node N -m str_distill train ...`` (or ``pretrain``) starts ``N`` processes that each hold a
replica of the model in :class:`~torch.nn.parallel.DistributedDataParallel`; gradients are averaged after every
backward pass, so the replicas stay identical. The launcher describes the job in environment variables
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): :func:`init_from_env` reads them and
joins the process group, with the ``nccl`` backend on CUDA (one GPU per process, ``cuda:LOCAL_RANK``) and ``gloo``
on CPUs. Without those variables (or with ``WORLD_SIZE=1``) nothing changes: one process trains alone.

Conventions shared by the training loops:

* ``--batch-size`` is the *global* batch: each of ``N`` processes takes ``batch_size / N`` samples per step.
* every process reads its own shard of the data (:class:`~str_distill.data.mix.MixedBatchStream` with ``rank`` and
  ``world_size``): together the processes see at each step the samples one process would see with the global batch.
* logged metrics are averaged over the processes; process 0 alone validates and writes logs, checkpoints, weights
  and plots.
* decisions that depend on the clock (time budget, periodic checkpoints) use process 0's clock, broadcast every
  step, so that every process takes the same number of steps with the same learning rate.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist

__all__ = [
    "DistContext", "context", "env_world_size", "exit_process", "init_from_env", "launched", "local_batch_size",
    "shutdown", "wrap_ddp",
]

_CONTROL: Any = None  # a gloo group for small CPU messages when the main backend is nccl


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 when absent)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher) as one of several."""
    return env_world_size() > 1 and "RANK" in os.environ


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Samples per process and step for a global ``batch_size``.

    Raises:
        ValueError: when ``batch_size`` is not a multiple of ``world_size``.
    """
    if batch_size % world_size:
        raise ValueError(f"--batch-size {batch_size} is the global batch: it must be a multiple of the "
                         f"{world_size} processes")
    return batch_size // world_size


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a multi-process job.

    Attributes:
        rank: global index of this process (0 = the one that writes files).
        world_size: number of processes (1 = no distribution).
        local_rank: index of this process on its machine (its GPU on CUDA).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Process 0: validates and writes logs, checkpoints, weights and plots."""
        return self.rank == 0

    # ------------------------------------------------------------------------------------------ collectives
    def all_mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of ``values`` over the processes (every process gets it); ``values`` unchanged
        when alone. NaN entries are left out of the mean (NaN only where every process has NaN)."""
        if not self.enabled:
            return values
        x = values.detach().double()
        ok = torch.isfinite(x)
        both = torch.stack([torch.where(ok, x, torch.zeros_like(x)), ok.double()])
        dist.all_reduce(both)
        return torch.where(both[1] > 0, both[0] / both[1].clamp(min=1), torch.full_like(x, float("nan")))

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``values`` over the processes."""
        if not self.enabled:
            return values
        x = values.detach().clone()
        dist.all_reduce(x)
        return x

    def broadcast(self, obj: Any) -> Any:
        """Process 0's ``obj`` on every process (small picklable values: flags, clock readings)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=_control_group())
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every process's ``obj``, in rank order, on process 0 (``None`` elsewhere); ``[obj]`` when alone."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=_control_group())
        return out

    def barrier(self) -> None:
        """Wait for every process."""
        if self.enabled:
            dist.barrier(group=_control_group())


def _control_group() -> Any:
    """The group carrying small Python objects: a CPU (gloo) group, also when the gradients travel over nccl."""
    global _CONTROL
    if dist.get_backend() == "gloo":
        return None
    if _CONTROL is None:
        _CONTROL = dist.new_group(backend="gloo")
    return _CONTROL


def context() -> DistContext:
    """The current process's :class:`DistContext` (single process unless a process group is initialized)."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistContext()


def init_from_env(device: str = "auto", timeout_minutes: float = 30.0) -> tuple[DistContext, str]:
    """Join the process group ``torchrun`` describes and pick this process's device.

    Args:
        device: the ``--device`` flag: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; a CUDA device is
            always ``cuda:LOCAL_RANK`` (one GPU per process).
        timeout_minutes: how long a collective waits for the other processes before failing.

    Returns:
        ``(context, device string)``; a single-process context and ``device`` unchanged when not launched.

    Raises:
        ValueError: for ``cuda:<i>`` (the launcher assigns the GPUs) or when the machine has fewer GPUs than
            processes on it.
    """
    if not launched():
        return DistContext(), device
    import datetime

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = (device == "auto" and torch.cuda.is_available()) or str(device).startswith("cuda")
    if use_cuda:
        if str(device) not in ("auto", "cuda"):
            raise ValueError(f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK; pass "
                             "--device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"process {local_rank} on this machine has no GPU ({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    timeout = datetime.timedelta(minutes=timeout_minutes)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    return context(), device


def shutdown(wait: bool = True) -> None:
    """Leave the process group (no-op when none was joined).

    Args:
        wait: first wait for every process (after success), so that a process that is done does not tear its
            connections down while process 0 still writes files. After a failure do not wait: the others may never
            come, and ``torchrun`` stops them when this process exits with an error.
    """
    global _CONTROL
    if dist.is_available() and dist.is_initialized():
        try:
            if wait:
                dist.barrier(group=_control_group())
        finally:
            _CONTROL = None
            dist.destroy_process_group()
    _CONTROL = None


def exit_process(code: int) -> NoReturn:
    """End a ``torchrun`` worker right after :func:`shutdown`: flush stdout/stderr, then ``os._exit(code)``.

    Skipping interpreter finalization is deliberate: gloo's C++ worker threads can still be unwinding while Python
    tears down, which now and then aborts a process that has finished all its work (``terminate called without an
    active exception``, exit code -6) and makes ``torchrun`` report the whole job as failed. Every file the job
    writes is closed before this point.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_entry(run: Callable[..., int], args: Any) -> int:
    """Run a command's body ``run(args, main=...)``: directly in a plain process; under ``torchrun`` after joining
    the process group (a failure to join is printed as ``error: ...`` and returns 2), leaving it afterwards and
    ending the worker with :func:`exit_process`. ``args.device`` becomes this process's device."""
    if not launched():
        return run(args)
    try:
        ctx, args.device = init_from_env(args.device)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        code = run(args, main=ctx.is_main)
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown(wait=code == 0)
    exit_process(code)  # ends the worker here (see its docstring)


def wrap_ddp(module: torch.nn.Module, device: torch.device, find_unused_parameters: bool = False,
             static_graph: bool = False) -> torch.nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` on ``device`` (its parameters are
    broadcast from process 0, so every replica starts identical)."""
    from torch.nn.parallel import DistributedDataParallel

    ids: Sequence[int] | None = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused_parameters,
                                   static_graph=static_graph)
