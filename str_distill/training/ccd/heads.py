"""Training-only heads of CCD: the text segmentation head and the DINO projection head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DINOHead", "SegHead"]


class SegHead(nn.Module):
    """Text-mask head on intermediate encoder tokens (a small MLA-style decoder).

    Each tapped block output is layer-normed and projected to ``dim`` channels on the token grid; the maps are
    concatenated, mixed by a 3x3 convolution, upsampled to the image size and classified per pixel.

    Args:
        embed_dim: encoder width ``D``.
        num_taps: number of encoder blocks fed to the head.
        grid: token grid ``(rows, cols)``.
        img_size: output ``(H, W)``.
        dim: channels of the projected maps.
    """

    def __init__(self, embed_dim: int, num_taps: int, grid: tuple[int, int], img_size: tuple[int, int], dim: int = 64):
        super().__init__()
        self.grid, self.img_size = grid, img_size
        self.proj = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, dim)) for _ in range(num_taps)
        )
        self.fuse = nn.Sequential(nn.Conv2d(num_taps * dim, dim, 3, padding=1), nn.GroupNorm(8, dim), nn.GELU())
        self.refine = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1), nn.GELU(), nn.Conv2d(dim // 2, 1, 1))

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """``taps``: list of ``(B, N, D)`` -> text logits ``(B, H, W)`` (sigmoid > 0.5 is text)."""
        b = taps[0].shape[0]
        maps = [p(t).transpose(1, 2).reshape(b, -1, *self.grid) for p, t in zip(self.proj, taps)]
        x = F.interpolate(self.fuse(torch.cat(maps, 1)), size=self.img_size, mode="bilinear", align_corners=False)
        return self.refine(x)[:, 0]


class DINOHead(nn.Module):
    """DINO projection head: MLP -> L2-normalized bottleneck -> weight-normalized prototype layer.

    Args:
        in_dim: feature width.
        out_dim: number of prototypes (65536 in CCD).
        hidden_dim, bottleneck_dim: MLP widths (2048 and 256 in CCD).
        norm_last_layer: fix the prototype norms to 1 (cosine logits); otherwise learn one gain per prototype.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        norm_last_layer: bool = False,
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.prototypes = nn.Parameter(torch.randn(out_dim, bottleneck_dim) * bottleneck_dim**-0.5)
        self.gain = None if norm_last_layer else nn.Parameter(torch.ones(out_dim))

    def last_layer(self) -> list[nn.Parameter]:
        """The parameters of the prototype layer (what CCD keeps frozen at the start of training)."""
        return [self.prototypes] if self.gain is None else [self.prototypes, self.gain]

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, in_dim)`` -> L2-normalized bottleneck features ``(M, bottleneck_dim)``."""
        return F.normalize(self.mlp(x), dim=-1)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Bottleneck features ``(M, bottleneck_dim)`` -> prototype logits ``(M, out_dim)``."""
        w = F.normalize(self.prototypes, dim=1)
        if self.gain is not None:
            w = w * self.gain[:, None]
        return F.linear(z, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, in_dim)`` -> logits ``(M, out_dim)``."""
        return self.logits(self.bottleneck(x))
