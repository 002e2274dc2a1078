"""Whole-image reading: a text detector finds the lines, a recognizer reads each one.

>>> from str_distill.ocr import OCR
>>> ocr = OCR.from_pretrained()  # doctest: +SKIP
>>> for r in ocr("street.jpg")[0]:  # doctest: +SKIP
...     print(r.polygon.tolist(), r.text, r.confidence)

Steps per image: load (every input type :class:`~str_distill.Recognizer` takes), cap the long side at the
detector's ``max_side_len`` and resize by its rule (both sides multiples of 32), run the detector
(:class:`~str_distill.models.PPOCRDetector`), turn its probability map into rotated boxes
(:mod:`.postprocess`), cut each box out of the full-resolution image with a perspective warp (crops at least 1.5
times taller than wide are turned 90 degrees counter-clockwise), and read all crops of a chunk of images in batches
with the recognizer. Results come in reading order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch import nn

from ..preprocess import MAX_PIXELS, InputError, iter_inputs, load_image
from .postprocess import DBParams, db_boxes, reading_order

__all__ = ["DEFAULT_DETECTOR", "DEFAULT_RECOGNIZER", "OCR", "OCRResult", "TextDetector", "crop_box",
           "detector_input_size"]

#: What ``TextDetector.from_pretrained()`` and ``OCR.from_pretrained()`` load without a name.
DEFAULT_DETECTOR = "ppocrv6-det-small"
#: The recognizer ``OCR.from_pretrained()`` pairs with the detector: the port keeps the spaces inside a text line
#: (the word-level fine-tunes drop them); see the OCR documentation for the measurement behind this choice.
DEFAULT_RECOGNIZER = "ppocrv6-small"


@dataclass(frozen=True)
class OCRResult:
    """One text line found and read in an image.

    Attributes:
        polygon: float32 ``(4, 2)`` corners in image pixel coordinates ``(x, y)``: top-left, top-right,
            bottom-right, bottom-left of the (possibly rotated) box.
        text: what the recognizer read.
        confidence: the recognizer's confidence in ``[0, 1]`` (see :class:`~str_distill.Prediction`).
        char_probs: float32 tensor ``(len(text),)``, the probability of each character.
        box_score: the detector's mean text probability inside the box, in ``[0, 1]``.
    """

    polygon: np.ndarray
    text: str
    confidence: float
    char_probs: torch.Tensor
    box_score: float

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Axis-aligned bounding rectangle ``(x0, y0, x1, y1)`` of :attr:`polygon`."""
        p = self.polygon
        return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``polygon`` as a list of ``[x, y]``, ``char_probs`` as a list of floats (4 decimals)."""
        return {"polygon": self.polygon.round(1).tolist(), "text": self.text, "confidence": round(self.confidence, 4),
                "char_probs": [round(float(p), 4) for p in self.char_probs], "box_score": round(self.box_score, 4)}


def detector_input_size(width: int, height: int, pre: dict[str, Any]) -> tuple[int, int]:
    """The detector's input ``(width, height)`` for an image of ``width x height``, from a preprocessing record.

    The long side is first capped at ``max_side_len``; then ``limit_type="min"`` scales the image up until its
    short side is ``limit_side_len`` (never down), ``"max"`` scales it down until its long side is; both sides are
    then rounded to the nearest multiple of ``size_multiple`` (at least one multiple).
    """
    ratio = 1.0
    if max(width, height) > pre["max_side_len"]:
        ratio = pre["max_side_len"] / max(width, height)
    w, h = width * ratio, height * ratio
    lim = pre["limit_side_len"]
    if pre["limit_type"] == "min":
        r = lim / min(w, h) if min(w, h) < lim else 1.0
    else:
        r = lim / max(w, h) if max(w, h) > lim else 1.0
    if pre["limit_type"] == "min" and max(w, h) * r > pre["max_side_len"]:  # a thin strip: keep the cap
        r = pre["max_side_len"] / max(w, h)
    m = pre["size_multiple"]
    rw, rh = int(w * r), int(h * r)
    return max(m, int(round(rw / m) * m)), max(m, int(round(rh / m) * m))


def crop_box(image: np.ndarray, box: np.ndarray, rotate_ratio: float = 1.5) -> np.ndarray:
    """Cut a 4-point box out of an ``(H, W, 3)`` image with a perspective warp (bicubic, border replicated).

    The crop is ``max(top, bottom edge)`` wide and ``max(left, right edge)`` high; when its height is at least
    ``rotate_ratio`` times its width it is turned 90 degrees counter-clockwise (vertical lines of horizontal
    characters read left to right that way).
    """
    box = box.astype(np.float32)
    w = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    h = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    w, h = max(w, 1), max(h, 1)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(box, dst)
    crop = cv2.warpPerspective(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if h / w >= rotate_ratio:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


@dataclass(frozen=True)
class Detection:
    """Boxes of one image: ``boxes`` float32 ``(K, 4, 2)`` in reading order, ``scores`` float32 ``(K,)``."""

    boxes: np.ndarray
    scores: np.ndarray


class TextDetector:
    """A text detector ready for inference: network + resize rule + normalization + DB post-processing.

    Args:
        model: a :class:`~str_distill.models.PPOCRDetector` (put in eval mode, moved/cast in place).
        device: ``"cpu"`` (default), ``"cuda[:i]"``, ``"auto"`` or a :class:`torch.device`.
        dtype: ``float32`` (default) or ``bfloat16``.
        max_pixels: inputs of more pixels are an :class:`InputError` (default 25 megapixels).
        max_side_len: cap on the detector input's long side (default: the weights' own, 2000); larger images are
            downscaled for detection only (crops are cut from the full image).
        **postprocessing: override any of the weights' post-processing parameters (``thresh``, ``box_thresh``,
            ``unclip_ratio``, ``max_candidates``, ``min_size``, ``dilate``).
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
                 max_pixels: int | None = MAX_PIXELS, max_side_len: int | None = None, **postprocessing: Any) -> None:
        from ..predictor import resolve_device, resolve_dtype

        if getattr(model, "task", None) != "detection":
            arch = getattr(getattr(model, "config", None), "arch", type(model).__name__)
            raise TypeError(f"{arch} is not a text detector (a PPOCRDetector is needed); recognizers go to "
                            "Recognizer / OCR(recognizer=...)")
        self.model = model.eval()
        self.name: str | None = None
        self.max_pixels = max_pixels
        spec = model.config.detect_config()
        self.pre: dict[str, Any] = dict(spec["preprocessing"])
        if max_side_len is not None:
            if max_side_len < 32:
                raise ValueError(f"max_side_len must be at least 32, got {max_side_len}")
            self.pre["max_side_len"] = int(max_side_len)
        post = {k: v for k, v in spec["postprocessing"].items() if k in DBParams.__dataclass_fields__}
        unknown = sorted(set(postprocessing) - set(DBParams.__dataclass_fields__))
        if unknown:
            raise TypeError(f"unknown post-processing parameters {unknown}; known: {sorted(post)}")
        self.params = DBParams(**{**post, **postprocessing})
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model.to(self.device, self.dtype).to(memory_format=torch.channels_last)
        self._mean = np.array(self.pre["mean"], np.float32) * 255.0
        self._inv_std = 1.0 / (np.array(self.pre["std"], np.float32) * 255.0)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, *, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype | None = None, local_files_only: bool = False,
                        max_pixels: int | None = MAX_PIXELS, max_side_len: int | None = None,
                        **postprocessing: Any) -> TextDetector:
        """Load a detector from a manifest name (default ``ppocrv6-det-small``, bundled), a directory written by
        ``save_pretrained`` or a ``.safetensors`` file; see :class:`TextDetector` for the other arguments."""
        from ..hub.loading import load_model

        name = DEFAULT_DETECTOR if name_or_path is None else name_or_path
        det = cls(load_model(name, local_files_only=local_files_only), device, dtype, max_pixels, max_side_len,
                  **postprocessing)
        det.name = str(name)
        return det

    def __repr__(self) -> str:
        return f"TextDetector(arch={self.model.config.arch!r}, weights={self.name!r}, dtype={self.dtype})"

    def input_tensor(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 ``(H, W, 3)`` -> normalized detector input ``(1, 3, H', W')`` (``H'``, ``W'`` multiples of 32)."""
        h, w = image.shape[:2]
        tw, th = detector_input_size(w, h, self.pre)
        img = image[..., ::-1] if self.pre["channel_order"] == "BGR" else image
        img = cv2.resize(np.ascontiguousarray(img), (tw, th), interpolation=cv2.INTER_LINEAR)
        x = (img.astype(np.float32) - self._mean) * self._inv_std
        return torch.from_numpy(x).permute(2, 0, 1)[None]

    def probability_map(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 ``(H, W, 3)`` -> the detector's text probability map ``(H', W')`` float32 at its input size."""
        x = self.input_tensor(image).to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(x)[0, 0].float().cpu().numpy()

    def detect_array(self, image: np.ndarray) -> Detection:
        """Boxes of one RGB uint8 image ``(H, W, 3)``, in reading order."""
        h, w = image.shape[:2]
        boxes, scores = db_boxes(self.probability_map(image), self.params, (w, h))
        order = reading_order(boxes)
        return Detection(boxes[order], scores[order])

    def detect(self, images: Any, errors: Literal["raise", "return"] = "raise") -> list[Detection | InputError]:
        """Boxes of every image (any input type of :func:`~str_distill.preprocess.load_image`), in input order.

        With ``errors="return"``, an unreadable input's slot holds its :class:`InputError`.
        """
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        out: list[Detection | InputError] = []
        for index, name, x in iter_inputs(images):
            try:
                arr = np.asarray(load_image(x, name, index, max_pixels=self.max_pixels))
            except InputError as e:
                if errors == "raise":
                    raise
                out.append(e)
                continue
            out.append(self.detect_array(arr))
        return out


def _to_detector(detector: Any, device: str | torch.device, dtype: Any, max_pixels: int | None,
                 local_files_only: bool) -> TextDetector:
    if isinstance(detector, TextDetector):
        return detector
    if isinstance(detector, nn.Module):
        return TextDetector(detector, device, dtype, max_pixels)
    return TextDetector.from_pretrained(detector, device=device, dtype=dtype, max_pixels=max_pixels,
                                        local_files_only=local_files_only)


def _to_recognizer(recognizer: Any, device: str | torch.device, dtype: Any, local_files_only: bool) -> Any:
    from ..predictor import Recognizer

    if isinstance(recognizer, Recognizer):
        return recognizer
    if isinstance(recognizer, nn.Module):
        if getattr(recognizer, "task", "recognition") != "recognition":
            raise TypeError(f"{recognizer.config.arch} is a text detector; pass it as detector=")
        return Recognizer(recognizer, device, dtype)
    name = DEFAULT_RECOGNIZER if recognizer is None else recognizer
    rec = Recognizer.from_pretrained(name, device=device, dtype=dtype, local_files_only=local_files_only)
    if getattr(rec.model, "task", "recognition") != "recognition":
        raise TypeError(f"{name!r} is a text detector, not a recognizer; pass it as detector=")
    return rec


class OCR:
    """Read whole images: detect text lines, read each line.

    Args:
        detector: a :class:`TextDetector`.
        recognizer: a :class:`~str_distill.Recognizer`.
        min_confidence: results the recognizer reads with a lower confidence (or as empty text) are dropped.
        batch_size: crops per recognizer forward pass (crops of several images are read together). The
            recognizer's output for one batch is ``batch_size x width / 8 x classes`` floats, held twice (logits
            and probabilities): with the 18,710 classes of ``ppocrv6-small`` and lines up to 1600 pixels wide,
            up to 30 MB per crop: at most about 240 MB with 8, about 1 GB with 32.
        images_per_chunk: images detected before their crops are read; bounds memory (each image's crops are
            held until its chunk is read).
    """

    def __init__(self, detector: TextDetector, recognizer: Any, min_confidence: float = 0.5, batch_size: int = 8,
                 images_per_chunk: int = 8) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if batch_size < 1 or images_per_chunk < 1:
            raise ValueError("batch_size and images_per_chunk must be >= 1")
        self.detector = detector
        self.recognizer = recognizer
        self.min_confidence = float(min_confidence)
        self.batch_size = int(batch_size)
        self.images_per_chunk = int(images_per_chunk)

    @classmethod
    def from_pretrained(
        cls,
        detector: str | Path | TextDetector | nn.Module | None = None,
        recognizer: Any = None,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        threads: int | None = None,
        max_pixels: int | None = MAX_PIXELS,
        local_files_only: bool = False,
        min_confidence: float = 0.5,
        batch_size: int = 8,
    ) -> OCR:
        """The default detector (``ppocrv6-det-small``) and recognizer (``ppocrv6-small``), both bundled, or any
        other given by name, path or object (a :class:`TextDetector` / :class:`~str_distill.Recognizer` or their
        networks).

        ``dtype`` applies to both networks built here (float32 by default; ``"bfloat16"`` read the same words
        but ran several times slower on our CPU benchmark: see the OCR documentation);
        ``threads`` calls ``torch.set_num_threads`` (process-wide).
        """
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
            torch.set_num_threads(threads)
        det = _to_detector(detector, device, dtype, max_pixels, local_files_only)
        rec = _to_recognizer(recognizer, device, dtype, local_files_only)
        return cls(det, rec, min_confidence=min_confidence, batch_size=batch_size)

    def __repr__(self) -> str:
        return f"OCR(detector={self.detector!r}, recognizer={self.recognizer!r})"

    def __call__(self, images: Any, errors: Literal["raise", "return"] = "raise") -> list[Any]:
        """Read every image; see :meth:`read`."""
        return self.read(images, errors)

    def read(self, images: Any, errors: Literal["raise", "return"] = "raise") -> list[Any]:
        """Per input image, the list of :class:`OCRResult` in reading order (``[]`` when it holds no text).

        Args:
            images: one image or an iterable of paths, bytes, PIL images, numpy arrays or tensors (a
                ``(B, C, H, W)`` tensor counts as ``B`` images).
            errors: ``"raise"``: an unreadable input raises :class:`InputError` naming it; ``"return"``: its slot
                holds the :class:`InputError` and the other images are still read.
        """
        return list(self.iter_read(images, errors))

    def iter_read(self, images: Any, errors: Literal["raise", "return"] = "raise") -> Iterator[Any]:
        """Like :meth:`read`, a generator yielding each image's results (chunk by chunk)."""
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        items = iter_inputs(images)
        while True:
            chunk = []
            for item in items:
                chunk.append(item)
                if len(chunk) == self.images_per_chunk:
                    break
            if not chunk:
                return
            yield from self._read_chunk(chunk, errors)

    def _read_chunk(self, chunk: list[tuple[int, str, Any]], errors: str) -> list[Any]:
        slots: list[Any] = []
        crops: list[np.ndarray] = []
        for index, name, x in chunk:
            try:
                arr = np.asarray(load_image(x, name, index, max_pixels=self.detector.max_pixels))
            except InputError as e:
                if errors == "raise":
                    raise
                slots.append(e)
                continue
            det = self.detector.detect_array(arr)
            slots.append((det, len(crops)))
            crops.extend(crop_box(arr, b) for b in det.boxes)
        preds = self.recognizer.predict(crops, batch_size=self.batch_size) if crops else []
        out: list[Any] = []
        for slot in slots:
            if isinstance(slot, InputError):
                out.append(slot)
                continue
            det, start = slot
            res = []
            for k, (box, score) in enumerate(zip(det.boxes, det.scores)):
                p = preds[start + k]
                if p.text.strip() and p.confidence >= self.min_confidence:
                    res.append(OCRResult(box, p.text, float(p.confidence), p.char_probs, float(score)))
            out.append(res)
        return out
