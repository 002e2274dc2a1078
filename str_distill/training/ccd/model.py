"""CCD student/teacher: encoder + heads, EMA teacher, teacher centering and the training loss of one batch."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...models.config import ViTConfig
from ...models.model import ViTRecognizer
from .heads import DINOHead, SegHead
from .masks import kmeans_text_mask
from .regions import paired_regions, pool_regions, warp
from .views import ViewConfig, make_views

__all__ = ["CCD", "CCDConfig", "CCDNet", "cosine", "dino_loss", "mean_cosine", "seg_layers_for", "target_entropies"]


@dataclass
class CCDConfig:
    """Heads, regions and loss of CCD (defaults as in the paper unless noted).

    Attributes:
        out_dim, hidden_dim, bottleneck_dim, norm_last_layer: DINO head (65536 / 2048 / 256 / False for Ti and S).
        seg_dim: channels of the segmentation head (ours).
        seg_layers: 1-based encoder blocks fed to the segmentation head; empty = depth/6, depth/3, depth/2
            (blocks 2, 4, 6 of a 12-block ViT, as in CCD).
        min_area, max_regions, warp_threshold: character regions (30 px, 26, 0.1).
        teacher_temp, student_temp, center_momentum: 0.04 / 0.1 / 0.9.
        seg_weight: weight of the segmentation loss (total = distillation + seg_weight * segmentation).
        min_seg_iou: after the warm-up, a batch takes its regions from the predicted mask only if it overlaps the
            k-means mask with at least this IoU (ours: guards short runs against an untrained head; 0 = paper).
        views: augmentation of the two views.
    """

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = False
    seg_dim: int = 64
    seg_layers: tuple[int, ...] = ()
    min_area: int = 30
    max_regions: int = 26
    warp_threshold: float = 0.1
    teacher_temp: float = 0.04
    student_temp: float = 0.1
    center_momentum: float = 0.9
    seg_weight: float = 1.0
    min_seg_iou: float = 0.5
    views: ViewConfig = field(default_factory=ViewConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CCDConfig:
        d = dict(d)
        views = ViewConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("views", {}).items()})
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}, views=views)


def seg_layers_for(depth: int, layers: tuple[int, ...] = ()) -> tuple[int, ...]:
    """Blocks tapped by the segmentation head: ``layers`` if given, else depth/6, depth/3, depth/2 (deduplicated)."""
    layers = layers or tuple(max(1, round(depth * f)) for f in (1 / 6, 1 / 3, 1 / 2))
    if not all(1 <= i <= depth for i in layers):
        raise ValueError(f"seg_layers {layers} must lie in 1..{depth}")
    return tuple(sorted(set(layers)))


def cosine(progress: float, start: float, end: float) -> float:
    """Cosine schedule from ``start`` (progress 0) to ``end`` (progress 1)."""
    p = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * p))


def dino_loss(
    teacher: torch.Tensor, student: torch.Tensor, center: torch.Tensor, t_temp: float, s_temp: float
) -> torch.Tensor:
    """Cross-entropy between the centred, sharpened teacher distribution and the student's.

    Args:
        teacher, student: logits ``(M, P)`` of paired regions; center ``(1, P)``.

    Returns:
        scalar ``mean_m sum_p -softmax((t - c) / t_temp) * log_softmax(s / s_temp)``.
    """
    t = F.softmax((teacher.float() - center) / t_temp, dim=-1)
    return -(t * F.log_softmax(student.float() / s_temp, dim=-1)).sum(-1).mean()


def target_entropies(teacher: torch.Tensor, center: torch.Tensor, t_temp: float) -> tuple[float, float]:
    """Entropies (nats) of the teacher targets ``softmax((teacher - center) / t_temp)`` of ``(M, P)`` logits.

    Returns:
        ``(mean entropy of each row, entropy of the mean row)``. Both lie in ``[0, log P]``. A row entropy near
        ``log P`` means uniform targets (collapse to uniform); a mean-row entropy near 0 means every region picks
        the same prototype (collapse to one prototype). Healthy targets are sharp rows (row entropy well below
        ``log P``) spread over many prototypes (mean-row entropy well above the row entropy).
    """
    t = F.softmax((teacher.float() - center) / t_temp, dim=-1)
    return torch.special.entr(t).sum(-1).mean().item(), torch.special.entr(t.mean(0)).sum().item()


def mean_cosine(z: torch.Tensor) -> float:
    """Mean cosine similarity between the distinct rows of L2-normalized features ``(M, d)`` (NaN if ``M < 2``).

    Uses ``sum_{i != j} z_i . z_j = |sum_i z_i|^2 - M``, so it costs ``O(M d)``. Near 1: every region has the
    same feature (collapse); near 0: unrelated features.
    """
    m = z.shape[0]
    if m < 2:
        return float("nan")
    total = z.float().sum(0)
    return ((total @ total - m) / (m * (m - 1))).item()


class CCDNet(nn.Module):
    """One CCD network (the student, or its EMA copy the teacher): ViT encoder + segmentation head + DINO head.

    The encoder is built exactly as :attr:`ViTRecognizer.encoder`, so its weights load into a recognizer strictly.
    """

    def __init__(self, config: ViTConfig, cfg: CCDConfig) -> None:
        super().__init__()
        self.encoder = ViTRecognizer(config).encoder
        self.seg_layers = seg_layers_for(config.depth, cfg.seg_layers)
        self.seg_head = SegHead(config.embed_dim, len(self.seg_layers), config.grid_size, config.img_size, cfg.seg_dim)
        self.dino_head = DINOHead(
            config.embed_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.norm_last_layer
        )

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized ``(B, 3, H, W)`` -> tokens ``(B, N, D)`` and text logits ``(B, H, W)``."""
        tokens, taps = self.encoder(images, return_layers=self.seg_layers)
        return tokens, self.seg_head(taps)


