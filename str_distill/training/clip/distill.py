"""CLIP-OCR symmetrical distillation: adapters on the student, the Linguistic Consistency Loss, and the objective.

Three groups of student/teacher pairs, each compared with :func:`lcl_loss` (see ``docs/clip_ocr.md``):

* **visual**: encoder block outputs (default 3/6/9 of 12) -> learnable token mixing ``(K, N)`` -> Linear -> LayerNorm,
  against CLIP image block outputs (3/6/9 of 12) over the ``K = 1 + rows * cols`` CLIP tokens, through a learnable
  LayerNorm;
* **word**: mean of the recognizer's final encoder tokens -> MLP, against CLIP's final text embedding of the label;
* **linguistic, reversed**: every decoder layer but the last (the classifier's input), read through the decoder's
  final LayerNorm as in CLIP-OCR -> Linear -> LayerNorm, against CLIP text blocks in reversed depth order (layers 1/2
  of a 3-layer decoder meet text blocks 8/4; CLIP-OCR's layers 1/2/3 of 4 meet 9/6/3) at the same character
  positions; padding positions are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...models.config import ViTConfig
from ...models.model import TrainOutput, ViTRecognizer
from .model import CLIP_MEAN, CLIP_STD, CLIPModel
from .text import spell, unspellable_chars

__all__ = [
    "CLIPDistillHeads",
    "CLIPDistillObjective",
    "LossWeights",
    "clip_image_size",
    "lcl_loss",
    "proportional_layers",
    "reversed_text_layers",
]


# ---------------------------------------------------------------------------------------------------- layer choice
def proportional_layers(depth: int, n: int = 3) -> tuple[int, ...]:
    """The 1-based blocks at ``1/4, 2/4, 3/4`` of the depth, rounded up: ``(3, 6, 9)`` for 12 blocks.

    Raises:
        ValueError: if ``depth < n`` (the taps would not be distinct).
    """
    if depth < n:
        raise ValueError(f"need at least {n} blocks to pick {n} distinct distillation taps, got depth {depth}")
    return tuple(math.ceil(j * depth / (n + 1)) for j in range(1, n + 1))


def reversed_text_layers(
    text_depth: int, decoder_depth: int, skip_last: bool = True
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Distilled decoder layers and the CLIP text blocks they meet, in reversed depth order.

    The first ``n`` decoder layers are distilled, with ``n = decoder_depth - 1`` (CLIP-OCR: the last layer, which
    feeds the classifier, is left out; a one-layer decoder keeps its only layer) or ``n = decoder_depth`` when
    ``skip_last`` is False. Decoder layer ``j`` meets text block ``ceil(text_depth * (n + 1 - j) / (n + 1))``: deep
    text blocks for early decoder layers.

    Returns:
        ``(decoder_layers, text_layers)``: ``((1, 2, 3), (9, 6, 3))`` for CLIP-OCR's 4-layer decoder and 12 text
        blocks; ``((1, 2), (8, 4))`` for a 3-layer decoder; ``((1, 2, 3), (9, 6, 3))`` for a 3-layer decoder with
        ``skip_last=False``.
    """
    if decoder_depth < 1:
        raise ValueError("the decoder has no layers")
    n = max(decoder_depth - 1, 1) if skip_last else decoder_depth
    return tuple(range(1, n + 1)), proportional_layers(text_depth, n)[::-1]


def clip_image_size(img_size: tuple[int, int], patch: int) -> tuple[int, int]:
    """The size CLIP sees: ``img_size`` rounded to multiples of its patch (32x128 stays 32x128 for patch 16)."""
    return tuple(max(patch, round(s / patch) * patch) for s in img_size)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------- loss
