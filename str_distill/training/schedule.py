"""Learning-rate schedules as a function of training progress in ``[0, 1]``.

Progress is ``step / total_steps`` for a step budget and ``elapsed / budget`` for a time budget, so the same
schedule serves ``--steps`` and ``--minutes`` runs.

* ``cosine``: linear warm-up from 0 to the peak over ``warmup`` (a fraction of the run), then a cosine decay to
  ``min_ratio`` x peak.
* ``onecycle``: cosine ramp from peak/25 to the peak over ``warmup``, then a cosine decay to peak/25/1e4 (the
  shape of ``torch.optim.lr_scheduler.OneCycleLR``, as used by PARSeq and CLIP-OCR).
* ``constant``: linear warm-up, then the peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["LRSchedule", "param_groups"]


@dataclass(frozen=True)
class LRSchedule:
    """Multiplier of the peak learning rate at a given progress.

    Attributes:
        kind: ``"cosine"``, ``"onecycle"`` or ``"constant"``.
        warmup: warm-up length as a fraction of the run, in ``[0, 1)``.
        min_ratio: final multiplier of ``cosine``.
    """

    kind: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup: float = 0.05
    min_ratio: float = 0.01

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "onecycle", "constant"):
            raise ValueError(f"schedule must be 'cosine', 'onecycle' or 'constant', got {self.kind!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be a fraction of the run in [0, 1), got {self.warmup}")

    def __call__(self, progress: float) -> float:
        p = min(max(float(progress), 0.0), 1.0)
        w = self.warmup
        if self.kind == "onecycle":
            start, end = 1 / 25, 1 / 25 / 1e4
            if p < w:
                return start + (1 - start) * (1 - math.cos(math.pi * p / w)) / 2
            q = (p - w) / (1 - w)
            return end + (1 - end) * (1 + math.cos(math.pi * q)) / 2
        if p < w:
            return p / w
        if self.kind == "constant":
            return 1.0
        q = (p - w) / (1 - w)
        return self.min_ratio + (1 - self.min_ratio) * (1 + math.cos(math.pi * q)) / 2


_NO_DECAY = ("pos_embed", "content_pos", "pos_queries")


def param_groups(modules: list[torch.nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only (not on biases, norms, embeddings of positions).

    Parameters shared between modules are counted once; frozen parameters are left out.
    """
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if p.ndim <= 1 or any(k in name for k in _NO_DECAY) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
