"""PP-OCRv6 text detector (PPLCNetV4 backbone + RepLKFPN neck + DB head), as a pure ``nn.Module``.

The layers follow the deployed (inference) form of the published network, as the ONNX graph holds it: every
BatchNorm is folded into its convolution and the neck's large-kernel branches are re-parameterized into one
depthwise convolution. The backbone reuses the recognizer's stem and block classes (:mod:`.ppocr`): the graph is the
same design, with a stride of 2 in both directions between stages. Weights come from the published ONNX files
through :mod:`str_distill.hub.convert_ppocr_det`.

Input ``(B, 3, H, W)`` normalized images, ``H`` and ``W`` multiples of 32; output the text probability map
``(B, 1, H, W)`` (the DB head's binarization map, after the sigmoid). Turning the map into boxes is
:mod:`str_distill.ocr.postprocess`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .ppocr import _Block, _Stem

__all__ = ["PPOCRDetConfig", "PPOCRDetector"]


@dataclass
class PPOCRDetConfig:
    """Architecture, preprocessing and post-processing of a PP-OCR DB text detector.

    Attributes:
        arch: registry family name, e.g. ``"ppocrv6-det-small"``.
        stem_channels: widths of the stem's first convolution and of its 2x2 branch.
        channels: width of each of the four backbone stages (strides 4, 8, 16, 32).
        depths: blocks per stage (the first block of stages 2.. down-samples by 2x2).
        se_blocks: for each stage, the 0-based indices of the blocks with squeeze-and-excitation.
        neck_channels: width of the FPN neck (each level contributes ``neck_channels / 4`` to the head).
        neck_kernel: the neck's depthwise kernel (7 small, 5 tiny).
        limit_side_len, limit_type: resize rule: ``"min"`` scales the image up so that its short side is at least
            ``limit_side_len`` (never down); ``"max"`` scales it down so that its long side is at most that.
        max_side_len: the long side is capped at this many pixels before the rule above (the pipeline's limit).
        size_multiple: both sides are rounded to a multiple of this (the network's total stride, 32).
        channel_order, mean, std, interpolation: normalization, ``(x / 255 - mean) / std`` in ``channel_order``;
            ``"cv2_linear"`` resizes as OpenCV's ``INTER_LINEAR``.
        thresh: probability above which a pixel is text (binarization).
        box_thresh: mean probability inside a candidate box below which it is dropped.
        unclip_ratio: how far a shrunk text region is grown back: offset distance = area * ratio / perimeter.
        max_candidates: at most this many contours are considered per image.
        min_size: boxes whose short side is under this (in map pixels) are dropped.
        dilate: dilate the binary map with a 2x2 kernel before finding contours.
        extra: free-form notes carried with the config.
    """

    arch: str = "ppocrv6-det-small"
    stem_channels: tuple[int, int] = (24, 12)
    channels: tuple[int, ...] = (48, 96, 192, 384)
    depths: tuple[int, ...] = (2, 3, 5, 3)
    se_blocks: tuple[tuple[int, ...], ...] = ((0,), (1,), (1, 3), (1,))
    neck_channels: int = 96
    neck_kernel: int = 7
    limit_side_len: int = 736
    limit_type: str = "min"
    max_side_len: int = 2000
    size_multiple: int = 32
    channel_order: str = "BGR"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "cv2_linear"
    thresh: float = 0.3
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    max_candidates: int = 1000
    min_size: int = 3
    dilate: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stem_channels = tuple(self.stem_channels)  # type: ignore[assignment]
        self.channels = tuple(self.channels)
        self.depths = tuple(self.depths)
        self.se_blocks = tuple(tuple(s) for s in self.se_blocks)
        self.mean = tuple(self.mean)  # type: ignore[assignment]
        self.std = tuple(self.std)  # type: ignore[assignment]
        if not (len(self.channels) == len(self.depths) == len(self.se_blocks) == 4):
            raise ValueError("a DB detector has four backbone stages: channels, depths and se_blocks need 4 entries")
        if self.neck_channels % 4 or self.neck_kernel % 2 == 0:
            raise ValueError("neck_channels must be a multiple of 4 and neck_kernel odd")
        if self.limit_type not in ("min", "max"):
            raise ValueError(f"limit_type must be 'min' or 'max', got {self.limit_type!r}")
        if self.channel_order not in ("BGR", "RGB"):
            raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {self.channel_order!r}")
        if self.size_multiple != 32:
            raise ValueError(f"size_multiple must be 32 (the network's stride), got {self.size_multiple}")
        if not 0 < self.limit_side_len <= self.max_side_len:
            raise ValueError("need 0 < limit_side_len <= max_side_len")
        if not (0.0 < self.thresh < 1.0 and 0.0 <= self.box_thresh < 1.0 and self.unclip_ratio >= 0):
            raise ValueError("need 0 < thresh < 1, 0 <= box_thresh < 1 and unclip_ratio >= 0")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s > 0 for s in self.std):
            raise ValueError("mean and std need 3 values each, std positive")

    def detect_config(self) -> dict[str, Any]:
        """Pre- and post-processing the weights expect, as data (what a manifest record's ``preprocessing`` and
        ``postprocessing`` hold): ``{"preprocessing": {...}, "postprocessing": {...}}``."""
        return {
            "preprocessing": {
                "resize": "limit_side", "limit_side_len": self.limit_side_len, "limit_type": self.limit_type,
                "max_side_len": self.max_side_len, "size_multiple": self.size_multiple,
                "channel_order": self.channel_order, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation,
            },
            "postprocessing": {
                "method": "db", "thresh": self.thresh, "box_thresh": self.box_thresh,
                "unclip_ratio": self.unclip_ratio, "max_candidates": self.max_candidates, "min_size": self.min_size,
                "dilate": self.dilate, "score_mode": "fast",
            },
        }

    def __iter__(self) -> Any:
        """Not a recognizer's preprocessing description: code that reads one from a config (``dict(config)``, as
        :func:`~str_distill.preprocess.resolve_data_config` does for configs without ``data_config()``) gets an
        error that says what to use instead."""
        raise ValueError(f"{self.arch} is a text detector, not a recognizer: read whole images with "
                         "str_distill.ocr.OCR / TextDetector or `str-distill read`")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("stem_channels", "channels", "depths", "mean", "std"):
            d[k] = list(d[k])
        d["se_blocks"] = [list(s) for s in self.se_blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PPOCRDetConfig:
        """Build from a dict; unknown keys raise so that a config from a newer version is never half-read."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
        return cls(**d)


def _hard_sigmoid_02(x: torch.Tensor) -> torch.Tensor:
    """Paddle's default hard sigmoid: ``clip(0.2 x + 0.5, 0, 1)`` (torch's has slope 1/6)."""
    return (x * 0.2 + 0.5).clamp_(0.0, 1.0)


class _RSE(nn.Module):
    """Convolution (no bias), then a residual squeeze-and-excitation gate: ``y + y * gate(mean(y))``."""

    def __init__(self, cin: int, cout: int, reduction: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.reduce = nn.Conv2d(cout, cout // reduction, 1)
        self.expand = nn.Conv2d(cout // reduction, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        g = _hard_sigmoid_02(self.expand(F.relu(self.reduce(y.mean((2, 3), keepdim=True)))))
        return y + y * g


class _LargeKernel(nn.Module):
    """Re-parameterized large-kernel depthwise convolution (with bias), then an :class:`_RSE` to a quarter width."""

    def __init__(self, c: int, kernel: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, kernel, 1, kernel // 2, groups=c)
        self.rse = _RSE(c, c // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rse(self.dw(x))


class _Neck(nn.Module):
    """RepLKFPN: lateral 1x1 + gate per level, top-down sums (nearest 2x), large-kernel smoothing, concat at
    stride 4. Lists run from the deepest level (stride 32) to the shallowest (stride 4), as the graph does."""

    def __init__(self, in_channels: tuple[int, ...], c: int, kernel: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(_RSE(cin, c) for cin in reversed(in_channels))
        self.smooth = nn.ModuleList(_LargeKernel(c, kernel) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        lat = [m(f) for m, f in zip(self.lateral, reversed(feats))]  # deepest first
        td = [lat[0]]
        for x in lat[1:]:
            td.append(x + F.interpolate(td[-1], scale_factor=2.0, mode="nearest"))
        outs = [m(x) for m, x in zip(self.smooth, td)]
        n = len(outs)
        up = [F.interpolate(o, scale_factor=float(2 ** (n - 1 - i)), mode="nearest") if i < n - 1 else o
              for i, o in enumerate(outs)]
        return torch.cat(up, 1)


class _DBHead(nn.Module):
    """3x3 conv + ReLU, two 2x2 stride-2 transposed convolutions (ReLU between), sigmoid: stride 4 -> 1."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c // 4, 3, 1, 1)
        self.up1 = nn.ConvTranspose2d(c // 4, c // 4, 2, 2)
        self.up2 = nn.ConvTranspose2d(c // 4, 1, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.up1(F.relu(self.conv(x))))
        return torch.sigmoid(self.up2(x))


class PPOCRDetector(nn.Module):
    """PP-OCR DB text detector: ``(B, 3, H, W)`` normalized images -> probability map ``(B, 1, H, W)``.

    ``H`` and ``W`` must be multiples of 32 (:func:`str_distill.ocr.pipeline.detector_input_size` picks them).

    Args:
        config: the architecture and its pre-/post-processing (:class:`PPOCRDetConfig`).
    """

    #: inference runs in channels-last memory format (faster for these convolutions on CPU)
    channels_last: bool = True
    task: str = "detection"

    def __init__(self, config: PPOCRDetConfig) -> None:
        super().__init__()
        self.config = c = config
        self.stem = _Stem(c.stem_channels[0], c.stem_channels[1], c.channels[0])
        stages: list[nn.Module] = []
        cin = c.channels[0]
        for s, (cout, depth, se) in enumerate(zip(c.channels, c.depths, c.se_blocks)):
            blocks = []
            for i in range(depth):
                down = s > 0 and i == 0
                blocks.append(_Block(cin, cout, (2, 2) if down else (1, 1), i in se))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.neck = _Neck(c.channels, c.neck_channels, c.neck_kernel)
        self.head = _DBHead(c.neck_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> text probability map ``(B, 1, H, W)`` in ``[0, 1]``."""
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"detector input height and width must be multiples of 32, got {h}x{w}")
        x = self.stem(images)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return self.head(self.neck(feats))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
