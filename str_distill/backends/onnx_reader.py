"""Read text with an exported recognizer (``str-distill export``) using only onnxruntime, numpy and Pillow.

This module imports nothing from torch or from the rest of str-distill: a service that must not depend on torch can
copy this one file next to its code and read with the ``.onnx`` file alone, whose metadata carries the charset and
the preprocessing::

    reader = ONNXReader("model.onnx", threads=1)
    reader.predict(["word.png"])[0].text

:class:`ONNXReader` reproduces the library's preprocessing (resize, padding, normalization, batching by width) and
greedy decoding, so it reads the same text as ``Recognizer.from_pretrained(..., backend="onnxruntime")``. It
accepts file paths, encoded bytes, PIL images and uint8 numpy arrays (``(H, W)`` gray or ``(H, W, 3)`` RGB).

The helpers :func:`create_session`, :func:`read_info` and :func:`selector_value` are shared with the library's
onnxruntime backend.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "DECODING_CODES",
    "INPUT_NAME",
    "METADATA_FORMAT",
    "OUTPUT_NAME",
    "ONNXInfo",
    "ONNXReader",
    "Reading",
    "SELECTOR_NAME",
    "create_session",
    "import_onnxruntime",
    "read_info",
    "selector_value",
]

#: Version of the metadata layout written by ``str-distill export``.
METADATA_FORMAT = "1"
#: Graph input: normalized images ``(B, 3, H, W)`` float32.
INPUT_NAME = "images"
#: Graph output: logits ``(B, T, classes)`` float32; class 0 is the CTC blank / end-of-sequence.
OUTPUT_NAME = "logits"
#: Graph input of attention-family files: an int64 scalar choosing the decoding (see :data:`DECODING_CODES`).
SELECTOR_NAME = "decoding"
#: Values of the ``decoding`` input: CTC head, parallel attention decoding (+ refinement), autoregressive decoding.
DECODING_CODES = {"ctc": 0, "parallel": 1, "autoregressive": 2}
INSTALL_HINT = 'pip install "str-distill[onnxruntime]" (or: pip install onnxruntime)'

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module.

    Raises:
        ImportError: with the install command when the package is missing.
    """
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"the onnxruntime backend needs the onnxruntime package: {INSTALL_HINT}") from e
    return onnxruntime


@dataclass(frozen=True)
class ONNXInfo:
    """What an exported file says about itself (its ``metadata_props``).

    Attributes:
        arch: the architecture name, e.g. ``"ppocrv6-small"``.
        charset: the literal characters; character ``charset[i]`` is class ``i + 1``.
        preprocessing: the preprocessing description (keys of ``str_distill.preprocess.resolve_data_config``).
        decodings: ``("ctc",)`` or ``("attention", "ctc")``.
        modes: attention-decoding modes in the file (``"parallel"``, ``"autoregressive"``); empty for CTC-only.
        refine_iters: refinement passes baked into parallel decoding.
        max_label_length: the longest text the decoders return.
        config: the model config as a dict.
        quantization: ``"none"`` or ``"int8-dynamic"``.
        metadata: every metadata entry, as stored.
    """

    arch: str
    charset: str
    preprocessing: dict[str, Any]
    decodings: tuple[str, ...]
    modes: tuple[str, ...]
    refine_iters: int
    max_label_length: int
    config: dict[str, Any]
    quantization: str
    metadata: dict[str, str] = field(repr=False)

    @property
    def has_selector(self) -> bool:
        """Whether the graph has the ``decoding`` input (attention-family files)."""
        return bool(self.modes)


def read_info(metadata: dict[str, str], source: str = "model") -> ONNXInfo:
    """Parse the metadata of an exported file (``session.get_modelmeta().custom_metadata_map``).

    Raises:
        ValueError: the file was not written by ``str-distill export`` or by a newer, unknown format.
    """
    fmt = metadata.get("str_distill_format")
    if fmt is None:
        raise ValueError(f"{source}: not a str-distill export (no 'str_distill_format' metadata); export the model "
                         "with `str-distill export MODEL --format onnx -o FILE`")
    if fmt != METADATA_FORMAT:
        raise ValueError(f"{source}: metadata format {fmt!r} is not supported (this reader knows "
                         f"{METADATA_FORMAT!r}); upgrade str-distill or re-export the model")
    try:
        return ONNXInfo(
            arch=metadata["arch"],
            charset=json.loads(metadata["charset"]),
            preprocessing=json.loads(metadata["preprocessing"]),
            decodings=tuple(json.loads(metadata["decodings"])),
            modes=tuple(json.loads(metadata.get("modes", "[]"))),
            refine_iters=int(metadata.get("refine_iters", 0)),
            max_label_length=int(metadata["max_label_length"]),
            config=json.loads(metadata["config"]),
            quantization=metadata.get("quantization", "none"),
            metadata=dict(metadata),
        )
    except (KeyError, ValueError) as e:
        raise ValueError(f"{source}: incomplete str-distill metadata ({type(e).__name__}: {e})") from e


