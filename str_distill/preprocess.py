"""Image loading and preprocessing for inference: any supported input -> RGB PIL image -> normalized tensor.

Accepted inputs (:func:`load_image`):

* file paths (``str`` or :class:`pathlib.Path`) and raw encoded bytes (``bytes``, ``bytearray``, ``memoryview``);
* :class:`PIL.Image.Image` in any mode (RGB, RGBA, L, LA, P, PA, CMYK, YCbCr, I, I;16, F, 1, ...);
* :class:`numpy.ndarray` ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` of dtype uint8, uint16, bool or
  float (values in ``[0, 1]``);
* :class:`torch.Tensor` ``(H, W)`` or ``(C, H, W)`` with ``C`` in 1, 3, 4 (uint8 0-255, or float in ``[0, 1]``).
  A ``(B, C, H, W)`` tensor holds ``B`` images: :func:`iter_inputs` splits it.

EXIF orientation is applied, transparency is composited on white, 16-bit images are scaled to 8 bits (PIL "F"
images follow PIL's 0-255 scale unless all values lie in ``[0, 1]``).
Every problem raises :class:`InputError` whose message starts with the input's name (its path or ``input <i>``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .models.config import ModelConfig

__all__ = ["InputError", "Preprocessor", "iter_inputs", "load_image"]

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}
_FLOAT_TOLERANCE = 1e-3  # float inputs may overshoot [0, 1] by this much (rounding); they are clipped


class InputError(ValueError):
    """An input image that cannot be read or converted.

    Attributes:
        name: the input's path, or ``"input <i>"`` (``"input <i>[<j>]"`` for image ``j`` of a batched tensor).
        index: position of the input in the iterable given to ``predict`` (``None`` if unknown).
    """

    def __init__(self, name: str, message: str, index: int | None = None) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.index = index


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


def load_image(x: Any, name: str) -> Image.Image:
    """Load one input as an RGB :class:`PIL.Image.Image` (EXIF orientation applied, alpha on white).

    Args:
        x: a path, encoded bytes, a PIL image, a numpy array or a torch tensor (see the module docstring).
        name: how error messages refer to the input (its path or ``"input <i>"``).

    Raises:
        InputError: the message names the input and says what is wrong with it.
    """
    try:
        if isinstance(x, (str, Path)):
            img = _open(Path(x), name)
        elif isinstance(x, (bytes, bytearray, memoryview)):
            img = _decode(io.BytesIO(bytes(x)), name)
        elif isinstance(x, Image.Image):
            img = x
        elif isinstance(x, np.ndarray):
            img = _from_array(x, name)
        elif isinstance(x, torch.Tensor):
            img = _from_tensor(x, name)
        else:
            raise InputError(name, f"unsupported input type {type(x).__module__}.{type(x).__qualname__}; expected a "
                             "path, bytes, PIL image, numpy array or torch tensor")
        return _to_rgb(img, name)
    except InputError:
        raise
    except Exception as e:  # a decoder or converter failure deep in PIL/numpy: report it against this input
        raise InputError(name, f"cannot read image ({type(e).__name__}: {e})") from e


def _open(path: Path, name: str) -> Image.Image:
    if not path.exists():
        raise InputError(name, "no such file")
    if path.is_dir():
        raise InputError(name, "is a directory, not an image file")
    with open(path, "rb") as f:
        return _decode(f, name)


def _decode(f: Any, name: str) -> Image.Image:
    try:
        img = Image.open(f)
        img.load()
    except UnidentifiedImageError:
        raise InputError(name, "not an image (unrecognized or unsupported format)") from None
    except Exception as e:
        raise InputError(name, f"not a readable image ({type(e).__name__}: {e})") from e
    return img


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    if img.width == 0 or img.height == 0:
        raise InputError(name, f"empty image ({img.width}x{img.height})")
    if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation tag
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
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
    """PIL "I"/"I;16" images arrive as int32/uint16 arrays: treat them as 16-bit."""
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


class Preprocessor:
    """RGB image -> normalized tensor at the model's input size, as the weights' config prescribes.

    Args:
        config: gives ``img_size`` ``(H, W)``, ``interpolation``, ``mean`` and ``std``.
        keep_aspect_ratio: resize to fit inside ``(H, W)`` without distortion, keep the text left-aligned and
            vertically centered, and pad with the median colour of the image border. Default: stretch to ``(H, W)``.
        rotate_tall: rotate crops whose height is at least ``1.5 x`` their width by 90 degrees counter-clockwise
            (text written top-to-bottom, i.e. rotated clockwise, becomes left-to-right) before resizing.
    """

    TALL_RATIO = 1.5

    def __init__(self, config: ModelConfig, keep_aspect_ratio: bool = False, rotate_tall: bool = False) -> None:
        self.size = tuple(config.img_size)
        self.resample = _RESAMPLE[config.interpolation]
        self.mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
        self.keep_aspect_ratio = keep_aspect_ratio
        self.rotate_tall = rotate_tall

    def __repr__(self) -> str:
        return (f"Preprocessor(size={self.size}, resample={self.resample.name}, mean={self.mean.flatten().tolist()}, "
                f"std={self.std.flatten().tolist()}, keep_aspect_ratio={self.keep_aspect_ratio}, "
                f"rotate_tall={self.rotate_tall})")

    def resize(self, img: Image.Image) -> Image.Image:
        """Rotate (if asked), then resize or fit-and-pad an RGB image to exactly ``(W, H)`` pixels."""
        if self.rotate_tall and img.height >= self.TALL_RATIO * img.width:
            img = img.transpose(Image.Transpose.ROTATE_90)
        h, w = self.size
        if not self.keep_aspect_ratio:
            return img.resize((w, h), self.resample)
        scale = min(h / img.height, w / img.width)
        nw, nh = max(1, min(w, round(img.width * scale))), max(1, min(h, round(img.height * scale)))
        a = np.asarray(img)
        border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
        canvas = Image.new("RGB", (w, h), tuple(int(v) for v in np.median(border, axis=0)))
        canvas.paste(img.resize((nw, nh), self.resample), (0, (h - nh) // 2))
        return canvas

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """Args: img: an RGB image of any size. Returns: float32 tensor ``(3, H, W)``, normalized."""
        return self.normalize(self.to_uint8(img))

    def to_uint8(self, img: Image.Image) -> torch.Tensor:
        """The resized image before normalization: uint8 tensor ``(3, H, W)``.

        Training data loaders hand batches over in this form (a quarter of the bytes of float32 through shared
        and pinned memory and to the GPU) and normalize on the device with :meth:`normalize`; the result is
        bitwise the same as ``__call__``.
        """
        if img.mode != "RGB":
            raise ValueError(f"Preprocessor expects an RGB image, got mode {img.mode!r}; use load_image() first")
        return torch.from_numpy(np.array(self.resize(img), dtype=np.uint8).transpose(2, 0, 1).copy())

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., 3, H, W)`` on any device -> float32, scaled to [0, 1] and normalized with mean/std."""
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.to(torch.float32) / 255.0 - mean) / std
