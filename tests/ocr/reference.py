"""RapidOCR 3.10.0's detection stage as the reference the port is checked against (tests and benchmarks).

The reference runs RapidOCR's own code (its resize, normalization, DB post-processing and box sorting) on the
original ONNX file it ships; only the onnxruntime session is made with ``session.set_denormal_as_zero``, which makes
the file's 255,958 subnormal weights compute as zeros: 3x faster on a CPU, the same boxes (checked on all 100
SVT_train_scenes photos by ``benchmarks/ocr_vs_peers.py --check-ftz``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def data_root() -> Path:
    return Path(os.environ.get("STR_DISTILL_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def svt_scenes(root: Path | None = None) -> list[dict[str, Any]]:
    """The SVT_train_scenes records (``image`` made absolute), or ``[]`` when the set is not there."""
    base = (root or data_root()) / "SVT_train_scenes"
    f = base / "scenes.jsonl"
    if not f.is_file():
        return []
    out = []
    for line in f.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            d["image"] = str(base / d["image"])
            out.append(d)
    return out


def rapidocr_detector(threads: int = 1, ftz: bool = True) -> Any:
    """A RapidOCR engine that only detects (``engine(bgr_image, use_cls=False, use_rec=False).boxes``)."""
    import onnxruntime as ort
    from rapidocr import RapidOCR

    eng = RapidOCR(params={"Global.use_cls": False, "Global.use_rec": False, "Global.log_level": "critical",
                           "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                           "EngineConfig.onnxruntime.inter_op_num_threads": 1})
    if ftz:
        from str_distill.hub.convert_ppocr_det import find_detector_onnx

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
        path = find_detector_onnx("ppocrv6-det-small", "rapidocr")
        eng._load_det_model().session.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return eng


def rapidocr_boxes(engine: Any, bgr: np.ndarray) -> np.ndarray:
    out = engine(bgr, use_det=True, use_cls=False, use_rec=False)
    return np.zeros((0, 4, 2), np.float32) if out.boxes is None else np.asarray(out.boxes, np.float32)
