"""Whole-image OCR: text detection (PP-OCRv6 DB detectors) + recognition of each detected line.

See :class:`OCR` (``OCR.from_pretrained()``), :class:`TextDetector` and :mod:`.postprocess`.
"""

try:
    import cv2  # noqa: F401
except ImportError:  # pragma: no cover - depends on the installation
    raise ImportError('whole-image reading needs OpenCV: pip install "str-distill[ocr]"') from None

from .pipeline import DEFAULT_DETECTOR, DEFAULT_RECOGNIZER, OCR, Detection, OCRResult, TextDetector, crop_box
from .postprocess import DBParams, db_boxes, reading_order

__all__ = ["DEFAULT_DETECTOR", "DEFAULT_RECOGNIZER", "OCR", "DBParams", "Detection", "OCRResult", "TextDetector",
           "crop_box", "db_boxes", "reading_order"]
