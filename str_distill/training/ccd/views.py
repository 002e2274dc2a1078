"""The two views of CCD: photometric changes only, and photometric changes plus an affine transform whose matrix is
returned so that regions can be carried from one view to the other. Batched torch, per-sample random parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .regions import warp

__all__ = ["ViewConfig", "make_views", "photometric", "random_affine"]


@dataclass
class ViewConfig:
    """Augmentation strengths (defaults follow CCD's affine ranges; photometric ones are ours).

    Attributes:
        brightness, contrast, saturation: factors drawn from ``[1 - s, 1 + s]``.
        gray_p, invert_p: probability of grey-scaling / inverting the colours.
        blur_p, blur_sigma: probability and sigma range of a Gaussian blur (5x5).
        noise_std: maximum standard deviation of additive Gaussian noise.
        affine_p: probability that view 2 is warped at all.
        scale: range of the horizontal and of the vertical scale factor, drawn independently per axis as in CCD
            (``scale={"x": (0.6, 1.1), "y": (0.6, 1.1)}``), so view 2 also changes the aspect ratio of the glyphs.
        isotropic_scale: draw one factor for both axes instead (no aspect-ratio change; not CCD).
        translate, rotate, shear_x, shear_y: affine ranges (translate as a fraction of the size, angles in degrees).
    """

    brightness: float = 0.4
    contrast: float = 0.5
    saturation: float = 0.5
    gray_p: float = 0.2
    invert_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    noise_std: float = 0.05
    affine_p: float = 0.7
    scale: tuple[float, float] = (0.6, 1.1)
    isotropic_scale: bool = False
    translate: float = 0.02
    rotate: float = 10.0
    shear_x: float = 45.0
    shear_y: float = 10.0


def _uniform(n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (hi - lo) + lo


def _bern(n: int, p: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) < p


def photometric(images: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    """Random colour jitter, grey-scale, inversion, blur and noise.

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``; pixels do not move.
    """
    b, dev = images.shape[0], images.device
    x = images * _uniform(b, 1 - cfg.brightness, 1 + cfg.brightness, dev).view(b, 1, 1, 1)
    gray = x.mean(1, keepdim=True)
    f = _uniform(b, 1 - cfg.contrast, 1 + cfg.contrast, dev).view(b, 1, 1, 1)
    x = (x - gray.mean((2, 3), keepdim=True)) * f + gray.mean((2, 3), keepdim=True)
    gray = x.mean(1, keepdim=True)
    s = _uniform(b, 1 - cfg.saturation, 1 + cfg.saturation, dev).view(b, 1, 1, 1)
    s = torch.where(_bern(b, cfg.gray_p, dev).view(b, 1, 1, 1), torch.zeros_like(s), s)
    x = (gray + (x - gray) * s).clamp(0, 1)
    x = torch.where(_bern(b, cfg.invert_p, dev).view(b, 1, 1, 1), 1 - x, x)
    sigma = torch.where(
        _bern(b, cfg.blur_p, dev), _uniform(b, *cfg.blur_sigma, dev), torch.full((b,), 1e-3, device=dev)
    )
    k = torch.exp(-0.5 * (torch.arange(-2, 3, device=dev, dtype=x.dtype)[None] / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(3, 0)  # (B*3, 5): one kernel per sample and channel
    h, w = x.shape[-2:]
    y = F.pad(x.reshape(1, b * 3, h, w), (2, 2, 2, 2), mode="replicate")
    y = F.conv2d(y, k.view(b * 3, 1, 1, 5), groups=b * 3)
    y = F.conv2d(y, k.view(b * 3, 1, 5, 1), groups=b * 3).view(b, 3, h, w)
    y = y + torch.randn_like(y) * _uniform(b, 0, cfg.noise_std, dev).view(b, 1, 1, 1)
    return y.clamp(0, 1)


def random_affine(b: int, size: tuple[int, int], cfg: ViewConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """Random affine maps view 1 -> view 2 (identity with probability ``1 - affine_p``).

    Built in pixel units around the image centre and returned as the ``affine_grid`` matrix ``theta`` that samples
    view 2 from view 1. A centred point ``p`` of view 1 goes to ``R Sh diag(sx, sy) p + t``: scaled (``sx`` and
    ``sy`` drawn independently from ``cfg.scale`` unless ``cfg.isotropic_scale``), sheared (``tan`` of the x and y
    shear angles), rotated, translated.

    Returns:
        theta ``(B, 2, 3)``: normalized output (view 2) -> input (view 1) coordinates, ``align_corners=False``.
    """
    h, w = size
    dev = torch.device(device)
    rad = math.pi / 180
    sx = _uniform(b, *cfg.scale, dev)
    sy = sx if cfg.isotropic_scale else _uniform(b, *cfg.scale, dev)
    r = _uniform(b, -cfg.rotate, cfg.rotate, dev) * rad
    shx = torch.tan(_uniform(b, -cfg.shear_x, cfg.shear_x, dev) * rad)
    shy = torch.tan(_uniform(b, -cfg.shear_y, cfg.shear_y, dev) * rad)
    rot = torch.stack([torch.cos(r), -torch.sin(r), torch.sin(r), torch.cos(r)], 1).view(b, 2, 2)
    shear = torch.stack([torch.ones_like(shx), shx, shy, torch.ones_like(shy)], 1).view(b, 2, 2)
    lin = rot @ shear @ torch.diag_embed(torch.stack([sx, sy], 1))  # forward map in centred pixels: p2 = lin p1 + t
    t = torch.stack(
        [_uniform(b, -cfg.translate, cfg.translate, dev) * w, _uniform(b, -cfg.translate, cfg.translate, dev) * h], 1
    )
    off = ~_bern(b, cfg.affine_p, dev)
    lin = torch.where(off.view(b, 1, 1), torch.eye(2, device=dev).expand(b, 2, 2), lin)
    t = torch.where(off.view(b, 1), torch.zeros_like(t), t)
    return affine_to_theta(torch.cat([lin, t[..., None]], 2), size)


def affine_to_theta(forward: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Forward pixel affine ``(B, 2, 3)`` (centred pixel coordinates, view 1 -> view 2) -> ``affine_grid`` theta.

    With ``S = diag(W/2, H/2)`` taking normalized to centred pixel coordinates, ``p1 = A^-1 (p2 - t)`` becomes
    ``n1 = S^-1 A^-1 S n2 - S^-1 A^-1 t``.
    """
    h, w = size
    s = torch.diag(torch.tensor([w / 2, h / 2], device=forward.device, dtype=forward.dtype))
    s_inv = torch.linalg.inv(s)
    a_inv = torch.linalg.inv(forward[:, :, :2])
    return torch.cat([s_inv @ a_inv @ s, -(s_inv @ a_inv @ forward[:, :, 2:])], 2)


def make_views(images: torch.Tensor, cfg: ViewConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two CCD views of a batch.

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.

    Returns:
        view1 ``(B, 3, H, W)`` (photometric only, pixel-aligned with ``images``), view2 ``(B, 3, H, W)`` (warped by
        ``theta``, then photometric) and theta ``(B, 2, 3)`` (see :func:`random_affine`).
    """
    theta = random_affine(images.shape[0], tuple(images.shape[-2:]), cfg, images.device)
    view2 = warp(images, theta, padding_mode="border")
    return photometric(images, cfg), photometric(view2, cfg), theta
