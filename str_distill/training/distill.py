"""Distillation from a frozen teacher recognizer, as trainer objectives.

:class:`CTCDistillation` uses the teacher's CTC posteriors as soft targets, two ways:

* **Fine-tuning without forgetting** (learning without forgetting): the teacher is a frozen copy of the weights the
  student starts from; on every batch the student's per-frame CTC distribution is pulled towards the teacher's, so
  the new data can teach without erasing what the original knew.
* **Teacher -> student**: any registered recognizer teaches another; the teacher's frames over the image (those
  over its padding are dropped) are resampled (linear interpolation over time) to the student's frame count, and
  only the characters both charsets share (plus the blank) take part, renormalized.

Its loss is ``T^2 * KL(teacher_T || student_T)`` per frame, averaged over frames and the batch, at temperature ``T``.
:class:`FeatureDistillation` matches chosen student encoder layers to the teacher's per-frame features in the manner
of CLIP-OCR. The teacher runs once per batch (:class:`TeacherRunner`, shared by both) under
:func:`torch.inference_mode` and never enters the student's weights or checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.model import TrainOutput
from ..tokenizer import resolve_charset

__all__ = ["CTCDistillation", "FeatureDistillation", "FeatureHeads", "TeacherInput", "TeacherRunner", "input_adapter",
           "resample_frames", "shared_classes"]


class TeacherInput:
    """Maps a batch prepared for the student to the teacher's input format (see :func:`input_adapter`).

    Calling it returns the teacher's batch ``(B, 3, H_t, W_t)``. A variable-width teacher gets its images padded on
    the right to its minimum width, as at inference (its output depends on the padding), and
    :meth:`content_width` says how many of the ``W_t`` columns hold the image: only the teacher frames over those
    columns are aligned with the student's frames.
    """

    def __init__(self, student: dict[str, Any], teacher: dict[str, Any]) -> None:
        self.s, self.t = student, teacher
        self.s_mean, self.s_std = torch.tensor(student["mean"]).view(1, 3, 1, 1), torch.tensor(student["std"]).view(
            1, 3, 1, 1)
        self.t_mean, self.t_std = torch.tensor(teacher["mean"]).view(1, 3, 1, 1), torch.tensor(teacher["std"]).view(
            1, 3, 1, 1)
        self.flip = student["channel_order"] != teacher["channel_order"]

    def size(self, height: int, width: int) -> tuple[int, int]:
        """The teacher-side ``(H, W)`` of a student batch ``height x width`` before padding."""
        t = self.t
        if t["resize"] == "stretch":
            return int(t["height"]), int(t["width"])
        return int(t["height"]), min(int(t["max_width"]), max(1, round(width * t["height"] / height)))

    def content_width(self, height: int, width: int) -> int:
        """Columns of the teacher's batch that hold the image (the rest is padding)."""
        return self.size(height, width)[1]

    def __call__(self, images: Tensor) -> Tensor:
        t, dev = self.t, images.device
        x = images.float() * self.s_std.to(dev) + self.s_mean.to(dev)  # [0, 1]
        if self.flip:
            x = x.flip(1)
        size = self.size(*images.shape[-2:])
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.t_mean.to(dev)) / self.t_std.to(dev)
        if t["resize"] != "stretch":
            step = int(t["width_multiple"])
            width = max(int(t["min_width"]), -(-size[1] // step) * step)
            x = F.pad(x, (0, width - size[1]), value=float(t["pad_value"]))
        return x


def input_adapter(student_config: Any, teacher_config: Any) -> TeacherInput | None:
    """A :class:`TeacherInput` mapping a batch prepared for the student to the teacher's input format, or ``None``
    if they match.

    Both preprocessing descriptions (:func:`~str_distill.preprocess.resolve_data_config`) are read: the batch is
    un-normalized with the student's mean/std, its channels reordered, resized (bilinear) to the teacher's height
    keeping the aspect ratio (or to the teacher's fixed size), padded on the right with the teacher's pad value to
    its minimum width (a multiple of its width step), and normalized with the teacher's mean/std.
    """
    from ..preprocess import resolve_data_config

    s, t = resolve_data_config(student_config), resolve_data_config(teacher_config)
    return None if s == t else TeacherInput(s, t)


def shared_classes(teacher_charset: str, student_charset: str) -> tuple[Tensor, Tensor]:
    """Class indices ``(teacher_idx, student_idx)`` of the blank and of every character in both charsets."""
    t = {c: i + 1 for i, c in enumerate(resolve_charset(teacher_charset))}
    s_chars = resolve_charset(student_charset)
    pairs = [(0, 0)] + [(t[c], i + 1) for i, c in enumerate(s_chars) if c in t]
    ti, si = zip(*pairs)
    return torch.tensor(ti), torch.tensor(si)


class TeacherRunner:
    """Runs a frozen teacher once per batch for every objective that reads it (CTC posteriors, features).

    Args:
        teacher: a recognizer with a CTC head (any family); it is frozen (``requires_grad=False``, eval mode).
        preprocess: ``images (B, 3, H, W)`` normalized for the student -> images for the teacher; ``None`` when both
            expect the same input (the same family and preprocessing).
    """

    def __init__(self, teacher: nn.Module, preprocess: Any = None) -> None:
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.preprocess = preprocess
        self._images: Tensor | None = None  # the last batch (held, so that no new batch can reuse its memory)
        self._version = -1
        self._out: tuple[Tensor | None, Tensor] | None = None

    @property
    def has_features(self) -> bool:
        """Whether the teacher gives one feature vector per CTC frame (``features()``, as the PP-OCR family)."""
        return callable(getattr(self.teacher, "features", None)) and hasattr(self.teacher, "head")

    def __call__(self, images: Tensor) -> tuple[Tensor | None, Tensor]:
        """``(features (B, T, D) or None, CTC logits (B, T, C))`` of the teacher for the student's batch, float32,
        computed under inference mode. With an input adapter that pads, only the ``T`` frames over the image (not
        those over the padding) are kept."""
        if images is self._images and images._version == self._version and self._out is not None:
            return self._out
        if next(self.teacher.parameters()).device != images.device:
            self.teacher.to(images.device)
        x = self.preprocess(images) if self.preprocess is not None else images
        with torch.inference_mode():
            if self.has_features:
                feats: Tensor | None = self.teacher.features(x.float())
                logits = self.teacher.head(feats).float()
                feats = feats.float()
            else:
                feats, logits = None, self.teacher(x.float(), decoding="ctc").logits.float()
        content_width = getattr(self.preprocess, "content_width", None)
        if content_width is not None:  # keep the frames over the image, not over the teacher's padding
            keep = max(1, math.ceil(logits.shape[1] * content_width(*images.shape[-2:]) / x.shape[-1]))
            logits = logits[:, :keep]
            feats = feats[:, :keep] if feats is not None else None
        self._images, self._version, self._out = images, images._version, (feats, logits)
        return self._out


def resample_frames(x: Tensor, frames: int) -> Tensor:
    """``(B, T, C)`` -> ``(B, frames, C)`` by linear interpolation over time (unchanged when ``T == frames``)."""
    if x.shape[1] == frames:
        return x
    return F.interpolate(x.transpose(1, 2), size=frames, mode="linear", align_corners=False).transpose(1, 2)


class CTCDistillation:
    """Objective: match the student's CTC frame distributions to a frozen teacher's.

    Args:
        teacher: a recognizer with a CTC head (any family); it is frozen (``requires_grad=False``, eval mode).
        student_charset: the student's charset (to pair classes with the teacher's).
        weight: loss weight.
        temperature: softening temperature ``T`` of both distributions.
        preprocess: ``images (B, 3, H, W)`` normalized for the student -> images for the teacher; ``None`` when both
            expect the same input (the same family and preprocessing).
        runner: a :class:`TeacherRunner` shared with other objectives (then ``teacher`` and ``preprocess`` are its).
    """

    name = "teacher"
    encoder_layers: tuple[int, ...] = ()

    def __init__(self, teacher: nn.Module, student_charset: str, weight: float = 1.0, temperature: float = 2.0,
                 preprocess: Any = None, runner: TeacherRunner | None = None) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.runner = runner or TeacherRunner(teacher, preprocess)
        self.teacher = self.runner.teacher
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.t_idx, self.s_idx = shared_classes(self.teacher.config.charset, student_charset)

    def modules(self) -> nn.Module | None:
        return None  # nothing trainable; the teacher stays out of the optimizer and the checkpoints

    def describe(self) -> str:
        return (f"teacher distillation: {self.teacher.config.arch} (frozen) -> student CTC frames, weight "
                f"{self.weight:g}, temperature {self.temperature:g}, {len(self.s_idx) - 1} shared characters")

    def teacher_logits(self, images: Tensor) -> Tensor:
        """The teacher's CTC logits ``(B, T_teacher, C_teacher)`` for the student's input batch: with an input
        adapter that pads, only the ``T_teacher`` frames over the image (not those over the padding)."""
        return self.runner(images)[1]

    def __call__(self, out: TrainOutput, images: Tensor, labels: list[str]) -> tuple[Tensor, dict[str, float]]:
        t_logits = self.teacher_logits(images)
        s_logits = out.ctc_logits.float()
        t_logits = t_logits[..., self.t_idx.to(t_logits.device)]
        s_logits = s_logits[..., self.s_idx.to(s_logits.device)]
        t_logits = resample_frames(t_logits, s_logits.shape[1])  # the teacher's frames onto the student's
        tau = self.temperature
        t_prob = (t_logits / tau).softmax(-1).clone()  # leave inference mode's tensor behind
        s_logp = (s_logits / tau).log_softmax(-1)
        kl = (t_prob * (t_prob.clamp_min(1e-12).log() - s_logp)).sum(-1).mean()
        loss = (tau * tau) * kl
        agree = (t_logits.argmax(-1) == s_logits.argmax(-1)).float().mean()
        return self.weight * loss, {"kl": float(loss.detach()), "frame_agreement": float(agree)}


class FeatureHeads(nn.Module):
    """The trainable adapters of :class:`FeatureDistillation`: one ``Linear(D_student, D_teacher) + LayerNorm`` per
    tapped encoder layer (they live in training checkpoints, never in the recognizer's weights)."""

    def __init__(self, student_dim: int, teacher_dim: int, n: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Sequential(nn.Linear(student_dim, teacher_dim), nn.LayerNorm(teacher_dim))
                                  for _ in range(n))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)


class FeatureDistillation:
    """Objective: student encoder layers matched to the teacher's per-frame features, in the manner of CLIP-OCR.

    Every tapped encoder layer's tokens ``(B, gh * gw, D_s)`` are averaged over the rows of the token grid into
    ``gw`` columns, projected (``Linear + LayerNorm``, :class:`FeatureHeads`) to the teacher's width, and compared
    with the teacher's features over the image (its padding dropped), resampled to ``gw`` frames and layer-normalized,
    by CLIP-OCR's linguistic consistency loss (:func:`~str_distill.training.clip.distill.lcl_loss`): an InfoNCE term
    (each student column must pick its own teacher frame among all the frames of the batch) plus the L1 distance
    between the two cosine-similarity (Gram) matrices.

    Args:
        runner: the frozen teacher (:class:`TeacherRunner`; its teacher must give per-frame features, as the
            PP-OCR family does); share it with :class:`CTCDistillation` to run the teacher once per batch.
        student_config: the student's config (``grid_size``, ``embed_dim``).
        layers: 1-based student encoder blocks to match.
        weight: loss weight; ``tau``, ``contrast_weight``, ``gram_weight``: as in CLIP-OCR.
    """

    name = "teacher_feat"

    def __init__(self, runner: TeacherRunner, student_config: Any, layers: tuple[int, ...], weight: float = 1.0,
                 tau: float = 0.03, contrast_weight: float = 0.1, gram_weight: float = 5.0) -> None:
        if not runner.has_features:
            raise ValueError(f"feature distillation needs a teacher with per-frame features (the PP-OCR family); "
                             f"{runner.teacher.config.arch} has none")
        grid = getattr(student_config, "grid_size", None)
        if grid is None:
            raise ValueError(f"feature distillation needs a ViT student (a token grid); {student_config.arch} has none")
        depth = int(student_config.depth)
        layers = tuple(int(i) for i in layers)
        if not layers or any(i < 1 or i > depth for i in layers):
            raise ValueError(f"feature distillation layers must be in 1..{depth} (the student's blocks), got {layers}")
        self.runner = runner
        self.encoder_layers = layers
        self.grid = tuple(int(g) for g in grid)
        self.weight, self.tau = float(weight), float(tau)
        self.contrast_weight, self.gram_weight = float(contrast_weight), float(gram_weight)
        teacher_dim = int(runner.teacher.head.in_features)
        self.heads = FeatureHeads(int(student_config.embed_dim), teacher_dim, len(layers))

    def modules(self) -> nn.Module:
        return self.heads

    def describe(self) -> str:
        return (f"teacher feature distillation: student blocks {list(self.encoder_layers)} -> "
                f"{self.runner.teacher.config.arch} (frozen) frame features, weight {self.weight:g}")

    def __call__(self, out: TrainOutput, images: Tensor, labels: list[str]) -> tuple[Tensor, dict[str, float]]:
        from .clip.distill import lcl_loss

        if len(out.taps) != len(self.encoder_layers):
            raise ValueError(f"got {len(out.taps)} encoder taps; run forward_train with "
                             f"return_layers={self.encoder_layers}")
        if next(self.heads.parameters()).device != images.device:
            self.heads.to(images.device)
        gh, gw = self.grid
        feats = self.runner(images)[0]
        assert feats is not None  # checked in __init__
        target = F.layer_norm(resample_frames(feats, gw), feats.shape[-1:]).flatten(0, 1)
        total = images.new_zeros((), dtype=torch.float32)
        nce = gram = 0.0
        for proj, tap in zip(self.heads.proj, out.taps):
            b, n, d = tap.shape
            if n != gh * gw:
                raise ValueError(f"encoder tap has {n} tokens; the student's grid {gh}x{gw} has {gh * gw}")
            cols = tap.float().reshape(b, gh, gw, d).mean(1)  # (B, gw, D_s): one per image column of tokens
            s = proj(cols).flatten(0, 1)
            loss, c, g = lcl_loss(s, target, self.tau, self.contrast_weight, self.gram_weight)
            total = total + loss / len(out.taps)
            nce += float(c.detach()) / len(out.taps)
            gram += float(g.detach()) / len(out.taps)
        return self.weight * total, {"loss": float(total.detach()), "nce": nce, "gram": gram}
