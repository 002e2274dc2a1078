"""A CLIP model of our own (ViT image tower + causal text tower) that exposes intermediate layers: the frozen teacher
of CLIP-OCR distillation. Its parameter names are the OpenAI layout; :mod:`.convert` reads CLIP weights into it."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CLIP_MEAN", "CLIP_STD", "Activation", "CLIPConfig", "CLIPModel"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Activation = Literal["quick_gelu", "gelu"]


@dataclass(frozen=True)
class CLIPConfig:
    """Shapes of a ViT CLIP model.

    Attributes:
        embed_dim: joint image-text embedding width (512 for ViT-B/16).
        vision_width, vision_layers, vision_heads, vision_mlp: the image transformer (768, 12, 12, 3072 for B/16).
        vision_patch: square patch side in pixels (16).
        vision_grid: side of the square position-embedding grid the weights were trained with (224 / 16 = 14).
        text_width, text_layers, text_heads, text_mlp: the text transformer (512, 12, 8, 2048).
        context_length: text positions (77); vocab_size: 49408.
        activation: MLP activation, ``"quick_gelu"`` (OpenAI) or ``"gelu"``.
        layer_scale: whether blocks have OpenCLIP layer-scale ``gamma`` vectors.
    """

    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    vision_patch: int
    vision_grid: int
    text_width: int
    text_layers: int
    text_heads: int
    text_mlp: int
    context_length: int
    vocab_size: int
    activation: Activation = "quick_gelu"
    layer_scale: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ("quick_gelu", "gelu"):
            raise ValueError(f"activation must be 'quick_gelu' or 'gelu', got {self.activation!r}")
        for tower, width, heads in (
            ("vision", self.vision_width, self.vision_heads),
            ("text", self.text_width, self.text_heads),
        ):
            if heads < 1 or width % heads:
                raise ValueError(f"{tower} width {width} is not divisible by {heads} heads")


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the activation OpenAI CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class SelfAttention(nn.Module):
    """Multi-head self-attention with CLIP's parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``).

    ``x``: ``(B, T, W)`` -> ``(B, T, W)``; ``causal`` masks future positions (text tower).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.normal_(self.in_proj_weight, std=width**-0.5)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, t, w = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, w))


class ResidualBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, mlp: int, activation: Activation, layer_scale: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ls_1 = LayerScale(width) if layer_scale else nn.Identity()
        self.ln_2 = nn.LayerNorm(width)
        act = QuickGELU() if activation == "quick_gelu" else nn.GELU()
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(width, mlp)), ("gelu", act), ("c_proj", nn.Linear(mlp, width))])
        )
        self.ls_2 = LayerScale(width) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.ls_1(self.attn(self.ln_1(x), causal))
        return x + self.ls_2(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    def __init__(
        self, width: int, layers: int, heads: int, mlp: int, activation: Activation, layer_scale: bool
    ) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualBlock(width, heads, mlp, activation, layer_scale) for _ in range(layers))

    def forward(
        self, x: torch.Tensor, causal: bool = False, return_layers: Sequence[int] = (), stop_early: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the blocks.

        Args:
            x: ``(B, T, W)``.
            return_layers: 1-based blocks whose outputs ``(B, T, W)`` are also returned, in this order.
            stop_early: skip the blocks after the last requested one (the returned ``x`` is then that block's output).

        Returns:
            ``(x, taps)``.
        """
        taps: dict[int, torch.Tensor] = {}
        last = max(return_layers) if stop_early and return_layers else len(self.resblocks)
        for i, block in enumerate(self.resblocks[:last], start=1):
            x = block(x, causal)
            if i in return_layers:
                taps[i] = x
        bad = [i for i in return_layers if i not in taps]
        if bad:
            raise ValueError(f"requested layers {bad} outside 1..{len(self.resblocks)}")
        return x, [taps[i] for i in return_layers]


class VisionTower(nn.Module):
    """CLIP's ViT image tower. Keeps the square position grid of the weights; other grids are cropped from it
    (or interpolated where the grid is larger), see :meth:`position_embedding`."""

    def __init__(self, c: CLIPConfig) -> None:
        super().__init__()
        w = c.vision_width
        self.patch = c.vision_patch
        self.grid = c.vision_grid
        self.conv1 = nn.Conv2d(3, w, kernel_size=c.vision_patch, stride=c.vision_patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * w**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(c.vision_grid**2 + 1, w) * w**-0.5)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, c.vision_layers, c.vision_heads, c.vision_mlp, c.activation, c.layer_scale)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.randn(w, c.embed_dim) * w**-0.5)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """Position embedding ``(1 + rows * cols, W)`` for a ``rows x cols`` patch grid.

        If the grid fits in the trained ``G x G`` grid, the top-left ``rows x cols`` block is taken (for a 32x128
        crop and patch 16: rows 0-1, columns 0-7, as CLIP-OCR does); otherwise the ``G x G`` grid is resized
        bicubically to ``rows x cols``. The class position is kept as is.
        """
        pos = self.positional_embedding
        g = self.grid
        cls, grid = pos[:1], pos[1:].reshape(g, g, -1)
        if rows <= g and cols <= g:
            grid = grid[:rows, :cols]
        else:
            grid = F.interpolate(grid.permute(2, 0, 1)[None], size=(rows, cols), mode="bicubic", align_corners=False)
            grid = grid[0].permute(1, 2, 0)
        return torch.cat([cls, grid.reshape(rows * cols, -1)], 0)

    def forward(
        self, images: torch.Tensor, return_layers: Sequence[int] = (), embedding: bool = True
    ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Encode images.

        Args:
            images: ``(B, 3, H, W)`` normalized with :data:`CLIP_MEAN`/:data:`CLIP_STD`; ``H`` and ``W`` multiples of
                the patch size.
            return_layers: 1-based blocks whose outputs (``(B, 1 + rows * cols, W)``, class token first) are returned.
            embedding: compute the final embedding; with ``False`` the blocks after the last tap are skipped.

        Returns:
            ``(embedding (B, E) or None, taps)``: the projected class token and the requested block outputs.
        """
        h, w = images.shape[-2:]
        if h % self.patch or w % self.patch:
            raise ValueError(f"image size {h}x{w} is not a multiple of the CLIP patch size {self.patch}")
        x = self.conv1(images.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + self.position_embedding(h // self.patch, w // self.patch).to(x.dtype)
        x, taps = self.transformer(self.ln_pre(x), False, return_layers, stop_early=not embedding)
        return (self.ln_post(x[:, 0]) @ self.proj if embedding else None), taps


class CLIPModel(nn.Module):
    """A ViT CLIP: :attr:`visual` (image tower) and a causal text transformer, with intermediate outputs.

    Its ``state_dict`` uses the OpenAI key layout, so OpenAI / OpenCLIP ViT weights load without renaming.

    Args:
        config: the shapes; see :func:`infer_clip_config` to read them from a state dict.
    """

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.visual = VisionTower(c)
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
        self.positional_embedding = nn.Parameter(torch.randn(c.context_length, c.text_width) * 0.01)
        self.transformer = Transformer(
            c.text_width, c.text_layers, c.text_heads, c.text_mlp, c.activation, c.layer_scale
        )
        self.ln_final = nn.LayerNorm(c.text_width)
        self.text_projection = nn.Parameter(torch.randn(c.text_width, c.embed_dim) * c.text_width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def encode_image(
        self, images: torch.Tensor, return_layers: Sequence[int] = (), embedding: bool = True
    ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """See :meth:`VisionTower.forward`: ``(B, 3, H, W)`` -> ``(embedding (B, E), taps [(B, 1 + n, Wv)])``."""
        return self.visual(images, return_layers, embedding)

    def encode_text(
        self, ids: torch.Tensor, eot_index: torch.Tensor | None = None, return_layers: Sequence[int] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode token ids with the causal text transformer.

        Args:
            ids: LongTensor ``(B, T)``, ``T <= context_length`` (see :func:`.text.spell`).
            eot_index: ``(B,)`` position of the end-of-text token; default ``ids.argmax(-1)`` (EOT is the highest id).
            return_layers: 1-based blocks whose outputs ``(B, T, Wt)`` are returned.

        Returns:
            ``(embedding (B, E), taps)``: ``ln_final`` of the EOT position projected by ``text_projection``.
        """
        t = ids.shape[1]
        if t > self.config.context_length:
            raise ValueError(f"text of {t} tokens exceeds the CLIP context length {self.config.context_length}")
        x = self.token_embedding(ids) + self.positional_embedding[:t]
        x, taps = self.transformer(x, True, return_layers)
        if eot_index is None:
            eot_index = ids.argmax(-1)
        x = self.ln_final(x[torch.arange(x.shape[0], device=x.device), eot_index])
        return x @ self.text_projection, taps
