"""Character regions: connected components of a text mask, pooled onto the token grid, warped between views."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["character_regions", "label_components", "paired_regions", "pool_regions", "warp", "warp_regions"]


def label_components(mask: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """8-connected component labels of every mask in a batch.

    Args:
        mask: ``(B, H, W)`` bool.
        backend: ``"cv2"`` (``cv2.connectedComponents`` per image, on the CPU), ``"torch"`` (iterated 3x3 max-pool
            label propagation, batched, stays on the mask's device) or ``"auto"`` (cv2 for CPU tensors when it is
            installed, torch otherwise). Both give the same partition; only the label values differ.

    Returns:
        ``(B, H, W)`` int64; 0 is background, each component has one positive id, unique within its image.
    """
    if mask.ndim != 3 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a (B, H, W) bool tensor, got {mask.dtype} {tuple(mask.shape)}")
    if backend == "auto":
        backend = "torch"
        if mask.device.type == "cpu":
            try:
                import cv2  # noqa: F401

                backend = "cv2"
            except ImportError:
                pass
    if backend == "cv2":
        import cv2
        import numpy as np

        m = mask.cpu().numpy().astype(np.uint8)
        labels = np.stack([cv2.connectedComponents(im, connectivity=8, ltype=cv2.CV_32S)[1] for im in m])
        return torch.from_numpy(labels).long().to(mask.device)
    if backend != "torch":
        raise ValueError(f"backend must be 'auto', 'cv2' or 'torch', got {backend!r}")
    b, h, w = mask.shape
    ids = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float32).view(1, 1, h, w)
    fg = mask[:, None].float()
    labels = ids * fg  # (B, 1, H, W); every pixel floods its component with the largest id in it
    for i in range(h * w):
        new = F.max_pool2d(labels, 3, 1, 1) * fg
        if i % 8 == 7 and torch.equal(new, labels):
            break
        labels = new
    return labels[:, 0].long()


def character_regions(
    mask: torch.Tensor, min_area: int = 30, max_regions: int = 26, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Connected components of at least ``min_area`` pixels, sorted left to right by x-centroid, at most
    ``max_regions`` (the leftmost ones) per image.

    Args:
        mask: ``(B, H, W)`` bool text mask.

    Returns:
        regions ``(B, K, H, W)`` bool with ``K = max_regions`` (empty where there is no region) and
        valid ``(B, K)`` bool.
    """
    labels = label_components(mask, backend)
    b, h, w = labels.shape
    flat = labels.flatten(1)
    n = h * w + 1
    ones = torch.ones_like(flat, dtype=torch.float32)
    area = torch.zeros(b, n, device=flat.device).scatter_add_(1, flat, ones)
    xs = torch.arange(w, device=flat.device, dtype=torch.float32).repeat(h).expand(b, -1)
    cx = torch.zeros(b, n, device=flat.device).scatter_add_(1, flat, xs) / area.clamp(min=1)
    keep = area >= min_area
    keep[:, 0] = False
    key, idx = torch.where(keep, cx, torch.inf).topk(min(max_regions, n), dim=1, largest=False)  # ascending x
    valid = key.isfinite()
    regions = (labels[:, None] == idx[:, :, None, None]) & valid[:, :, None, None]
    if regions.shape[1] < max_regions:
        regions = F.pad(regions, (0, 0, 0, 0, 0, max_regions - regions.shape[1]))
        valid = F.pad(valid, (0, max_regions - valid.shape[1]))
    return regions, valid


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros") -> torch.Tensor:
    """Resample ``x`` ``(B, C, H, W)`` with ``theta`` ``(B, 2, 3)`` (``affine_grid`` convention: output -> input
    normalized coordinates, ``align_corners=False``)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def warp_regions(regions: torch.Tensor, theta: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Move the regions of view 1 onto view 2: ``(B, K, H, W)`` bool -> ``(B, K, H, W)`` bool, bilinear > threshold."""
    return warp(regions.float(), theta) > threshold


def paired_regions(
    mask: torch.Tensor,
    theta: torch.Tensor,
    min_area: int = 30,
    max_regions: int = 26,
    threshold: float = 0.1,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Character regions of view 1 and the same regions carried onto view 2 by the known affine map.

    A pair is kept when the warped region keeps at least half of its expected area (area x the map's scale), i.e.
    it did not leave the image.

    Args:
        mask: ``(B, H, W)`` bool text mask of view 1.
        theta: ``(B, 2, 3)`` ``affine_grid`` matrix sampling view 2 from view 1.

    Returns:
        regions1, regions2 ``(B, K, H, W)`` bool and pairs ``(B, K)`` bool (region k of view 1 <-> region k of view 2).
    """
    r1, valid = character_regions(mask, min_area, max_regions, backend)
    r2 = warp_regions(r1, theta, threshold)
    scale = 1 / torch.linalg.det(theta[:, :, :2].float())  # area ratio view 2 / view 1
    pairs = valid & (r2.flatten(2).sum(-1) >= 0.5 * r1.flatten(2).sum(-1) * scale[:, None])
    return r1, r2, pairs


def pool_regions(tokens: torch.Tensor, regions: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Region features: the mean of the tokens weighted by how much of each token cell the region covers.

    Args:
        tokens: ``(B, N, D)`` with ``N = rows * cols`` in row-major order.
        regions: ``(B, K, H, W)`` bool or float pixel masks.
        grid: ``(rows, cols)``.

    Returns:
        ``(B, K, D)`` (zero for empty regions).
    """
    b, k, h, w = regions.shape
    cover = F.adaptive_avg_pool2d(regions.flatten(0, 1)[:, None].to(tokens.dtype), grid).view(b, k, -1)  # (B, K, N)
    return (cover @ tokens) / cover.sum(-1, keepdim=True).clamp(min=1e-6)
