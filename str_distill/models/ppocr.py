"""PP-OCRv6 small text recognizer (PPLCNetV4-style backbone + LightSVTR neck + CTC head), as a pure ``nn.Module``.

The layers follow the deployed (inference) form of the published network: every backbone BatchNorm is folded into
its convolution's bias and each block's parallel depthwise branches are merged into one 3x3 convolution, so the
backbone is convolutions with biases only. The neck keeps its three BatchNorms. Weights come from the published ONNX
file through :mod:`str_distill.hub.convert_ppocr`; the code here is written from that graph.

Input ``(B, 3, 48, W)`` normalized BGR images (``W`` a multiple of 8); output CTC logits ``(B, W / 8, classes)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..tokenizer import Tokenizer
from .decoder import DecoderOutput
from .model import TrainOutput

__all__ = ["PPOCRConfig", "PPOCRRecognizer"]


@dataclass
class PPOCRConfig:
    """Architecture and input description of a PP-OCR-style CTC recognizer.

    Attributes:
        arch: registry family name, e.g. ``"ppocrv6-small"``.
        stem_channels: widths of the stem's first convolution and of its 2x2 branch.
        channels: width of each backbone stage.
        depths: blocks per stage (the first block of stages 2.. is the stride ``(2, 1)`` down-sampling block).
        se_blocks: for each stage, the 0-based indices of the blocks with squeeze-and-excitation.
        neck_dim, neck_depth, neck_heads, neck_mlp_ratio, neck_kernel: the LightSVTR neck.
        charset: a built-in charset name (``"ppocrv6"``, ``"ppocrv6-en"``, ...) or the literal characters.
        height: input height in pixels; the width varies (see ``min_width``, ``max_width``, ``width_multiple``).
        min_width: images narrower than this after resizing to ``height`` are zero-padded on the right up to it.
        max_width: cap on the resized width; wider images are squeezed horizontally to it.
        width_multiple: padded widths are rounded up to a multiple of this (the CTC frame stride is 8).
        channel_order: ``"BGR"`` or ``"RGB"``: the channel order the weights were trained on.
        mean, std, interpolation: normalization and resize filter (``"cv2_linear"``: bilinear without
            antialiasing, as OpenCV's ``INTER_LINEAR``).
        max_label_length: the longest text the CTC decoder returns.
        extra: free-form notes carried with the config.
    """

    arch: str = "ppocrv6-small"
    stem_channels: tuple[int, int] = (48, 24)
    channels: tuple[int, ...] = (96, 192, 384)
    depths: tuple[int, ...] = (3, 7, 3)
    se_blocks: tuple[tuple[int, ...], ...] = ((0,), (1, 3, 5), (1,))
    neck_dim: int = 120
    neck_depth: int = 2
    neck_heads: int = 8
    neck_mlp_ratio: float = 2.0
    neck_kernel: int = 7
    charset: str = "ppocrv6"
    height: int = 48
    min_width: int = 320
    max_width: int = 1600
    width_multiple: int = 8
    channel_order: str = "BGR"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "cv2_linear"
    max_label_length: int = 200
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stem_channels = tuple(self.stem_channels)  # type: ignore[assignment]
        self.channels = tuple(self.channels)
        self.depths = tuple(self.depths)
        self.se_blocks = tuple(tuple(s) for s in self.se_blocks)
        self.mean = tuple(self.mean)  # type: ignore[assignment]
        self.std = tuple(self.std)  # type: ignore[assignment]
        if not (len(self.channels) == len(self.depths) == len(self.se_blocks)):
            raise ValueError("channels, depths and se_blocks need one entry per stage")
        if self.neck_dim % self.neck_heads:
            raise ValueError(f"neck_dim {self.neck_dim} is not divisible by neck_heads {self.neck_heads}")
        if self.channel_order not in ("BGR", "RGB"):
            raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {self.channel_order!r}")
        if not 0 < self.min_width <= self.max_width or self.width_multiple < 1:
            raise ValueError("need 0 < min_width <= max_width and width_multiple >= 1")
        if self.height % 16:
            raise ValueError(f"height must be a multiple of 16, got {self.height}")

    def data_config(self) -> dict[str, Any]:
        """The preprocessing the weights expect, as data (see :class:`str_distill.preprocess.Preprocessor`)."""
        return {
            "height": self.height, "width": None, "resize": "keep_ratio_pad", "min_width": self.min_width,
            "max_width": self.max_width, "width_multiple": self.width_multiple, "channel_order": self.channel_order,
            "mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation,
            "pad_value": 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("stem_channels", "channels", "depths", "mean", "std"):
            d[k] = list(d[k])
        d["se_blocks"] = [list(s) for s in self.se_blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PPOCRConfig:
        """Build from a dict; unknown keys raise so that a config from a newer version is never half-read."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
        return cls(**d)


class _Conv(nn.Sequential):
    """Convolution (bias from a folded BatchNorm) + optional activation."""

    def __init__(self, cin: int, cout: int, k: int, stride: int | tuple[int, int] = 1, groups: int = 1,
                 act: nn.Module | None = None) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2 if k % 2 else 0, groups=groups, bias=True))
        if act is not None:
            self.append(act)


