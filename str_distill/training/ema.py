"""Exponential moving average of model weights (evaluated and shipped instead of the raw weights when enabled)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """``ema = d * ema + (1 - d) * weights`` after every optimizer step, with ``d`` ramped up early on.

    The effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average does not remember
    the random initialization for thousands of steps in a short run. Buffers are copied, not averaged.

    Args:
        model: the trained module (a deep copy is kept, in float32, in eval mode, without gradients).
        decay: the target decay, e.g. ``0.999``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_p = [p for p in self.module.parameters()]
        new_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, new_p, 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.module.load_state_dict(state, strict=True)
        self.updates = int(updates)
