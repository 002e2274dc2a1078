"""Image loading and preprocessing for inference: any supported input -> RGB PIL image -> normalized tensor.

Accepted inputs (:func:`load_image`):

* file paths (``str`` or :class:`pathlib.Path`) and raw encoded bytes (``bytes``, ``bytearray``, ``memoryview``);
* :class:`PIL.Image.Image` in any mode (RGB, RGBA, L, LA, P, PA, CMYK, YCbCr, I, I;16, F, 1, ...);
* :class:`numpy.ndarray` ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` of dtype uint8, uint16, bool or
  float (values in ``[0, 1]``);
* :class:`torch.Tensor` ``(H, W)`` or ``(C, H, W)`` with ``C`` in 1, 3, 4 (uint8 0-255, or float in ``[0, 1]``).
  A ``(B, C, H, W)`` tensor holds ``B`` images: :func:`iter_inputs` splits it.

EXIF orientation is applied and transparency is composited on white. PIL "F" images follow PIL's 0-255 scale
unless all values lie in ``[0, 1]``.

**16-bit data** (PIL modes "I" and "I;16*", which includes 16-bit PNG and TIFF files, and uint16 arrays) is scaled
to 8 bits by the range of its values, not by its type:

* if every value is at most 255, the values are 8-bit values held in a wider type and are used as they are. This
  is what ``Image.convert("I")`` or ``convert("I;16")`` of an 8-bit image and ``array.astype(np.uint16)`` produce
  (PIL's own convention keeps the 0-255 scale). A genuine 16-bit image that dark would come out black (at most
  1/257 of full scale) if it were scaled, so using its values as they are also gives the readable result;
* otherwise the values span 0-65535 and are divided by 257 (65535 -> 255).

So 8-bit data is never turned into a near-black image. Integer values below 0 or above 65535 are an error.

Every problem raises :class:`InputError` whose message starts with the input's name (its path or ``input <i>``);
once the input's position is known (:attr:`InputError.index`), the message of a path names both:
``input 3 (crops/x.png): empty file (0 bytes)``.

**Limits.** An image of more than ``max_pixels`` pixels (:data:`MAX_PIXELS`, 25 megapixels, by default) is an
:class:`InputError`, whatever its type; encoded images are checked from their header, before anything is decoded,
so a small file that claims giant dimensions (a decompression bomb) costs no memory. A JPEG over the limit is
decoded at 1/2, 1/4 or 1/8 scale (the JPEG decoder's own reduction) when that brings it within the limit. Paths and
bytes are decoded only in the formats of :data:`IMAGE_FORMATS`; paths must be regular files (not FIFOs or devices).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_FORMATS", "INTERPOLATIONS", "MAX_PIXELS", "InputError", "Preprocessor", "iter_inputs", "load_image",
           "resolve_data_config"]

#: Default pixel limit of :func:`load_image` and :class:`~str_distill.Recognizer` (``max_pixels``): 25 megapixels,
#: 75 MB as 8-bit RGB; reading and resizing one takes up to ~0.5 GB. Text crops are far smaller (a 48-pixel-high
#: line of 100,000 pixels is 4.8 megapixels); larger inputs are refused rather than decoded.
MAX_PIXELS = 25_000_000
#: Formats (Pillow format names) decoded from paths and bytes. A closed list, so that untrusted bytes never reach a
#: rarely used decoder (or an external program, as EPS would); extend it to read more, e.g. ``("HEIF",)`` once a
#: plugin for it is registered. ``None`` accepts every format Pillow can open.
IMAGE_FORMATS: tuple[str, ...] | None = ("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP", "PPM", "AVIF")

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}
_FLOAT_TOLERANCE = 1e-3  # float inputs may overshoot [0, 1] by this much (rounding); they are clipped


class InputError(ValueError):
    """An input image that cannot be read or converted.

    ``str(error)`` is ``"<name>: <reason>"``; once :attr:`index` is set (``predict`` sets it) and the name is a
    path, it is ``"input <index> (<path>): <reason>"``, so the message says both which input and which file.

    Attributes:
        name: the input's path, or ``"input <i>"`` (``"input <i>[<j>]"`` for image ``j`` of a batched tensor).
        reason: what is wrong with the input.
        index: position of the input in the iterable given to ``predict`` (``None`` if unknown).
    """

    def __init__(self, name: str, reason: str, index: int | None = None) -> None:
        super().__init__(name, reason)
        self.name = name
        self.reason = reason
        self.index = index

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:  # keep the index through pickling (e.g. from a worker process)
        return type(self), (self.name, self.reason, self.index)

    @property
    def where(self) -> str:
        """The input as the message names it: ``"input <i> (<path>)"``, ``"input <i>"`` or the bare name."""
        if self.index is None:
            return self.name
        tag = f"input {self.index}"
        if self.name == tag or self.name.startswith(tag + "["):
            return self.name
        return f"{tag} ({self.name})"


def iter_inputs(images: Any) -> Iterator[tuple[int, str, Any]]:
    """Flatten the inputs of ``predict`` lazily into ``(input index, name, image)`` triples.

    A single image (path, bytes, PIL image, array or tensor) counts as a one-element list; a ``(B, C, H, W)``
    tensor yields ``B`` images named ``input <i>[<j>]``. Any other iterable, generators included, is consumed
    one element at a time (nothing is materialized). Malformed tensors are yielded as they are, so that the
    error is raised (with the input's name) when the image is loaded.
    """
    if _is_single(images):
        images = [images]
    elif not isinstance(images, Iterable):
        raise TypeError(f"images must be an image or an iterable of images, got {type(images).__name__}")
    return _flatten(images)


def _flatten(images: Iterable[Any]) -> Iterator[tuple[int, str, Any]]:
    for i, x in enumerate(images):
        if isinstance(x, (str, Path)):
            yield i, str(x), x
        elif isinstance(x, torch.Tensor) and x.ndim == 4:
            for j in range(x.shape[0]):
                yield i, f"input {i}[{j}]", x[j]
        else:
            yield i, f"input {i}", x


def _is_single(x: Any) -> bool:
    return isinstance(x, (str, Path, bytes, bytearray, memoryview, Image.Image, np.ndarray, torch.Tensor))


def load_image(x: Any, name: str, index: int | None = None, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Load one input as an RGB :class:`PIL.Image.Image` (EXIF orientation applied, alpha on white).

    Args:
        x: a path, encoded bytes, a PIL image, a numpy array or a torch tensor (see the module docstring).
        name: how error messages refer to the input (its path or ``"input <i>"``).
        index: the input's position among several, if any: set as :attr:`InputError.index`, so that the message
            of a path reads ``"input <index> (<path>): ..."``.
        max_pixels: refuse images of more pixels than this (JPEGs are first decoded at a reduced scale if that
            brings them within it); ``None``: no limit of ours (Pillow's own decompression-bomb check,
            ``PIL.Image.MAX_IMAGE_PIXELS``, still applies to encoded images).

    Raises:
        InputError: the message names the input and says what is wrong with it.
    """
    try:
        return _load(x, name, max_pixels)
    except InputError as e:
        if index is not None:
            e.index = index
        raise
    except Exception as e:  # a decoder or converter failure deep in PIL/numpy: report it against this input
        raise InputError(name, f"cannot read image ({type(e).__name__}: {e})", index) from e


def _load(x: Any, name: str, max_pixels: int | None) -> Image.Image:
    """:func:`load_image` without the error wrapping: dispatch on the input type, then convert to RGB."""
    if isinstance(x, (str, Path)):
        img = _open(Path(x), name, max_pixels)
    elif isinstance(x, (bytes, bytearray, memoryview)):
        data = bytes(x)
        if not data:
            raise InputError(name, "empty image data (0 bytes)")
        img = _decode(io.BytesIO(data), name, max_pixels)
    elif isinstance(x, Image.Image):
        _check_pixels(x.width, x.height, name, max_pixels)
        img = x
    elif isinstance(x, np.ndarray):
        if x.ndim in (2, 3):
            _check_pixels(x.shape[1], x.shape[0], name, max_pixels)
        img = _from_array(x, name)
    elif isinstance(x, torch.Tensor):
        if x.ndim in (2, 3):
            _check_pixels(x.shape[-1], x.shape[-2], name, max_pixels)
        img = _from_tensor(x, name)
    else:
        raise InputError(name, f"unsupported input type {type(x).__module__}.{type(x).__qualname__}; expected a "
                         "path, bytes, PIL image, numpy array or torch tensor")
    return _to_rgb(img, name)


def _open(path: Path, name: str, max_pixels: int | None) -> Image.Image:
    if not path.exists():
        raise InputError(name, "no such file")
    if path.is_dir():
        raise InputError(name, "is a directory, not an image file")
    if not path.is_file():  # reading a FIFO or a device could block forever or never end
        raise InputError(name, "not a regular file (a device, FIFO or socket)")
    if path.stat().st_size == 0:
        raise InputError(name, "empty file (0 bytes)")
    with open(path, "rb") as f:
        return _decode(f, name, max_pixels)


def _check_pixels(width: int, height: int, name: str, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(name, f"image of {width}x{height} pixels ({width * height / 1e6:.4g} megapixels) is over the "
                         f"limit of {max_pixels} pixels (max_pixels)")


def _accepted_formats() -> list[str] | None:
    """The formats of :data:`IMAGE_FORMATS` that this Pillow can open (``None``: any)."""
    if IMAGE_FORMATS is None:
        return None
    Image.init()  # registers every plugin (once): Image.OPEN then lists what this Pillow reads
    return [f for f in (f.upper() for f in IMAGE_FORMATS) if f in Image.OPEN]


def _decode(f: Any, name: str, max_pixels: int | None) -> Image.Image:
    """Decode an encoded image; its header is checked against ``max_pixels`` before any pixel is decoded."""
    formats = _accepted_formats()
    try:
        img = Image.open(f, formats=formats)
    except UnidentifiedImageError:
        accepted = "" if formats is None else f", or not one of the accepted formats {', '.join(formats)}"
        raise InputError(name, f"not an image (unrecognized format{accepted})") from None
    except Image.DecompressionBombError as e:
        raise InputError(name, f"too many pixels: {e}") from None
    except Exception as e:
        raise InputError(name, f"not a readable image ({type(e).__name__}: {e})") from e
    if max_pixels is not None and img.width * img.height > max_pixels and img.format in ("JPEG", "MPO"):
        _reduce_jpeg(img, max_pixels)
    _check_pixels(img.width, img.height, name, max_pixels)
    try:
        img.load()
    except Exception as e:
        raise InputError(name, f"not a readable image ({type(e).__name__}: {e})") from e
    return img


def _reduce_jpeg(img: Image.Image, max_pixels: int) -> None:
    """Have a JPEG over ``max_pixels`` decoded at the largest of 1/2, 1/4, 1/8 scale within it (nothing if none)."""
    w, h = img.size
    for scale in (2, 4, 8):
        if -(-w // scale) * -(-h // scale) <= max_pixels:
            img.draft(None, (max(1, w // scale), max(1, h // scale)))
            return


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    if img.width == 0 or img.height == 0:
        raise InputError(name, f"empty image ({img.width}x{img.height})")
    if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation tag
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "La":  # premultiplied alpha: Pillow converts it to LA only
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode.startswith("I"):
        img = _from_array(_high_depth(np.asarray(img), name), name)
    elif mode == "F":  # PIL's convention (e.g. L -> F) keeps the 0-255 scale; [0, 1] data is accepted too
        a = np.asarray(img, dtype=np.float32)
        img = _from_array(a / 255.0 if np.isfinite(a).all() and a.max() > 1 + _FLOAT_TOLERANCE else a, name)
    elif mode == "1":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB")


def _high_depth(a: np.ndarray, name: str) -> np.ndarray:
    """PIL "I"/"I;16*" images arrive as int32/uint16 arrays: check they fit 16 bits, return them as uint16.

    :func:`_from_array` then scales them to 8 bits by their value range (see the module docstring).
    """
    if a.dtype.kind in "iu" and a.dtype.itemsize > 1:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise InputError(name, f"integer image values [{lo}, {hi}] do not fit 16 bits")
        return a.astype(np.uint16)
    return a


def _from_array(a: np.ndarray, name: str) -> Image.Image:
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        if a.shape[2] == 1:
            a = a[:, :, 0]
    elif a.ndim != 2:
        raise InputError(name, f"array of shape {a.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if a.size == 0:
        raise InputError(name, f"empty image (shape {a.shape})")
    if a.dtype == np.uint8:
        u8 = a
    elif a.dtype == np.bool_:
        u8 = a.astype(np.uint8) * 255
    elif a.dtype.kind == "u" and a.dtype.itemsize == 2:
        if int(a.max()) <= 255:  # 8-bit values in a 16-bit type (e.g. Image.convert("I")): keep them
            u8 = a.astype(np.uint8)
        else:  # full 16-bit range: 65535 -> 255
            u8 = (a.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise InputError(name, "float image contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < -_FLOAT_TOLERANCE or hi > 1 + _FLOAT_TOLERANCE:
            raise InputError(name, f"float image values must be in [0, 1], got [{lo:.4g}, {hi:.4g}]"
                             + ("; divide by 255" if hi <= 255 and lo >= 0 else ""))
        u8 = (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise InputError(name, f"unsupported array dtype {a.dtype}; use uint8, uint16, bool or float in [0, 1]")
    return Image.fromarray(np.ascontiguousarray(u8))


def _from_tensor(t: torch.Tensor, name: str) -> Image.Image:
    if t.ndim in (2, 3) and t.numel() == 0:  # report the shape as given, not as permuted below
        raise InputError(name, f"empty image (tensor of shape {tuple(t.shape)})")
    if t.ndim == 3:
        if t.shape[0] not in (1, 3, 4):
            hint = "; it looks like (H, W, C): use tensor.permute(2, 0, 1)" if t.shape[2] in (1, 3, 4) else ""
            raise InputError(name, f"tensor of shape {tuple(t.shape)}; expected (C, H, W) with C in 1, 3, 4{hint}")
        t = t.permute(1, 2, 0)
    elif t.ndim != 2:
        raise InputError(name, f"tensor of shape {tuple(t.shape)}; expected (H, W), (C, H, W) or (B, C, H, W)")
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.uint8, torch.bool)):
        raise InputError(name, f"unsupported tensor dtype {t.dtype}; use uint8 (0-255) or float in [0, 1]")
    t = t.detach().cpu()
    if t.is_floating_point():
        t = t.float()
    return _from_array(t.numpy(), name)


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