class _SE(nn.Module):
    """Squeeze-and-excitation: channel gates from the spatial mean, hard-sigmoid (slope 1/6, offset 0.5)."""

    def __init__(self, c: int, reduction: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, c // reduction, 1)
        self.expand = nn.Conv2d(c // reduction, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(s))  # torch's hardsigmoid is relu6(x + 3) / 6: slope 1/6, offset 0.5


class _Block(nn.Module):
    """Depthwise 3x3 (+ SE) token mixer, then a 1x1 -> GELU -> 1x1 channel mixer with a residual.

    A down-sampling block (``stride=(2, 1)`` or a width change) has no residual.
    """

    def __init__(self, cin: int, cout: int, stride: tuple[int, int], se: bool) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin)
        self.se = _SE(cin) if se else nn.Identity()
        self.pw1 = nn.Conv2d(cin, 2 * cin, 1)
        self.pw2 = nn.Conv2d(2 * cin, cout, 1)
        self.residual = stride == (1, 1) and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.dw(x))
        z = self.pw2(F.gelu(self.pw1(y)))
        return y + z if self.residual else z


class _Stem(nn.Module):
    """3x3/2 conv, then [2x2 max-pool | 2x2 conv -> 2x2 conv] concatenated, 3x3/2 conv, 1x1 conv: stride 4."""

    def __init__(self, c1: int, c_half: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _Conv(3, c1, 3, 2, act=nn.ReLU())
        self.branch1 = _Conv(c1, c_half, 2, act=nn.ReLU())
        self.branch2 = _Conv(c_half, c1, 2, act=nn.ReLU())
        self.conv2 = _Conv(2 * c1, c1, 3, 2, act=nn.ReLU())
        self.conv3 = _Conv(c1, cout, 1, act=nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        p = F.pad(x, (0, 1, 0, 1))  # 2x2 kernels at stride 1, padded right and bottom ("SAME_UPPER")
        # max-pool as the max of four shifted views (x >= 0 after ReLU, so zero padding changes nothing)
        pooled = torch.maximum(torch.maximum(p[..., :-1, :-1], p[..., :-1, 1:]), torch.maximum(p[..., 1:, :-1],
                                                                                                   p[..., 1:, 1:]))
        b = self.branch1(p)
        b = self.branch2(F.pad(b, (0, 1, 0, 1)))
        return self.conv3(self.conv2(torch.cat([pooled, b], 1)))


class _ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], groups: int = 1) -> None:
        pad = (kernel[0] // 2, kernel[1] // 2)
        super().__init__(nn.Conv2d(cin, cout, kernel, 1, pad, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.SiLU())


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class _TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Dropout(0.0), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _LightSVTRNeck(nn.Module):
    """Two 1x1 conv branches (skip, main); the main one gets a depthwise 1xk conv residual and transformer blocks."""

    def __init__(self, cin: int, dim: int, depth: int, heads: int, mlp_ratio: float, kernel: int) -> None:
        super().__init__()
        self.skip = _ConvBNAct(cin, dim, (1, 1))
        self.proj = _ConvBNAct(cin, dim, (1, 1))
        self.local = _ConvBNAct(dim, dim, (1, kernel), groups=dim)
        self.blocks = nn.ModuleList(_TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, 1, T)`` -> ``(B, T, dim)``."""
        skip = self.skip(x)
        z = self.proj(x)
        z = z + self.local(z)
        z = z.flatten(2).transpose(1, 2)
        for blk in self.blocks:
            z = blk(z)
        return self.norm(z) + skip.flatten(2).transpose(1, 2)


class PPOCRRecognizer(nn.Module):
    """PP-OCR-style CTC recognizer.

    Args:
        config: the architecture; :attr:`tokenizer` is derived from its charset (class 0 is the CTC blank).
    """

    decodings: tuple[str, ...] = ("ctc",)
    #: inference runs in channels-last memory format (faster for these convolutions on CPU)
    channels_last: bool = True

    def __init__(self, config: PPOCRConfig) -> None:
        super().__init__()
        self.config = c = config
        self.tokenizer = Tokenizer(c.charset, c.max_label_length)
        self.stem = _Stem(c.stem_channels[0], c.stem_channels[1], c.channels[0])
        stages: list[nn.Module] = []
        cin = c.channels[0]
        for s, (cout, depth, se) in enumerate(zip(c.channels, c.depths, c.se_blocks)):
            blocks = []
            for i in range(depth):
                down = s > 0 and i == 0
                blocks.append(_Block(cin, cout, (2, 1) if down else (1, 1), i in se))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.neck = _LightSVTRNeck(cin, c.neck_dim, c.neck_depth, c.neck_heads, c.neck_mlp_ratio, c.neck_kernel)
        self.head = nn.Linear(c.neck_dim, self.tokenizer.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> neck features ``(B, W / 8, neck_dim)``, one per CTC frame."""
        x = self.stages(self.stem(images))
        pool = (x.shape[2], 2)  # (3, 2) at height 48: the feature map's full height
        x = F.avg_pool2d(x, pool, pool)
        return self.neck(x)

    def forward(
        self,
        images: torch.Tensor,
        decoding: Literal["ctc"] = "ctc",
        mode: str = "autoregressive",
        refine_iters: int = 1,
        return_attn: bool = False,
    ) -> DecoderOutput:
        """Inference: ``(B, 3, H, W)`` normalized images -> :class:`DecoderOutput` with CTC logits ``(B, T, C)``.

        ``mode`` and ``refine_iters`` belong to attention decoding, which this family does not have; they are
        accepted (and ignored) so that every family shares one call signature.
        """
        if decoding != "ctc":
            raise ValueError(f"{self.config.arch} reads with CTC only (decoding='ctc'); it has no attention decoder")
        if return_attn:
            raise ValueError(f"{self.config.arch} has no attention maps (CTC only)")
        return DecoderOutput(self.head(self.features(images)))

    def forward_train(
        self,
        images: torch.Tensor,
        targets: torch.Tensor | None = None,
        passes: tuple[str, ...] = (),
        return_layers: tuple[int, ...] = (),
    ) -> TrainOutput:
        """Training forward: CTC logits and the neck features (no decoder passes: this family has none).

        Args:
            images: ``(B, 3, H, W)``.
            targets, passes: accepted for the shared trainer interface and ignored.
            return_layers: must be empty (feature taps are a ViT-encoder notion).

        Returns:
            :class:`TrainOutput` with ``memory`` the neck features ``(B, T, neck_dim)``, ``ctc_logits``
            ``(B, T, C)`` and ``ar``/``parallel``/``cloze`` ``None``.
        """
        if return_layers:
            raise ValueError(f"{self.config.arch} has no encoder blocks to tap (return_layers={return_layers})")
        feats = self.features(images)
        return TrainOutput(feats, [], self.head(feats), None, None, None)

    #: layers whose rows are the output classes (a charset change keeps the rows of shared characters)
    charset_rows: tuple[str, ...] = ("head",)
    #: parameter-name prefixes of the parts that ``--freeze`` can hold fixed
    parts: dict[str, tuple[str, ...]] = {"backbone": ("stem.", "stages."), "neck": ("neck.",), "head": ("head.",)}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
