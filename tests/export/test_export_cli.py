"""``str-distill export``: writes a checked file, reports bad arguments with exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from str_distill.cli import main
from str_distill.hub.serialization import save_pretrained
from str_distill.models import PPOCRRecognizer

pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs the onnxruntime extra")

from str_distill.backends.onnx_reader import ONNXReader  # noqa: E402


@pytest.fixture(scope="module")
def ppocr_dir(tiny_ppocr: PPOCRRecognizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_pretrained(tiny_ppocr, tmp_path_factory.mktemp("ppocr"))


def test_export_writes_and_checks(ppocr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", str(ppocr_dir), "--format", "onnx", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "texts identical" in text, text
    assert ONNXReader(out).info.arch == "ppocrv6-small"


def test_export_options(ppocr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "small.onnx"
    assert main(["export", str(ppocr_dir), "-o", str(out), "--charset", "0123456789", "--min-width", "32",
                 "--no-check"]) == 0
    info = ONNXReader(out).info
    assert info.charset == "0123456789" and info.preprocessing["min_width"] == 32
    assert "check vs torch" not in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["-o", "m.txt"], "must end with .onnx"),
    (["-o", "m.onnx", "--charset", "€"], "--charset"),
    (["-o", "m.onnx", "--opset", "11"], "opset"),
])
def test_bad_arguments_exit_2(ppocr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                              message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(ppocr_dir), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_unknown_format_and_missing_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["export", "x", "--format", "tflite", "-o", "m.onnx"])
    assert e.value.code == 2 and "usage: str-distill export" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "error:" in capsys.readouterr().err
