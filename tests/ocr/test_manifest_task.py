"""Manifest records say what task their weights serve; detector records copy pre- and post-processing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from str_distill.hub.manifest import TASKS, load_manifest, make_record, update_record, validate_manifest
from str_distill.hub.serialization import save_pretrained
from str_distill.models.ppocr_det import PPOCRDetConfig, PPOCRDetector

TOP = Path(__file__).resolve().parents[2] / "weights_manifest.json"


def test_shipped_records_have_a_known_task() -> None:
    records = load_manifest(TOP)
    assert {r.get("task", "recognition") for r in records.values()} <= set(TASKS)
    det = {n for n, r in records.items() if r.get("task") == "detection"}
    assert "ppocrv6-det-small" in det
    for name in det:
        rec = records[name]
        assert rec["charset"] is None and rec["attribution"] and rec["source"]["sha256"]
        cfg = PPOCRDetConfig.from_dict(rec["config"])
        assert rec["preprocessing"] == cfg.detect_config()["preprocessing"]
        assert rec["postprocessing"] == cfg.detect_config()["postprocessing"]
    assert json.loads(TOP.read_text())["default"] not in det  # the default stays a recognizer


def test_detector_record_round_trip_and_validation(tmp_path: Path) -> None:
    cfg = PPOCRDetConfig(arch="ppocrv6-det-tiny", stem_channels=(8, 4), channels=(8, 8, 16, 16), neck_channels=16,
                         neck_kernel=3)
    src = save_pretrained(PPOCRDetector(cfg), tmp_path / "det")
    rec = make_record("ppocrv6-det-tiny.test", src, hf_repo_id="org/d", hf_revision="d" * 40)
    assert rec["task"] == "detection" and rec["charset"] is None
    assert rec["postprocessing"]["unclip_ratio"] == cfg.unclip_ratio
    path = tmp_path / "manifest.json"
    update_record("ppocrv6-det-tiny.test", rec, path)
    assert validate_manifest(path) == []
    for case, bad in {"task": {**rec, "task": "recognition"}, "unknown task": {**rec, "task": "layout"},
                      "post": {**rec, "postprocessing": {**rec["postprocessing"], "thresh": 0.9}},
                      "pre": {**rec, "preprocessing": {**rec["preprocessing"], "limit_side_len": 960}}}.items():
        p = tmp_path / f"{case}.json"
        update_record("x", bad, p)
        assert validate_manifest(p), case


def test_recognizer_names_refuse_detection_and_back(tmp_path: Path) -> None:
    from str_distill.ocr import OCR, TextDetector

    with pytest.raises(TypeError, match="not a text detector"):
        TextDetector.from_pretrained("ppocrv6-small", local_files_only=True)
    det = PPOCRDetector(PPOCRDetConfig(arch="ppocrv6-det-tiny", stem_channels=(8, 4), channels=(8, 8, 16, 16),
                                       neck_channels=16, neck_kernel=3))
    with pytest.raises(TypeError, match="is a text detector"):
        OCR.from_pretrained(det, det)


def test_recognizer_refuses_a_detector_with_a_clear_error() -> None:
    from str_distill import Recognizer

    det = PPOCRDetector(PPOCRDetConfig(arch="ppocrv6-det-tiny", stem_channels=(8, 4), channels=(8, 8, 16, 16),
                                       neck_channels=16, neck_kernel=3))
    with pytest.raises(ValueError, match="is a text detector, not a recognizer"):
        Recognizer(det, device="cpu")
