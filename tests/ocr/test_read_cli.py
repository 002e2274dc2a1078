"""``str-distill read``: formats, --draw, --output/--resume, '-' on stdin, unreadable inputs, bad arguments."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from str_distill.cli import main
from tests.ocr.test_pipeline import render


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from str_distill.hub.manifest import get_record

    if get_record("ppocrv6-det-small") is None:
        pytest.skip("the detector is not bundled in this checkout")
    d = tmp_path_factory.mktemp("photos")
    img, _ = render([("HELLO", (40, 40))], size=(360, 160))
    img.save(d / "a.png")
    img2, _ = render([("OPEN DAILY", (30, 30)), ("2024", (60, 120))], size=(420, 220))
    img2.save(d / "b.png")
    Image.new("RGB", (200, 120), (210, 210, 210)).save(d / "c.png")  # no text
    return d


def test_plain_tsv_json(photos: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["read", str(photos), "--threads", "1"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(Path(r[0]).name, r[1]) for r in rows] == [("a.png", "HELLO"), ("b.png", "OPEN DAILY"), ("b.png", "2024"),
                                                        ("c.png", "")]
    assert len(rows[0][3].split()) == 4 and float(rows[0][2]) > 0.5
    assert main(["read", str(photos / "b.png"), "--tsv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "path\tindex\ttext\tconfidence\tpolygon\terror"
    assert [r.split("\t")[1] for r in out[1:]] == ["0", "1"]
    assert main(["read", str(photos / "a.png"), str(photos / "c.png"), "--json"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(o["results"]) for o in objs] == [1, 0] and objs[0]["error"] is None
    r = objs[0]["results"][0]
    assert r["text"] == "HELLO" and len(r["polygon"]) == 4 and len(r["char_probs"]) == 5


def test_draw_and_stdin(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{photos / 'a.png'}\n\n{photos / 'b.png'}\n"))
    assert main(["read", "-", "--draw", str(tmp_path / "drawn")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    drawn = sorted(p.name for p in (tmp_path / "drawn").iterdir())
    assert drawn == ["a.png", "b.png"]
    import numpy as np

    with Image.open(tmp_path / "drawn" / "a.png") as im, Image.open(photos / "a.png") as orig:
        assert im.size == orig.size == (360, 160)
        changed = np.any(np.asarray(im.convert("RGB")) != np.asarray(orig.convert("RGB")), axis=2)
    assert 0.01 < changed.mean() < 0.5  # the box outline and its label, not the whole image


def test_output_resume_and_errors(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "res.jsonl"
    assert main(["read", str(photos / "a.png"), str(bad), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bad.png" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["a.png", "bad.png"] and rows[1]["error"]
    assert main(["read", str(photos / "a.png"), "--output", str(out)]) == 2  # exists without --resume
    capsys.readouterr()
    assert main(["read", str(photos / "a.png"), str(photos / "c.png"), "--output", str(out), "--resume"]) == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["a.png", "bad.png", "c.png"]  # a.png not read again


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--min-confidence", "2"], ["--resume"],
                                  ["--detector", "no-such-detector"], ["--detector", "ppocrv6-small"]])
def test_bad_arguments_exit_2(photos: Path, capsys: pytest.CaptureFixture, argv: list[str]) -> None:
    assert main(["read", str(photos / "a.png"), *argv]) == 2
    assert "error" in capsys.readouterr().err