def selector_value(info: ONNXInfo, decoding: str, mode: str = "autoregressive") -> int | None:
    """The ``decoding`` input for a decoding method, or ``None`` for a CTC-only file (no such input).

    Raises:
        ValueError: the file cannot decode that way.
    """
    if decoding not in info.decodings:
        raise ValueError(f"{info.arch} cannot decode with {decoding!r}: it supports {', '.join(info.decodings)}")
    if not info.has_selector:
        return None
    if decoding == "ctc":
        return DECODING_CODES["ctc"]
    if mode not in info.modes:
        raise ValueError(f"this ONNX file has no {mode!r} attention decoding; it has {', '.join(info.modes)}")
    return DECODING_CODES[mode]


def create_session(model: str | Path | bytes, threads: int | None = None, optimization: str = "all",
                   providers: Sequence[str] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for a file path or the serialized bytes of a model.

    Args:
        threads: intra-op threads (``None``: onnxruntime's default, one per physical core); inter-op work is
            sequential.
        optimization: graph optimization level: ``"all"`` (default), ``"extended"``, ``"basic"`` or ``"disable"``.
        providers: execution providers (default: CPU).

    Raises:
        ImportError: onnxruntime is not installed (the message says how to install it).
        ValueError: bad ``threads`` or ``optimization``.
    """
    ort = import_onnxruntime()
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    if optimization not in levels:
        raise ValueError(f"optimization must be one of {', '.join(levels)}, got {optimization!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[optimization]
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    so.enable_mem_pattern = False  # input widths vary: a memory plan per shape costs memory and saves ~nothing
    # idle worker threads sleep instead of spinning: the caller's own work between runs (decoding images,
    # preprocessing) gets the cores (measured 25-45 % faster with 2 threads at batch 1, same at batch 32)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3  # errors only
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, so, providers=list(providers or ["CPUExecutionProvider"]))


@dataclass(frozen=True)
class Reading:
    """The reading of one image (the fields of ``str_distill.Prediction``, as numpy).

    Attributes:
        text: the recognized string.
        confidence: in ``[0, 1]``, comparable across lengths: the lowest probability among the emitted tokens
            (the characters, plus the end-of-sequence token for attention decoding; a CTC reading of no character:
            the lowest of its frames' blank probabilities).
        char_probs: float32 ``(len(text),)``: the probability of each character.
        path_probability: in ``[0, 1]``, falls with length: CTC, the probability of the greedy frame path;
            attention, the product of the per-character probabilities and the end-of-sequence probability.
    """

    text: str
    confidence: float
    char_probs: np.ndarray
    path_probability: float = float("nan")


class ONNXReader:
    """Preprocessing + onnxruntime + greedy decoding for an exported recognizer, without torch.

    Args:
        model: the ``.onnx`` file (or its bytes).
        threads: onnxruntime intra-op threads (``None``: one per physical core).
        optimization, providers: see :func:`create_session`.
        min_width: variable-width models only: pad narrower images to this width instead of the file's own
            ``min_width`` (``None``); smaller reads short words faster, at an accuracy to be measured.
    """

    def __init__(self, model: str | Path | bytes, threads: int | None = None, optimization: str = "all",
                 providers: Sequence[str] | None = None, min_width: int | None = None) -> None:
        self.session = create_session(model, threads, optimization, providers)
        name = "<bytes>" if isinstance(model, bytes) else str(model)
        self.info = read_info(self.session.get_modelmeta().custom_metadata_map, name)
        d = self.info.preprocessing
        self.variable_width = d["resize"] == "keep_ratio_pad"
        if min_width is not None:
            if isinstance(min_width, bool) or not isinstance(min_width, int) or min_width < 0:
                raise ValueError(f"min_width must be a non-negative integer or None, got {min_width!r}")
            if not self.variable_width:
                raise ValueError(f"min_width applies to variable-width models; {name} reads a fixed "
                                 f"{d['height']}x{d['width']} input")
            if min_width > int(d["max_width"]):
                raise ValueError(f"min_width {min_width} is larger than the model's max_width {d['max_width']}")
            d["min_width"] = min_width
        self.height = int(d["height"])
        self.width = int(d["width"] or d["max_width"])
        self.mean = np.asarray(d["mean"], np.float32).reshape(3, 1, 1)
        self.std = np.asarray(d["std"], np.float32).reshape(3, 1, 1)

    def __repr__(self) -> str:
        return f"ONNXReader(arch={self.info.arch!r}, decodings={self.info.decodings}, modes={self.info.modes})"

    # ------------------------------------------------------------------------------------------ preprocessing
    @staticmethod
    def load(image: Any) -> Image.Image:
        """A path, encoded bytes, PIL image or uint8 array (``(H, W)``, ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA) ->
        RGB PIL image (EXIF orientation applied, transparency composited on white).

        Raises:
            ValueError: an unsupported input.
        """
        if isinstance(image, (str, Path)):
            with open(image, "rb") as f:
                img = Image.open(io.BytesIO(f.read()))
        elif isinstance(image, (bytes, bytearray, memoryview)):
            img = Image.open(io.BytesIO(bytes(image)))
        elif isinstance(image, Image.Image):
            img = image
        elif isinstance(image, np.ndarray) and image.dtype == np.uint8 and (
                image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
            img = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
        else:
            raise ValueError(f"unsupported input {type(image).__name__}; expected a path, bytes, a PIL image or a "
                             "uint8 array (H, W), (H, W, 3) or (H, W, 4)")
        img.load()
        if img.width == 0 or img.height == 0:
            raise ValueError(f"empty image ({img.width}x{img.height})")
        if img.getexif().get(0x0112, 1) != 1:
            img = ImageOps.exif_transpose(img)
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return img if img.mode == "RGB" else img.convert("RGB")

    def _resize(self, img: Image.Image, w: int, h: int) -> np.ndarray:
        if self.info.preprocessing["interpolation"] != "cv2_linear":
            resample = _RESAMPLE.get(self.info.preprocessing["interpolation"], Image.Resampling.BILINEAR)
            return np.asarray(img.resize((w, h), resample), dtype=np.uint8)
        a = np.asarray(img, dtype=np.float32)
        if a.shape[:2] == (h, w):
            return a.astype(np.uint8)
        (y0, y1, ly), (x0, x1, lx) = _linear_taps(a.shape[0], h), _linear_taps(a.shape[1], w)
        top, bottom = a[y0], a[y1]
        lx = lx[None, :, None]
        rows_top = top[:, x0] * (1 - lx) + top[:, x1] * lx
        rows_bottom = bottom[:, x0] * (1 - lx) + bottom[:, x1] * lx
        ly = ly[:, None, None]
        out = rows_top * (1 - ly) + rows_bottom * ly
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def preprocess(self, image: Any) -> np.ndarray:
        """One image -> normalized float32 ``(3, H, w)`` (variable-width models: unpadded, see :meth:`batches`)."""
        img = self.load(image)
        if self.variable_width:
            cap = int(self.info.preprocessing["max_width"])
            w = max(1, min(cap, math.ceil(self.height * img.width / img.height)))
            a = self._resize(img, w, self.height)
        else:
            a = self._resize(img, self.width, self.height)
        if self.info.preprocessing["channel_order"] == "BGR":
            a = a[:, :, ::-1]
        x = a.transpose(2, 0, 1).astype(np.float32)
        return (x / np.float32(255.0) - self.mean) / self.std

    def padded_width(self, width: int) -> int:
        """Variable width: the width an image of resized width ``width`` is padded to."""
        d = self.info.preprocessing
        m = int(d["width_multiple"])
        return max(int(d["min_width"]), -(-width // m) * m)

    def batches(self, arrays: list[np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
        """Group preprocessed images into forward passes ``[(positions, (B, 3, H, W) batch), ...]``: fixed-size
        models one batch in order; variable width one batch per padded width (an image is read the same whatever
        else is in the batch)."""
        if not arrays:
            return []
        if not self.variable_width:
            return [(list(range(len(arrays))), np.stack(arrays))]
        groups: dict[int, list[int]] = {}
        for i in sorted(range(len(arrays)), key=lambda i: arrays[i].shape[-1]):
            groups.setdefault(self.padded_width(arrays[i].shape[-1]), []).append(i)
        pad = np.float32(self.info.preprocessing.get("pad_value", 0.0))
        out = []
        for w, idx in sorted(groups.items()):
            batch = np.full((len(idx), 3, self.height, w), pad, dtype=np.float32)
            for j, i in enumerate(idx):
                batch[j, :, :, : arrays[i].shape[-1]] = arrays[i]
            out.append((idx, batch))
        return out

    # ------------------------------------------------------------------------------------------ inference
    def logits(self, batch: np.ndarray, decoding: str = "ctc", mode: str = "autoregressive") -> np.ndarray:
        """Normalized images ``(B, 3, H, W)`` float32 -> logits ``(B, T, classes)`` float32."""
        feeds: dict[str, np.ndarray] = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        code = selector_value(self.info, decoding, mode)
        if code is not None:
            feeds[SELECTOR_NAME] = np.asarray(code, dtype=np.int64)
        return self.session.run([OUTPUT_NAME], feeds)[0]

    def decode(self, logits: np.ndarray, decoding: str = "ctc") -> list[Reading]:
        """Greedy decoding of logits ``(B, T, classes)``: CTC (collapse repeats, drop blanks) or attention (stop
        at the first end-of-sequence)."""
        z = logits.astype(np.float32)
        ids = z.argmax(-1)
        # the top class's softmax probability, 1 / sum(exp(z - z_top)), without normalizing every class
        e = np.subtract(z, np.take_along_axis(z, ids[..., None], -1))
        np.exp(e, out=e)
        pmax = np.float32(1.0) / e.sum(-1)
        return [_decode_ctc(p, i, self.info) if decoding == "ctc" else _decode_attention(p, i, self.info)
                for p, i in zip(pmax, ids)]

    def predict(self, images: Any, batch_size: int = 32, decoding: str | None = None,
                mode: str = "autoregressive") -> list[Reading]:
        """Read one image or an iterable of images; results in input order.

        Args:
            decoding: ``"ctc"`` or ``"attention"``; ``None``: the model's first (attention for ViT recognizers).
            mode: attention decoding: ``"autoregressive"`` or ``"parallel"``.

        Raises:
            ValueError: an unreadable input (the message names its position) or an unsupported decoding.
        """
        decoding = decoding or self.info.decodings[0]
        selector_value(self.info, decoding, mode)  # fail before reading
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items = [images] if _is_single(images) else list(images)
        out: list[Reading | None] = [None] * len(items)
        for lo in range(0, len(items), int(batch_size)):
            arrays = []
            for k, x in enumerate(items[lo : lo + int(batch_size)], start=lo):
                try:
                    arrays.append(self.preprocess(x))
                except (OSError, ValueError) as e:
                    raise ValueError(f"input {k}: {e}") from e
            for idx, batch in self.batches(arrays):
                for i, r in zip(idx, self.decode(self.logits(batch, decoding, mode), decoding)):
                    out[lo + i] = r
        return [r for r in out if r is not None]


def _is_single(x: Any) -> bool:
    return isinstance(x, (str, Path, bytes, bytearray, memoryview, Image.Image, np.ndarray)) or not isinstance(
        x, Iterable)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source rows/columns and weights of bilinear resizing without antialiasing (half-pixel centers, as
    OpenCV's ``INTER_LINEAR`` and ``torch.nn.functional.interpolate(..., align_corners=False)``)."""
    scale = np.float32(n_in / n_out)
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = np.clip(src - i0, 0, 1).astype(np.float32)
    return i0, i1, lam


def _decode_ctc(pmax: np.ndarray, ids: np.ndarray, info: ONNXInfo) -> Reading:
    chars: list[str] = []
    probs: list[float] = []
    prev = -1
    for p, i in zip(pmax.tolist(), ids.tolist()):
        if i != prev and i != 0:
            chars.append(info.charset[i - 1])
            probs.append(p)
        elif i == prev and i != 0:
            probs[-1] = max(probs[-1], p)
        prev = i
    n = info.max_label_length
    char_probs = np.asarray(probs[:n], np.float32)
    conf = _reading_confidence(char_probs if len(char_probs) else pmax)
    return Reading("".join(chars[:n]), conf, char_probs, float(np.prod(pmax, dtype=np.float32)))


def _decode_attention(pmax: np.ndarray, ids: np.ndarray, info: ONNXInfo) -> Reading:
    eos = np.flatnonzero(ids == 0)
    n = int(eos[0]) if len(eos) else len(ids)
    k = min(n, info.max_label_length)
    text = "".join(info.charset[int(i) - 1] for i in ids[:k])
    char_probs = pmax[:k].astype(np.float32)
    path = float(np.prod(char_probs, dtype=np.float32)) * (float(pmax[n]) if len(eos) else 1.0)
    tokens = np.concatenate([char_probs, pmax[n : n + 1]]) if len(eos) else char_probs
    return Reading(text, _reading_confidence(tokens), char_probs, path)


def _reading_confidence(probs: np.ndarray) -> float:
    """The confidence of a reading (``str_distill.tokenizer.reading_confidence``): the lowest of its tokens'
    probabilities, ``0.0`` for none."""
    return min(1.0, float(np.min(probs))) if len(probs) else 0.0
