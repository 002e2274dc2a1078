"""Boxes of the bundled small detector against RapidOCR 3.10.0's detection stage on real street photos.

Every third photo of ``SVT_train_scenes`` (34 of 100; ``$STR_DISTILL_DATA``, default ``../shared/data``), one
thread: about 40 s (measured as CPU time per photo: 0.60 s for our detector, 0.47 s for RapidOCR's with its
subnormal weights computed as zeros). The full set is measured by ``recipes/ppocrv6_det/bundle.py`` (100 of 100
photos agree). Agreement: the same number of boxes, and a one-to-one matching with every pair at IoU >= 0.9, on at
least 95 % of the photos.
"""

from __future__ import annotations

import pytest

pytest.importorskip("rapidocr", reason="RapidOCR is the reference: pip install rapidocr==3.10.0")
pytest.importorskip("onnxruntime")

import cv2  # noqa: E402
import torch  # noqa: E402

from str_distill.ocr.evaluate import box_agreement  # noqa: E402
from str_distill.ocr.pipeline import TextDetector  # noqa: E402
from tests.ocr.reference import data_root, rapidocr_boxes, rapidocr_detector, svt_scenes  # noqa: E402

pytestmark = pytest.mark.slow


def test_boxes_match_rapidocr_on_svt_photos() -> None:
    scenes = svt_scenes()
    if not scenes:
        pytest.skip(f"SVT_train_scenes not found under {data_root()}: set STR_DISTILL_DATA to the data folder")
    try:
        det = TextDetector.from_pretrained("ppocrv6-det-small", local_files_only=True)
    except Exception as e:
        pytest.skip(f"the bundled detector is not available: {e}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = rapidocr_detector(threads=1)
        subset = scenes[::3]
        bad = []
        for s in subset:
            bgr = cv2.imread(s["image"])
            ok, worst = box_agreement(det.detect_array(bgr[..., ::-1].copy()).boxes, rapidocr_boxes(ref, bgr))
            if not ok:
                bad.append((s["image"], round(worst, 3)))
    finally:
        torch.set_num_threads(threads)
    assert len(subset) - len(bad) >= 0.95 * len(subset), bad
