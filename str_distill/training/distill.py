"""Distillation from a frozen teacher recognizer's CTC posteriors (soft targets), as a trainer objective.

Used two ways:

* **Fine-tuning without forgetting** (learning without forgetting): the teacher is a frozen copy of the weights the
  student starts from; on every batch the student's per-frame CTC distribution is pulled towards the teacher's, so
  the new data can teach without erasing what the original knew.
* **Teacher -> student**: any registered recognizer teaches another; the teacher's frames are resampled (linear
  interpolation over time) to the student's frame count, and only the characters both charsets share (plus the
  blank) take part, renormalized.

The loss is ``T^2 * KL(teacher_T || student_T)`` per frame, averaged over frames and the batch, at temperature ``T``.
The teacher runs under :func:`torch.inference_mode` and never enters the student's weights or checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.model import TrainOutput
from ..tokenizer import resolve_charset

__all__ = ["CTCDistillation", "input_adapter", "shared_classes"]


def input_adapter(student_config: Any, teacher_config: Any) -> Any:
    """A function mapping a batch prepared for the student to the teacher's input format, or ``None`` if they match.

    Both preprocessing descriptions (:func:`~str_distill.preprocess.resolve_data_config`) are read: the batch is
    un-normalized with the student's mean/std, its channels reordered, resized (bilinear) to the teacher's height
    keeping the aspect ratio (or to the teacher's fixed size), padded on the right with the teacher's pad value to
    its minimum width (a multiple of its width step), and normalized with the teacher's mean/std.
    """
    from ..preprocess import resolve_data_config

    s, t = resolve_data_config(student_config), resolve_data_config(teacher_config)
    if s == t:
        return None
    s_mean, s_std = torch.tensor(s["mean"]).view(1, 3, 1, 1), torch.tensor(s["std"]).view(1, 3, 1, 1)
    t_mean, t_std = torch.tensor(t["mean"]).view(1, 3, 1, 1), torch.tensor(t["std"]).view(1, 3, 1, 1)
    flip = s["channel_order"] != t["channel_order"]

    def adapt(images: Tensor) -> Tensor:
        x = images.float() * s_std.to(images.device) + s_mean.to(images.device)  # [0, 1]
        if flip:
            x = x.flip(1)
        h, w = x.shape[-2:]
        if t["resize"] == "stretch":
            size = (int(t["height"]), int(t["width"]))
        else:
            tw = min(int(t["max_width"]), max(1, round(w * t["height"] / h)))
            size = (int(t["height"]), tw)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = (x - t_mean.to(x.device)) / t_std.to(x.device)
        if t["resize"] != "stretch":
            step = int(t["width_multiple"])
            width = max(int(t["min_width"]), -(-size[1] // step) * step)
            x = F.pad(x, (0, width - size[1]), value=float(t["pad_value"]))
        return x

    return adapt


def shared_classes(teacher_charset: str, student_charset: str) -> tuple[Tensor, Tensor]:
    """Class indices ``(teacher_idx, student_idx)`` of the blank and of every character in both charsets."""
    t = {c: i + 1 for i, c in enumerate(resolve_charset(teacher_charset))}
    s_chars = resolve_charset(student_charset)
    pairs = [(0, 0)] + [(t[c], i + 1) for i, c in enumerate(s_chars) if c in t]
    ti, si = zip(*pairs)
    return torch.tensor(ti), torch.tensor(si)


class CTCDistillation:
    """Objective: match the student's CTC frame distributions to a frozen teacher's.

    Args:
        teacher: a recognizer with a CTC head (any family); it is frozen (``requires_grad=False``, eval mode).
        student_charset: the student's charset (to pair classes with the teacher's).
        weight: loss weight.
        temperature: softening temperature ``T`` of both distributions.
        preprocess: ``images (B, 3, H, W)`` normalized for the student -> images for the teacher; ``None`` when both
            expect the same input (the same family and preprocessing).
    """

    name = "teacher"
    encoder_layers: tuple[int, ...] = ()

    def __init__(self, teacher: nn.Module, student_charset: str, weight: float = 1.0, temperature: float = 2.0,
                 preprocess: Any = None) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.preprocess = preprocess
        self.t_idx, self.s_idx = shared_classes(teacher.config.charset, student_charset)

    def modules(self) -> nn.Module | None:
        return None  # nothing trainable; the teacher stays out of the optimizer and the checkpoints

    def describe(self) -> str:
        return (f"teacher distillation: {self.teacher.config.arch} (frozen) -> student CTC frames, weight "
                f"{self.weight:g}, temperature {self.temperature:g}, {len(self.s_idx) - 1} shared characters")

    def teacher_logits(self, images: Tensor) -> Tensor:
        """The teacher's CTC logits ``(B, T_teacher, C_teacher)`` for the student's input batch."""
        dev = images.device
        if next(self.teacher.parameters()).device != dev:
            self.teacher.to(dev)
        x = self.preprocess(images) if self.preprocess is not None else images
        with torch.inference_mode():
            return self.teacher(x.float(), decoding="ctc").logits.float()

    def __call__(self, out: TrainOutput, images: Tensor, labels: list[str]) -> tuple[Tensor, dict[str, float]]:
        t_logits = self.teacher_logits(images)
        s_logits = out.ctc_logits.float()
        t_logits = t_logits[..., self.t_idx.to(t_logits.device)]
        s_logits = s_logits[..., self.s_idx.to(s_logits.device)]
        if t_logits.shape[1] != s_logits.shape[1]:  # resample the teacher's frames to the student's
            t_logits = F.interpolate(t_logits.transpose(1, 2), size=s_logits.shape[1], mode="linear",
                                     align_corners=False).transpose(1, 2)
        tau = self.temperature
        t_prob = (t_logits / tau).softmax(-1).clone()  # leave inference mode's tensor behind
        s_logp = (s_logits / tau).log_softmax(-1)
        kl = (t_prob * (t_prob.clamp_min(1e-12).log() - s_logp)).sum(-1).mean()
        loss = (tau * tau) * kl
        agree = (t_logits.argmax(-1) == s_logits.argmax(-1)).float().mean()
        return self.weight * loss, {"kl": float(loss.detach()), "frame_agreement": float(agree)}
