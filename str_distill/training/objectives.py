"""The plug-in interface for extra training objectives (distillation, auxiliary losses).

An objective sees the teacher-forced outputs of every step and returns a weighted loss that the trainer adds to
the recognition loss. Its trainable parameters (adapters, projection heads) are optimized with the model's and
saved in the training checkpoints, never in the recognizer weights.

>>> class Zero:
...     name = "zero"
...     encoder_layers = ()
...     def modules(self): return None
...     def __call__(self, out, images, labels): return out.ctc_logits.sum() * 0, {}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from ..models.model import TrainOutput

__all__ = ["Objective", "check_objective", "encoder_layers_needed", "view_for"]


@runtime_checkable
class Objective(Protocol):
    """An extra loss term.

    Attributes:
        name: unique short name; prefixes its logs (``{name}/{key}``) and its state in checkpoints.
        encoder_layers: 1-based encoder blocks whose outputs the objective needs; they arrive in
            :attr:`TrainOutput.taps` in this order.
    """

    name: str
    encoder_layers: tuple[int, ...]

    def modules(self) -> nn.Module | None:
        """Trainable extra parameters (added to the optimizer and to training checkpoints), or ``None``."""
        ...

    def __call__(self, out: TrainOutput, images: Tensor, labels: list[str]) -> tuple[Tensor, dict[str, float]]:
        """Compute the loss for one batch.

        Args:
            out: teacher-forced outputs (``out.taps`` holds this objective's :attr:`encoder_layers`).
            images: ``(B, 3, H, W)`` normalized with ``model.config.mean/std`` (after any GPU augmentation).
            labels: ``B`` labels normalized to the model's charset.

        Returns:
            ``(weighted scalar loss to add, {log key: float})``.
        """
        ...


def check_objective(obj: object) -> Objective:
    """Validate an objective's shape (attributes, layer indices) early, with a clear error."""
    if not isinstance(obj, Objective):
        raise TypeError(f"{obj!r} does not implement the Objective protocol (name, encoder_layers, modules, __call__)")
    layers = tuple(obj.encoder_layers)
    if any((not isinstance(i, int)) or i < 1 for i in layers):
        raise ValueError(f"objective {obj.name!r}: encoder_layers must be 1-based block indices, got {layers}")
    return obj


def encoder_layers_needed(objectives: Sequence[Objective]) -> tuple[int, ...]:
    """Sorted union of the encoder blocks every objective asks for (what ``forward_train`` must return)."""
    return tuple(sorted({i for o in objectives for i in o.encoder_layers}))


def view_for(out: TrainOutput, computed: tuple[int, ...], objective: Objective) -> TrainOutput:
    """``out`` with :attr:`TrainOutput.taps` reordered to ``objective.encoder_layers`` (taps are shared, not copied).

    Args:
        out: outputs whose ``taps`` correspond to the blocks ``computed`` (in that order).
    """
    wanted = tuple(objective.encoder_layers)
    if wanted == computed:
        return out
    pos = {layer: i for i, layer in enumerate(computed)}
    return replace(out, taps=[out.taps[pos[layer]] for layer in wanted])
