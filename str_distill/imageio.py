"""Image decoding and input limits: any supported input -> RGB PIL image (:func:`load_image`), one per input of
a possibly nested iterable (:func:`iter_inputs`); every failure an :class:`InputError` naming the input.

The transform from that image to the model's input tensor is :mod:`str_distill.preprocess`, which re-exports these
names (their old home).

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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_FORMATS", "MAX_PIXELS", "InputError", "iter_inputs", "load_image"]

#: Default pixel limit of :func:`load_image` and :class:`~str_distill.Recognizer` (``max_pixels``): 25 megapixels,
#: 75 MB as 8-bit RGB; reading and resizing one takes up to ~0.5 GB. Text crops are far smaller (a 48-pixel-high
#: line of 100,000 pixels is 4.8 megapixels); larger inputs are refused rather than decoded.
MAX_PIXELS = 25_000_000
#: Formats (Pillow format names) decoded from paths and bytes. A closed list, so that untrusted bytes never reach a
#: rarely used decoder (or an external program, as EPS would); extend it to read more, e.g. ``("HEIF",)`` once a
#: plugin for it is registered. ``None`` accepts every format Pillow can open.
IMAGE_FORMATS: tuple[str, ...] | None = ("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP", "PPM", "AVIF")
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