def lcl_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    tau: float = 0.03,
    contrast_weight: float = 0.1,
    gram_weight: float = 5.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linguistic Consistency Loss between matched rows of two feature sets.

    Both sides are L2-normalized; then ``contrast_weight * InfoNCE(student -> teacher, temperature tau)`` plus
    ``gram_weight * mean |S S^T - T T^T|`` (L1 between the cosine-similarity matrices of each side).

    Args:
        student: ``(M, D)`` student features (after the adapters).
        teacher: ``(M, D)`` teacher features, row ``i`` is the positive of student row ``i`` and every other row a
            negative. (Identical teacher rows, e.g. a label repeated in the batch, get identical logits, so the loss
            neither rewards nor penalizes telling them apart.)

    Returns:
        ``(total, contrastive, gram)``, already weighted; ``total = contrastive + gram``.
    """
    if student.ndim != 2 or student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must both be (M, D)")
    s = F.normalize(student.float(), dim=-1, eps=1e-7)
    t = F.normalize(teacher.float(), dim=-1, eps=1e-7)
    logits = s @ t.t() / tau
    contrastive = contrast_weight * F.cross_entropy(logits, torch.arange(s.shape[0], device=s.device))
    gram = gram_weight * F.l1_loss(s @ s.t(), t @ t.t())
    return contrastive + gram, contrastive, gram


# ---------------------------------------------------------------------------------------------------- adapters
def _projection(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.LayerNorm(d_out))


def _geometric_mixing(
    student_grid: tuple[int, int], clip_grid: tuple[int, int], img_size: tuple[int, int]
) -> torch.Tensor:
    """``(1 + cr * cc, sr * sc)`` averaging matrix: CLIP's class row averages every student token, each CLIP patch
    row averages the student tokens whose centres fall inside that patch (uniform over all if none does)."""
    (sr, sc), (cr, cc), (h, w) = student_grid, clip_grid, img_size
    ys = (torch.arange(sr) + 0.5) * h / sr
    xs = (torch.arange(sc) + 0.5) * w / sc
    row = torch.clamp((ys * cr / h).floor().long(), max=cr - 1)
    col = torch.clamp((xs * cc / w).floor().long(), max=cc - 1)
    cell = (row[:, None] * cc + col[None, :]).reshape(-1)  # CLIP patch of each student token, row-major
    m = torch.zeros(1 + cr * cc, sr * sc)
    m[0] = 1.0
    m[1 + cell, torch.arange(sr * sc)] = 1.0
    empty = m.sum(1) == 0
    m[empty] = 1.0
    return m / m.sum(1, keepdim=True)


class CLIPDistillHeads(nn.Module):
    """The trainable adapters of the objective (never part of the recognizer).

    Args:
        enc_dim, dec_dim: recognizer encoder / decoder widths.
        student_grid: encoder token grid ``(rows, cols)``; ``img_size``: recognizer input ``(H, W)``.
        clip_grid: CLIP patch grid on the crop, ``(2, 8)`` for 32x128 and patch 16.
        vision_width, text_width, embed_dim: CLIP widths (768, 512, 512 for ViT-B/16).
        n_visual, n_text: number of visual / linguistic pairs.
    """

    def __init__(
        self,
        enc_dim: int,
        dec_dim: int,
        student_grid: tuple[int, int],
        img_size: tuple[int, int],
        clip_grid: tuple[int, int],
        vision_width: int,
        text_width: int,
        embed_dim: int,
        n_visual: int,
        n_text: int,
    ) -> None:
        super().__init__()
        mix = _geometric_mixing(student_grid, clip_grid, img_size)
        self.vis_mix = nn.ParameterList(nn.Parameter(mix.clone()) for _ in range(n_visual))
        self.vis_proj = nn.ModuleList(_projection(enc_dim, vision_width) for _ in range(n_visual))
        self.vis_norm = nn.ModuleList(nn.LayerNorm(vision_width) for _ in range(n_visual))
        self.text_proj = nn.ModuleList(_projection(dec_dim, text_width) for _ in range(n_text))
        self.text_norm = nn.ModuleList(nn.LayerNorm(text_width) for _ in range(n_text))
        self.word = nn.Sequential(
            nn.Linear(enc_dim, enc_dim), nn.LayerNorm(enc_dim), nn.ReLU(), nn.Linear(enc_dim, embed_dim)
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def visual(self, i: int, tokens: torch.Tensor) -> torch.Tensor:
        """Encoder tap ``(B, N, D)`` -> ``(B, K, Wv)`` (token mixing, then Linear + LayerNorm)."""
        mix = self.vis_mix[i]
        return self.vis_proj[i](torch.einsum("kn,bnd->bkd", mix, tokens.to(mix.dtype)))


@dataclass
class LossWeights:
    """Multipliers of the three groups of terms (1.0 each, as in CLIP-OCR)."""

    visual: float = 1.0
    word: float = 1.0
    text: float = 1.0


@dataclass
class TeacherFeatures:
    """Frozen CLIP features for one batch (no gradient).

    Attributes:
        visual: per visual pair, ``(B, K, Wv)`` image block outputs (class token first).
        text: per linguistic pair, ``(B, L + 1, Wt)`` text block outputs with SOT dropped (position ``t`` holds
            character ``t + 1``, position ``len`` holds EOT).
        embedding: ``(B, E)`` final text embedding of each label.
    """

    visual: list[torch.Tensor]
    text: list[torch.Tensor]
    embedding: torch.Tensor


class CLIPDistillObjective:
    """CLIP-OCR distillation as a trainer :class:`~str_distill.training.objectives.Objective`.

    The frozen teacher is held here (eval mode, ``requires_grad=False``), never registered in the
    :class:`~str_distill.models.ViTRecognizer`; :meth:`modules` returns only the trainable adapters.

    Args:
        model: the recognizer being trained (read for shapes and preprocessing; only its decoder's final LayerNorm is
            kept, by reference, when ``decoder_norm``).
        teacher: a frozen :class:`CLIPModel`.
        weights: multipliers of the visual / word / linguistic groups.
        tau, contrast_weight, gram_weight: :func:`lcl_loss` settings (0.03, 0.1, 5.0).
        encoder_layers, vision_layers: paired 1-based blocks (default 1/4, 2/4, 3/4 of each depth).
        decoder_layers: ``"all-but-last"`` (default, CLIP-OCR: the last decoder layer feeds the classifier and is not
            distilled) or ``"all"``; see :func:`reversed_text_layers` for the text blocks they meet.
        decoder_norm: read the distilled decoder layers through the decoder's final LayerNorm (the recognizer's own
            ``decoder.norm``, shared with the classifier, as CLIP-OCR does); False = the raw query stream.
        lowercase: lower-case labels for the teacher, as CLIP's tokenizer does.

    Raises:
        ValueError: if the charset has characters CLIP cannot spell one token each, or labels cannot fit its context.
    """

    name = "clip"

    def __init__(
        self,
        model: ViTRecognizer,
        teacher: CLIPModel,
        weights: LossWeights | None = None,
        tau: float = 0.03,
        contrast_weight: float = 0.1,
        gram_weight: float = 5.0,
        encoder_layers: Sequence[int] | None = None,
        vision_layers: Sequence[int] | None = None,
        decoder_layers: str = "all-but-last",
        decoder_norm: bool = True,
        lowercase: bool = True,
    ) -> None:
        cfg: ViTConfig = model.config
        tc = teacher.config
        bad = unspellable_chars(model.tokenizer.charset)
        if bad:
            raise ValueError(
                f"charset has characters that CLIP cannot spell one token each: {bad!r}; CLIP distillation needs "
                "single-byte, non-space characters (use the 36/62/94 charsets or drop these characters)"
            )
        if cfg.max_label_length + 2 > tc.context_length:
            raise ValueError(f"max_label_length {cfg.max_label_length} + 2 exceeds CLIP's context {tc.context_length}")
        self.encoder_layers = tuple(encoder_layers or proportional_layers(cfg.depth))
        self.vision_layers = tuple(vision_layers or proportional_layers(tc.vision_layers))
        if len(self.encoder_layers) != len(self.vision_layers):
            raise ValueError(f"encoder layers {self.encoder_layers} and CLIP layers {self.vision_layers} must pair up")
        enc = self.encoder_layers
        if any(a >= b for a, b in zip(enc, enc[1:])) or not all(1 <= i <= cfg.depth for i in enc):
            # the encoder returns its taps in block order, so the pairing needs ascending blocks
            raise ValueError(f"encoder layers {enc} must be ascending blocks in 1..{cfg.depth}")
        if decoder_layers not in ("all-but-last", "all"):
            raise ValueError(f"decoder_layers must be 'all-but-last' or 'all', got {decoder_layers!r}")
        self.decoder_layers, self.text_layers = reversed_text_layers(
            tc.text_layers, cfg.dec_depth, skip_last=decoder_layers == "all-but-last"
        )
        # the recognizer's own final decoder norm (a reference: trained with the model, saved with it, never copied)
        self.decoder_norm: nn.Module = model.decoder.norm if decoder_norm else nn.Identity()
        self.clip_size = clip_image_size(cfg.img_size, tc.vision_patch)
        self.clip_grid = (self.clip_size[0] // tc.vision_patch, self.clip_size[1] // tc.vision_patch)
        self.teacher = teacher.eval().requires_grad_(False)
        self.heads = CLIPDistillHeads(
            cfg.embed_dim,
            cfg.dec_dim,
            cfg.grid_size,
            cfg.img_size,
            self.clip_grid,
            tc.vision_width,
            tc.text_width,
            tc.embed_dim,
            len(self.encoder_layers),
            len(self.decoder_layers),
        )
        self.weights = weights or LossWeights()
        self.tau, self.contrast_weight, self.gram_weight = tau, contrast_weight, gram_weight
        self.lowercase = lowercase
        self.teacher_info = ""  # set by build_objective: where the teacher came from and its resolved shapes
        mean, std = torch.tensor(cfg.mean), torch.tensor(cfg.std)
        cmean, cstd = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
        # x_clip = (x * std + mean - cmean) / cstd = x * scale + shift
        self._scale = (std / cstd).view(1, 3, 1, 1)
        self._shift = ((mean - cmean) / cstd).view(1, 3, 1, 1)

    def modules(self) -> nn.Module:
        """The trainable adapters (optimized and checkpointed by the trainer; never in the recognizer weights)."""
        return self.heads

    def describe(self) -> str:
        """What is paired with what (and the teacher's origin, when known), for the training log."""
        norm = " (through the decoder's final norm)" if isinstance(self.decoder_norm, nn.LayerNorm) else " (raw)"
        return (self.teacher_info + "\n" if self.teacher_info else "") + (
            f"CLIP distillation: encoder blocks {self.encoder_layers} <-> CLIP image blocks {self.vision_layers} "
            f"on a {self.clip_grid[0]}x{self.clip_grid[1]} patch grid ({self.clip_size[0]}x{self.clip_size[1]} px); "
            f"decoder layers {self.decoder_layers}{norm} <-> CLIP text blocks {self.text_layers}; pooled tokens <-> "
            f"text embedding; LCL = {self.contrast_weight} InfoNCE(tau={self.tau}) + {self.gram_weight} L1(Gram)"
        )

    # ------------------------------------------------------------------------------------------------ teacher
    def clip_images(self, images: torch.Tensor) -> torch.Tensor:
        """Re-normalize ``(B, 3, H, W)`` recognizer inputs to CLIP's mean/std (and resize to the CLIP patch grid)."""
        x = images.float() * self._scale.to(images.device) + self._shift.to(images.device)
        if tuple(x.shape[-2:]) != self.clip_size:
            x = F.interpolate(x, size=self.clip_size, mode="bilinear", align_corners=False)
        return x

    @torch.no_grad()
    def teacher_features(self, images: torch.Tensor, labels: list[str]) -> TeacherFeatures:
        """Run the frozen teacher on the crops and on the spelled labels.

        Args:
            images: ``(B, 3, H, W)`` normalized with the recognizer's mean/std.
            labels: ``B`` labels in the recognizer's charset.
        """
        t = self.teacher
        if next(t.parameters()).device != images.device:
            t.to(images.device)
        if t.training:
            t.eval()
        _, vis = t.encode_image(self.clip_images(images), self.vision_layers, embedding=False)
        ids, eot = spell(labels, t.config.vocab_size, lowercase=self.lowercase, device=images.device)
        emb, txt = t.encode_text(ids, eot, self.text_layers)
        return TeacherFeatures(vis, [x[:, 1:] for x in txt], emb)

    # ------------------------------------------------------------------------------------------------ loss
    def __call__(
        self, out: TrainOutput, images: torch.Tensor, labels: list[str]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Distillation loss for one batch.

        Args:
            out: :meth:`ViTRecognizer.forward_train` output run with ``return_layers=self.encoder_layers``.
            images: ``(B, 3, H, W)`` normalized with the recognizer's mean/std.
            labels: the ``B`` labels, normalized to the recognizer's charset.

        Returns:
            ``(loss, logs)``: the weighted sum of every LCL term, and floats ``total``, ``visual``, ``word``,
            ``text``, ``nce`` (contrastive part) and ``gram`` (Gram part) for logging (the trainer prefixes ``clip/``).
        """
        b = images.shape[0]
        if b == 0:
            raise ValueError("CLIP distillation got an empty batch")
        if len(labels) != b:
            raise ValueError(f"{len(labels)} labels for {b} images")
        if len(out.taps) != len(self.encoder_layers):
            raise ValueError(
                f"got {len(out.taps)} encoder taps; run forward_train with return_layers={self.encoder_layers}"
            )
        hidden = out.ar.hidden
        if len(hidden) < max(self.decoder_layers):
            raise ValueError(f"decoder returned {len(hidden)} layers; need layers {self.decoder_layers}")
        lengths = torch.tensor([len(x) for x in labels], device=images.device)
        steps = int(lengths.max()) + 1  # characters + EOS of the longest label
        if hidden[0].shape[1] < steps:
            raise ValueError(f"decoder has {hidden[0].shape[1]} positions but the longest label needs {steps}")
        # targets padded beyond the longest label (fixed-length targets, as `--compile` uses) only add PAD positions
        # after it; the decoder is causal, so the first `steps` positions are the same and the rest are dropped here
        hidden = [h[:, :steps] for h in hidden]
        heads = self.heads
        if next(heads.parameters()).device != images.device:
            heads.to(images.device)
        feats = self.teacher_features(images, labels)
        valid = torch.arange(steps, device=images.device)[None, :] <= lengths[:, None]  # chars + EOS, no PAD
        lcl = dict(tau=self.tau, contrast_weight=self.contrast_weight, gram_weight=self.gram_weight)

        zero = images.new_zeros((), dtype=torch.float32)
        vis_total, vis_c, vis_g = zero, zero, zero
        for i, (tap, target) in enumerate(zip(out.taps, feats.visual)):
            s = heads.visual(i, tap).flatten(0, 1)
            t = heads.vis_norm[i](target.float()).flatten(0, 1)
            tot, c, g = lcl_loss(s, t, **lcl)
            vis_total, vis_c, vis_g = vis_total + tot, vis_c + c, vis_g + g

        txt_total, txt_c, txt_g = zero, zero, zero
        for i, (layer, target) in enumerate(zip(self.decoder_layers, feats.text)):
            s = heads.text_proj[i](self.decoder_norm(hidden[layer - 1][valid]).float())
            t = heads.text_norm[i](target.float()[valid])
            tot, c, g = lcl_loss(s, t, **lcl)
            txt_total, txt_c, txt_g = txt_total + tot, txt_c + c, txt_g + g

        pooled = out.memory.float().mean(1)
        word_total, word_c, word_g = lcl_loss(heads.word(pooled), feats.embedding, **lcl)

        w = self.weights
        loss = w.visual * vis_total + w.word * word_total + w.text * txt_total
        logs = {
            "total": float(loss.detach()),
            "visual": float(vis_total.detach()),
            "word": float(word_total.detach()),
            "text": float(txt_total.detach()),
            "nce": float((vis_c + txt_c + word_c).detach()),
            "gram": float((vis_g + txt_g + word_g).detach()),
        }
        return loss, logs
