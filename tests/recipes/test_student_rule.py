"""The student's ship rule (``recipes/student/bundle.py``): the first student needs 80 % on IIIT5K, a later one must
beat the shipped one on the validation split and IIIT5K; a refusal says why."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("student_bundle", REPO / "recipes" / "student" / "bundle.py")
assert spec is not None and spec.loader is not None
bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bundle)


def test_first_student_needs_80_percent_on_iiit5k() -> None:
    assert bundle.ship_decision({"val/36": 10.0, "IIIT5K/36": 80.0}, None) == (True, [])
    ok, why = bundle.ship_decision({"val/36": 90.0, "IIIT5K/36": 79.99}, None)
    assert not ok and why == ["IIIT5K 79.99 % is below the first student's bar of 80 %"]


def test_a_later_student_must_beat_the_shipped_one_on_both() -> None:
    shipped = {"val/36": 70.0, "IIIT5K/36": 90.0}
    assert bundle.ship_decision({"val/36": 70.1, "IIIT5K/36": 90.1}, shipped) == (True, [])
    ok, why = bundle.ship_decision({"val/36": 70.0, "IIIT5K/36": 95.0}, shipped)
    assert not ok and len(why) == 1 and "validation 70.00 %" in why[0]  # equal is not better
    ok, why = bundle.ship_decision({"val/36": 60.0, "IIIT5K/36": 89.0}, shipped)
    assert not ok and len(why) == 2


def test_speed_rows_are_the_students_only(tmp_path: Path) -> None:
    rows = [{"engine": "torch-bf16", "threads": 1, "batch": 32, "img_s": 200.123, "model": "siga-x.tag", "extra": 1},
            {"engine": "onnxruntime", "threads": 1, "batch": 32, "img_s": 150.0, "model": "/tmp/siga-x.tag.onnx"},
            {"engine": "rapidocr", "threads": 1, "batch": 32, "img_s": 30.0, "model": "PP-OCRv6 small"}]
    f = tmp_path / "peers.json"
    f.write_text(json.dumps(rows))
    got = bundle.speed_metrics(f, "siga-x.tag", "cmd")
    assert got["command"] == "cmd" and [r["engine"] for r in got["rows"]] == ["torch-bf16", "onnxruntime"]
    assert got["rows"][0] == {"engine": "torch-bf16", "threads": 1, "batch": 32, "img_s": 200.1}
