"""Pseudo text masks without labels: 2-cluster k-means on pixel colour, batched in torch (runs on the GPU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kmeans_text_mask"]


def kmeans_text_mask(images: torch.Tensor, iters: int = 10, border: int = 2) -> torch.Tensor:
    """Split every image into text and background with 2-means on RGB colour.

    The clusters start at the 5% and 95% luminance quantiles of each image; the cluster that covers most of the
    ``border``-pixel frame is the background, so light-on-dark and dark-on-light text are both found.

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]`` (not normalized).
        iters: Lloyd iterations (the assignment is usually stable after 3-5).
        border: width in pixels of the frame used to decide which cluster is background.

    Returns:
        ``(B, H, W)`` bool, True on text.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    b, _, h, w = images.shape
    x = images.float().flatten(2).transpose(1, 2)  # (B, P, 3)
    q = torch.quantile(x.mean(-1), torch.tensor([0.05, 0.95], device=x.device), dim=1).T  # (B, 2)
    lum = x.mean(-1, keepdim=True)
    centers = torch.stack([x[torch.arange(b), (lum[..., 0] - q[:, i : i + 1]).abs().argmin(1)] for i in (0, 1)], 1)
    for _ in range(iters):
        assign = torch.cdist(x, centers).argmin(-1)  # (B, P)
        onehot = F.one_hot(assign, 2).to(x.dtype)  # (B, P, 2)
        counts = onehot.sum(1)[..., None]  # (B, 2, 1)
        centers = torch.where(counts > 0, onehot.transpose(1, 2) @ x / counts.clamp(min=1), centers)
    assign = torch.cdist(x, centers).argmin(-1).view(b, h, w)
    frame = torch.ones(h, w, dtype=torch.bool, device=x.device)
    frame[border : h - border, border : w - border] = False
    bg_is_1 = (assign[:, frame] == 1).float().mean(1) > 0.5  # (B,)
    return assign != bg_is_1.long()[:, None, None]
