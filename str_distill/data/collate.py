"""From raw samples to training batches: label checks, image decoding, augmentation, preprocessing, stacking.

Every rejection is recorded in a :class:`~str_distill.data.report.BadSampleReport` that rides along with the
batch, so that DataLoader workers report their counts to the main process (:attr:`Batch.bad`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from .report import BadSampleReport

if TYPE_CHECKING:
    from PIL import Image

    from ..tokenizer import Tokenizer
    from .augment import Augmenter

__all__ = ["Batch", "RawSample", "SampleProcessor", "collate", "decode_image", "identity"]

@dataclass
class RawSample:
    """A sample as stored: undecoded image payload, label as annotated, and a key naming it in reports.

    Attributes:
        image: encoded image bytes, an ``(H, W, 3)`` uint8 RGB array, a PIL image, or ``None`` when the image
            file is missing.
        label: the label exactly as stored.
        key: path or index of the sample, for reports and failure lists.
    """

    image: Any
    label: str
    key: str


@dataclass
class Batch:
    """A training batch.

    Attributes:
        images: ``(B, 3, H, W)`` images as the processor's ``preprocess`` made them: float32 normalized with the
            model's mean/std (:class:`~str_distill.preprocess.Preprocessor`), or uint8 before normalization
            (``Preprocessor.to_uint8``, what ``str-distill train`` uses; the trainer normalizes on the device).
        labels: ``B`` labels normalized to the model's charset (non-empty, at most ``max_label_length`` long).
        index: global batch index in the stream (equals the optimizer step that consumes it).
        bad: samples rejected while this batch was being made.
        sources: how many samples of the batch came from each source.
        targets: ``(B, L + 2)`` attention-decoder targets (:meth:`Tokenizer.encode`), made in the worker so that
            the training process does not spend time on them; ``None`` if not precomputed.
        ctc_targets, ctc_lengths: ``(B, L)`` and ``(B,)`` CTC targets (:meth:`Tokenizer.encode_ctc`), or ``None``.
    """

    images: torch.Tensor
    labels: list[str]
    index: int = 0
    bad: BadSampleReport = field(default_factory=BadSampleReport)
    sources: dict[str, int] = field(default_factory=dict)
    targets: torch.Tensor | None = None
    ctc_targets: torch.Tensor | None = None
    ctc_lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)``."""
        self.images = self.images.pin_memory()
        for name in ("targets", "ctc_targets", "ctc_lengths"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.pin_memory())
        return self


def identity(x: Any) -> Any:
    """``collate_fn`` for streams that already yield :class:`Batch` objects (picklable, unlike a lambda)."""
    return x


def decode_image(payload: Any, name: str = "image") -> Image.Image:
    """Decode a payload to an RGB PIL image exactly as inference does (:func:`str_distill.preprocess.load_image`:
    EXIF orientation applied, transparency composited on white, 16-bit scaled to 8 bits).

    Args:
        payload: encoded bytes, a path, an ``(H, W, 3)`` uint8 array or a PIL image.
        name: how errors refer to the sample.

    Raises:
        ValueError: (:class:`~str_distill.preprocess.InputError`) if it cannot be decoded; the message names it.
    """
    from ..preprocess import load_image

    return load_image(payload, name)


class SampleProcessor:
    """Checks a label, decodes and augments the image, and preprocesses it for the model.

    Args:
        tokenizer: the model's tokenizer (charset and max label length).
        preprocess: ``PIL RGB image -> (3, H, W) tensor``: :class:`str_distill.preprocess.Preprocessor` (float32,
            normalized) or its ``to_uint8`` (normalized later, on the device), so that training sees exactly what
            inference sees.
        augmenter: applied to sources that ask for augmentation.
        unknown: ``"skip"`` rejects a label with characters outside the charset (``out_of_charset``);
            ``"strip"`` removes those characters, keeps the sample and counts it as ``stripped_chars``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        preprocess: Callable[[Image.Image], torch.Tensor],
        augmenter: Augmenter | None = None,
        unknown: Literal["skip", "strip"] = "skip",
    ) -> None:
        if unknown not in ("skip", "strip"):
            raise ValueError(f"unknown must be 'skip' or 'strip', got {unknown!r}")
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.augmenter = augmenter
        self.unknown = unknown

    def check_label(self, label: str, source: str, key: str, report: BadSampleReport) -> str | None:
        """The label normalized to the charset, or ``None`` (recorded in ``report``) if it is unusable."""
        tok = self.tokenizer
        text = label.strip()
        bad = tok.unknown_chars(text)
        if bad:
            if self.unknown == "skip":
                report.add(source, "out_of_charset", key, f"label {label!r}: {''.join(sorted(set(bad)))!r}")
                return None
            report.add(source, "stripped_chars", key, f"label {label!r}: {''.join(sorted(set(bad)))!r}")
        norm = tok.normalize(text)
        if not norm:
            report.add(source, "empty_label", key, f"label {label!r}")
            return None
        if len(norm) > tok.max_length:
            report.add(source, "too_long", key, f"label {label!r} ({len(norm)} > {tok.max_length})")
            return None
        return norm

    def __call__(
        self,
        raw: RawSample,
        source: str,
        report: BadSampleReport,
        rng: np.random.Generator | None = None,
        augment: bool = False,
    ) -> tuple[torch.Tensor, str] | None:
        """Process one sample.

        Returns:
            ``(image (3, H, W), normalized label)``, or ``None`` when the sample was rejected (and recorded).
        """
        from PIL import Image

        report.add_seen(source)
        label = self.check_label(raw.label, source, raw.key, report)
        if label is None:
            return None
        if raw.image is None:
            report.add(source, "missing_image", raw.key)
            return None
        try:
            img = decode_image(raw.image, raw.key)
        except ValueError as e:
            report.add(source, "undecodable_image", raw.key, str(e).removeprefix(f"{raw.key}: "))
            return None
        if augment and self.augmenter is not None:
            arr = self.augmenter(np.asarray(img), rng if rng is not None else np.random.default_rng())
            img = Image.fromarray(arr)
        return self.preprocess(img), label


def collate(
    samples: list[tuple[torch.Tensor, str]],
    index: int = 0,
    bad: BadSampleReport | None = None,
    sources: dict[str, int] | None = None,
) -> Batch:
    """Stack processed samples into a :class:`Batch`."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    images = torch.stack([s[0] for s in samples])
    report = bad if bad is not None else BadSampleReport()
    return Batch(images, [s[1] for s in samples], index, report, dict(sources or {}))
