"""Preprocessing for inference and training: RGB PIL image -> normalized model-input tensor, as the weights'
preprocessing description prescribes (:func:`resolve_data_config`, :class:`Preprocessor`: one code path for every
model family).

Decoding inputs of every supported type into RGB images, and the pixel limits, live in :mod:`str_distill.imageio`;
their names (:func:`load_image`, :func:`iter_inputs`, :class:`InputError`, :data:`MAX_PIXELS`, :data:`IMAGE_FORMATS`)
are re-exported here, where they used to be, so ``from str_distill.preprocess import load_image`` keeps working
(assigning ``preprocess.IMAGE_FORMATS`` still sets the formats the decoder accepts).
"""

from __future__ import annotations

import math
import sys
import types
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import imageio as _imageio
from .imageio import MAX_PIXELS, InputError, iter_inputs, load_image

# IMAGE_FORMATS is forwarded to str_distill.imageio (see _PreprocessModule at the end)
__all__ = ["IMAGE_FORMATS", "INTERPOLATIONS", "MAX_PIXELS", "InputError", "Preprocessor", "iter_inputs",  # noqa: F822
           "load_image", "resolve_data_config"]

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}


#: Resize filters by name: PIL's (with antialiasing when shrinking) and ``cv2_linear``, bilinear without
#: antialiasing as OpenCV's ``INTER_LINEAR`` (what PP-OCR models were trained with).
INTERPOLATIONS = (*_RESAMPLE, "cv2_linear")
_DATA_DEFAULTS: dict[str, Any] = {
    "width": None, "resize": "stretch", "min_width": 0, "max_width": None, "width_multiple": 1,
    "channel_order": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear",
    "pad_value": 0.0,
}


def resolve_data_config(config: Any) -> dict[str, Any]:
    """The preprocessing description of a model config (its ``data_config()``) or of a dict, with defaults filled.

    Keys: ``height``; ``width`` (``None`` for a variable width); ``resize``: ``"stretch"`` to ``(height, width)``
    or ``"keep_ratio_pad"``: resize to ``height`` keeping the aspect ratio, at most ``max_width`` wide, then pad on
    the right with ``pad_value`` (in normalized units) to at least ``min_width`` and to a multiple of
    ``width_multiple``; ``channel_order`` (``"RGB"`` or ``"BGR"``); ``mean``, ``std``; ``interpolation``.

    Raises:
        ValueError: for unknown keys or values.
    """
    d = config.data_config() if hasattr(config, "data_config") else dict(config)
    unknown = sorted(set(d) - set(_DATA_DEFAULTS) - {"height"})
    if unknown or "height" not in d:
        raise ValueError(f"preprocessing description needs 'height' and knows {sorted(_DATA_DEFAULTS)}; "
                         f"got unknown keys {unknown}")
    out = {**_DATA_DEFAULTS, **d}
    if out["resize"] not in ("stretch", "keep_ratio_pad"):
        raise ValueError(f"resize must be 'stretch' or 'keep_ratio_pad', got {out['resize']!r}")
    if out["resize"] == "stretch" and not out["width"]:
        raise ValueError("resize='stretch' needs a fixed width")
    if out["resize"] == "keep_ratio_pad" and not out["max_width"]:
        raise ValueError("resize='keep_ratio_pad' needs max_width")
    if out["channel_order"] not in ("RGB", "BGR"):
        raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {out['channel_order']!r}")
    if out["interpolation"] not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {out['interpolation']!r}")
    _check_sizes(out)
    for key in ("mean", "std"):
        v = out[key]
        if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_finite_number(x) for x in v)):
            raise ValueError(f"{key} must be 3 finite numbers, got {v!r}")
    if not all(x > 0 for x in out["std"]):
        raise ValueError(f"std must be positive, got {out['std']!r}")
    if not _is_finite_number(out["pad_value"]):
        raise ValueError(f"pad_value must be a finite number, got {out['pad_value']!r}")
    return out


#: Largest model input a preprocessing description may ask for (``height x width``, or ``x max_width``).
_MAX_INPUT_PIXELS = 1 << 22