class CCD(nn.Module):
    """Character-to-character distillation: a student and an EMA teacher.

    Args:
        config: the recognizer architecture whose encoder is pretrained (its mean/std normalize the views).
        cfg: CCD hyper-parameters.
    """

    def __init__(self, config: ViTConfig, cfg: CCDConfig | None = None) -> None:
        super().__init__()
        self.config, self.cfg = config, cfg or CCDConfig()
        self.student = CCDNet(config, self.cfg)
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, self.cfg.out_dim))
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> CCD:
        super().train(mode)
        self.teacher.eval()  # the teacher never uses drop-path or dropout
        return self

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA: ``teacher <- momentum * teacher + (1 - momentum) * student`` for every parameter."""
        for pt, ps in zip(self.teacher.parameters(), self.student.parameters()):
            pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)

    def freeze_last_layer(self) -> None:
        """Drop the gradients of the student's prototype layer (call between ``backward`` and the optimizer step).

        CCD (after DINO) keeps this layer fixed at the start of training; with ``grad=None`` AdamW skips it entirely,
        weight decay included.
        """
        for p in self.student.dino_head.last_layer():
            p.grad = None

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """``center <- m * center + (1 - m) * mean(teacher_logits)`` with ``m = center_momentum``; ``(M, P)``.

        In a process group (``torchrun``) the mean is over every process's rows, as in DINO, so the centers stay
        identical; every process must then call it at every step, with ``M = 0`` rows if it has none.
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = teacher_logits.float()
            both = torch.cat([t.sum(0), t.new_tensor([t.shape[0]])])
            dist.all_reduce(both)
            if both[-1] > 0:
                m = self.cfg.center_momentum
                self.center.mul_(m).add_((both[:-1] / both[-1]).unsqueeze(0), alpha=1 - m)
            return
        if teacher_logits.shape[0]:
            m = self.cfg.center_momentum
            self.center.mul_(m).add_(teacher_logits.float().mean(0, keepdim=True), alpha=1 - m)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images -> the encoder's input normalization."""
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor, use_predicted_mask: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch; also updates the teacher center.

        Args:
            images: ``(B, 3, H, W)`` in ``[0, 1]``.
            use_predicted_mask: take character regions from the student's segmentation of view 1 (after the warm-up)
                instead of the k-means mask, if it agrees with it (IoU >= ``cfg.min_seg_iou``).

        Returns:
            total loss (distillation + seg_weight * segmentation) and float logs: ``loss``, ``distill``, ``seg``,
            ``pairs`` and ``regions`` per image, ``seg_iou``, ``predicted_mask``, and the collapse watch (NaN when the
            batch has no pair): ``teacher_entropy`` and ``teacher_batch_entropy`` (:func:`target_entropies` of the
            teacher's targets), ``feature_cosine`` and ``teacher_feature_cosine`` (:func:`mean_cosine` of the
            student's / teacher's bottleneck features of the view-1 regions).
        """
        cfg, b = self.cfg, images.shape[0]
        grid = self.config.grid_size
        fp32 = torch.autocast(images.device.type, enabled=False)  # masks, views and regions stay in float32
        with torch.no_grad(), fp32:
            view1, view2, theta = make_views(images, cfg.views)
            x = self.normalize(torch.cat([view1, view2]))
            kmeans = kmeans_text_mask(images)
            # view 2 targets: the warped k-means mask, ignoring pixels that came from outside view 1
            both = warp(torch.stack([kmeans.float(), torch.ones_like(kmeans, dtype=torch.float)], 1), theta)
            target = torch.cat([kmeans.float(), (both[:, 0] > 0.5).float()])
            weight = torch.cat([torch.ones_like(both[:, 1]), (both[:, 1] > 0.99).float()])
        tokens, seg = self.student(x)
        with torch.no_grad():
            t_tokens = self.teacher.encoder(x)
            with fp32:
                pred = seg[:b].float() > 0  # sigmoid > 0.5
                iou = ((pred & kmeans).sum() / (pred | kmeans).sum().clamp(min=1)).item()
                use_pred = use_predicted_mask and iou >= cfg.min_seg_iou
                mask = pred if use_pred else kmeans
                r1, r2, pairs = paired_regions(mask, theta, cfg.min_area, cfg.max_regions, cfg.warp_threshold)
            tf1, tf2 = pool_regions(t_tokens[:b], r1, grid), pool_regions(t_tokens[b:], r2, grid)
        seg_loss = (F.binary_cross_entropy_with_logits(seg.float(), target, reduction="none") * weight).sum()
        seg_loss = seg_loss / weight.sum()
        f1, f2 = pool_regions(tokens[:b], r1, grid), pool_regions(tokens[b:], r2, grid)
        with torch.no_grad():
            t_z = self.teacher.dino_head.bottleneck(torch.cat([tf1[pairs], tf2[pairs]]))
            t_out = self.teacher.dino_head.logits(t_z)
        n = int(pairs.sum())
        nan = float("nan")
        entropy, batch_entropy, t_cos, s_cos = nan, nan, nan, nan
        if n:
            s_z = self.student.dino_head.bottleneck(torch.cat([f1[pairs], f2[pairs]]))
            s_out = self.student.dino_head.logits(s_z)
            t1, t2, s1, s2 = t_out[:n], t_out[n:], s_out[:n], s_out[n:]
            distill = 0.5 * (
                dino_loss(t1, s2, self.center, cfg.teacher_temp, cfg.student_temp)
                + dino_loss(t2, s1, self.center, cfg.teacher_temp, cfg.student_temp)
            )
            with torch.no_grad():  # collapse watch (see target_entropies, mean_cosine)
                entropy, batch_entropy = target_entropies(t_out, self.center, cfg.teacher_temp)
                t_cos, s_cos = mean_cosine(t_z[:n]), mean_cosine(s_z[:n].detach())
        else:
            distill = tokens.sum() * 0.0
        self.update_center(t_out)  # no-op without pairs (alone); under torchrun a collective every process joins
        loss = distill + cfg.seg_weight * seg_loss
        logs = {
            "loss": loss.item(),
            "distill": distill.item(),
            "seg": seg_loss.item(),
            "pairs": n / b,
            "regions": r1.flatten(2).any(-1).sum().item() / b,
            "seg_iou": iou,
            "predicted_mask": float(use_pred),
            "teacher_entropy": entropy,
            "teacher_batch_entropy": batch_entropy,
            "teacher_feature_cosine": t_cos,
            "feature_cosine": s_cos,
        }
        return loss, logs

    def teacher_encoder_state(self) -> dict[str, torch.Tensor]:
        """The teacher's encoder with the keys of :meth:`ViTRecognizer.state_dict` (``encoder.*``)."""
        return {f"encoder.{k}": v for k, v in self.teacher.encoder.state_dict().items()}