def _is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_sizes(d: dict[str, Any]) -> None:
    """Sizes are positive integers (``min_width`` may be 0) and the model input is at most 4 megapixels, so that
    a hostile or mistaken config cannot make every image allocate gigabytes."""
    for key, low in (("height", 1), ("width", 1), ("max_width", 1), ("min_width", 0), ("width_multiple", 1)):
        v = d[key]
        if v is None and key in ("width", "max_width"):
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {v!r}")
    widest = max(d["width"] or 0, d["max_width"] or 0, d["min_width"])
    if d["height"] * widest > _MAX_INPUT_PIXELS:
        raise ValueError(f"model input of {d['height']}x{widest} pixels is over the limit of {_MAX_INPUT_PIXELS} "
                         "pixels; the config is corrupt or not meant for this library")


class Preprocessor:
    """RGB image -> normalized tensor, as the weights' preprocessing description prescribes (one code path for
    every model family; see :func:`resolve_data_config`).

    Fixed-size models (``resize="stretch"``) give ``(3, H, W)`` tensors. Variable-width models
    (``resize="keep_ratio_pad"``) give ``(3, H, w)`` with ``w`` the resized width; :meth:`batches` pads them.

    Args:
        config: a model config (anything with ``data_config()``) or a preprocessing dict.
        keep_aspect_ratio: fixed-size models only: resize to fit inside ``(H, W)`` without distortion, keep the
            text left-aligned and vertically centered, and pad with the median colour of the image border.
            Default: stretch to ``(H, W)``. (Variable-width models always keep the aspect ratio.)
        rotate_tall: rotate crops whose height is at least ``1.5 x`` their width by 90 degrees counter-clockwise
            (text written top-to-bottom, i.e. rotated clockwise, becomes left-to-right) before resizing.
        fixed_width: variable-width models only: every image comes out exactly this wide (resized with the aspect
            ratio kept, squeezed if wider, then padded), so that training batches stack. Inference leaves it
            ``None``.
    """

    TALL_RATIO = 1.5

    def __init__(self, config: Any, keep_aspect_ratio: bool = False, rotate_tall: bool = False,
                 fixed_width: int | None = None) -> None:
        self.data = d = resolve_data_config(config)
        self.variable_width = d["resize"] == "keep_ratio_pad"
        self.size = (int(d["height"]), int(d["width"] or d["max_width"]))
        self.interpolation = d["interpolation"]
        self.resample = _RESAMPLE.get(d["interpolation"], Image.Resampling.BILINEAR)
        self.bgr = d["channel_order"] == "BGR"
        self.mean = torch.tensor(d["mean"], dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(d["std"], dtype=torch.float32).view(3, 1, 1)
        self.keep_aspect_ratio = keep_aspect_ratio
        self.rotate_tall = rotate_tall
        if fixed_width is not None and (not self.variable_width or fixed_width < 1):
            raise ValueError("fixed_width applies to variable-width models only, and must be >= 1")
        self.fixed_width = fixed_width

    def __repr__(self) -> str:
        return (f"Preprocessor({self.data}, keep_aspect_ratio={self.keep_aspect_ratio}, "
                f"rotate_tall={self.rotate_tall})")

    def target_width(self, width: int, height: int) -> int:
        """Variable width: the resized width of a ``width x height`` image (aspect kept, capped at max_width)."""
        h = self.size[0]
        cap = int(self.fixed_width or self.data["max_width"])
        return max(1, min(cap, math.ceil(h * width / height)))

    def padded_width(self, width: int) -> int:
        """Variable width: the width a resized image is padded to (at least min_width, a multiple of
        width_multiple)."""
        m = int(self.data["width_multiple"])
        return max(int(self.data["min_width"]), -(-width // m) * m)

    def _resize_to(self, img: Image.Image, w: int, h: int) -> Image.Image:
        if self.interpolation != "cv2_linear":
            return img.resize((w, h), self.resample)
        if (img.width, img.height) == (w, h):
            return img
        t = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
        out = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
        return Image.fromarray(out[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy())

    def resize(self, img: Image.Image) -> Image.Image:
        """Rotate (if asked), then resize: to exactly ``(W, H)`` for fixed-size models (stretched, or fit-and-pad
        with ``keep_aspect_ratio``), or to height ``H`` at :meth:`target_width` for variable-width models."""
        if self.rotate_tall and img.height >= self.TALL_RATIO * img.width:
            img = img.transpose(Image.Transpose.ROTATE_90)
        h, w = self.size
        if self.variable_width:
            return self._resize_to(img, self.target_width(img.width, img.height), h)
        if not self.keep_aspect_ratio:
            return self._resize_to(img, w, h)
        scale = min(h / img.height, w / img.width)
        nw, nh = max(1, min(w, round(img.width * scale))), max(1, min(h, round(img.height * scale)))
        a = np.asarray(img)
        border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
        canvas = Image.new("RGB", (w, h), tuple(int(v) for v in np.median(border, axis=0)))
        canvas.paste(self._resize_to(img, nw, nh), (0, (h - nh) // 2))
        return canvas

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """Args: img: an RGB image of any size. Returns: float32 tensor ``(3, H, W)`` (``(3, H, w)`` for
        variable-width models, unpadded unless ``fixed_width``), normalized, channels in the weights' order."""
        x = self.normalize(self._uint8(img))
        return self.pad(x, self.fixed_width) if self.fixed_width else x

    def to_uint8(self, img: Image.Image) -> torch.Tensor:
        """The resized image before normalization: uint8 tensor ``(3, H, W)``, channels in the weights' order.

        Training data loaders hand batches over in this form (a quarter of the bytes of float32 through shared
        and pinned memory and to the GPU) and normalize on the device with :meth:`normalize`; the result is
        bitwise the same as ``__call__`` (except in ``fixed_width`` padding, which holds the pixel value nearest
        to the normalized pad value).
        """
        x = self._uint8(img)
        return self.pad(x, self.fixed_width) if self.fixed_width else x

    def _uint8(self, img: Image.Image) -> torch.Tensor:
        if img.mode != "RGB":
            raise ValueError(f"Preprocessor expects an RGB image, got mode {img.mode!r}; use load_image() first")
        a = np.array(self.resize(img), dtype=np.uint8)
        if self.bgr:
            a = a[:, :, ::-1]
        return torch.from_numpy(a.transpose(2, 0, 1).copy())

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., 3, H, W)`` on any device -> float32, scaled to [0, 1] and normalized with mean/std."""
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.to(torch.float32) / 255.0 - mean) / std

    def pad(self, x: torch.Tensor, width: int) -> torch.Tensor:
        """Pad ``(..., 3, H, w)`` on the right to ``width`` with the pad value (normalized units for float
        tensors; uint8 tensors are padded with the pixel value that normalizes to it)."""
        extra = width - x.shape[-1]
        if extra < 0:
            raise ValueError(f"cannot pad width {x.shape[-1]} down to {width}")
        if extra == 0:
            return x
        pad_value = float(self.data["pad_value"])
        if x.dtype == torch.uint8:
            out = torch.empty((*x.shape[:-1], width), dtype=torch.uint8, device=x.device)
            fill = (self.mean * 0 + pad_value) * self.std + self.mean  # per channel, in [0, 1]
            out[..., x.shape[-1]:] = (fill.to(x.device) * 255).round().clamp(0, 255).to(torch.uint8)
            out[..., : x.shape[-1]] = x
            return out
        return F.pad(x, (0, extra), value=pad_value)

    def batches(self, tensors: list[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
        """Group preprocessed images into forward passes: ``[(positions in tensors, (B, 3, H, W) batch), ...]``.

        Fixed-size models: one batch in input order. Variable width: images are sorted by width and each group
        of equal padded width is one batch, so an image is read the same whatever else is in the batch.
        """
        if not tensors:
            return []
        if not self.variable_width:
            return [(list(range(len(tensors))), torch.stack(tensors))]
        order = sorted(range(len(tensors)), key=lambda i: tensors[i].shape[-1])
        groups: dict[int, list[int]] = {}
        for i in order:
            groups.setdefault(self.padded_width(tensors[i].shape[-1]), []).append(i)
        return [(idx, torch.stack([self.pad(tensors[i], w) for i in idx])) for w, idx in sorted(groups.items())]


class _PreprocessModule(types.ModuleType):
    """This module, forwarding ``IMAGE_FORMATS`` (read and assigned) to :mod:`str_distill.imageio`, which uses it."""

    def __getattr__(self, name: str) -> Any:
        if name == "IMAGE_FORMATS":
            return _imageio.IMAGE_FORMATS
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "IMAGE_FORMATS":
            _imageio.IMAGE_FORMATS = value
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PreprocessModule
