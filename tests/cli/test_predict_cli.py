"""``str-distill predict`` and ``str-distill models``."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from str_distill import Recognizer
from str_distill.cli import models as models_cli
from str_distill.cli import predict as predict_cli


def run_cli(argv: list[str]) -> int:
    """Parse with only the commands under test (the full dispatcher needs every command module)."""
    parser = argparse.ArgumentParser(prog="str-distill")
    sub = parser.add_subparsers()
    predict_cli.register(sub)
    models_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def photos(tmp_path: Path, render) -> Path:  # noqa: ANN001
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(render("beta", seed=1)).save(d / "b.png")
    Image.fromarray(render("alpha", seed=2)).save(d / "a.jpg", quality=95)
    Image.fromarray(render("gamma", seed=3)).save(d / "C.PNG")
    Image.fromarray(render("deep", seed=4)).save(d / "sub" / "d.png")
    (d / "notes.txt").write_text("not an image")
    return d


def lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x]


def test_directory_plain_output_matches_library(photos: Path, tiny_model_dir: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    assert run_cli(["predict", str(photos), "--model", str(tiny_model_dir), "--device", "cpu"]) == 0
    out = [x.split("\t") for x in lines(capsys.readouterr().out)]
    expected = [str(photos / n) for n in ("C.PNG", "a.jpg", "b.png")]  # sorted, images only, no subfolder
    assert [r[0] for r in out] == expected
    preds = Recognizer.from_pretrained(tiny_model_dir, device="cpu").predict(expected)
    assert [r[1] for r in out] == [p.text for p in preds]
    assert [float(r[2]) for r in out] == pytest.approx([p.confidence for p in preds], abs=1e-4)


def test_recursive_json_and_tsv(photos: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(["predict", str(photos), "-r", "--json", "--model", str(tiny_model_dir), "--batch-size", "2"]) == 0
    rows = [json.loads(x) for x in lines(capsys.readouterr().out)]
    assert [Path(r["path"]).name for r in rows] == ["C.PNG", "a.jpg", "b.png", "d.png"]
    assert all(set(r) == {"path", "text", "confidence"} and 0 <= r["confidence"] <= 1 for r in rows)
    assert run_cli(["predict", str(photos / "b.png"), "--tsv", "--model", str(tiny_model_dir)]) == 0
    out = lines(capsys.readouterr().out)
    assert out[0] == "path\ttext\tconfidence" and len(out) == 2 and out[1].startswith(str(photos / "b.png") + "\t")


def test_globs_stdin_and_order(photos: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{photos / 'sub' / 'd.png'}\n\n{photos / 'a.jpg'}\n"))
    argv = ["predict", str(photos / "b.png"), "-", str(photos / "*.PNG"), "--model", str(tiny_model_dir)]
    assert run_cli(argv) == 0
    names = [Path(x.split("\t")[0]).name for x in lines(capsys.readouterr().out)]
    assert names == ["b.png", "d.png", "a.jpg", "C.PNG"]


def test_unreadable_files_reported_others_still_read(photos: Path, tiny_model_dir: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    argv = ["predict", str(photos / "a.jpg"), str(photos / "missing.png"), str(photos / "broken.png"),
            str(photos / "notes.txt"), str(photos / "b.png"), "--model", str(tiny_model_dir), "--batch-size", "2"]
    assert run_cli(argv) == 1
    captured = capsys.readouterr()
    assert [Path(x.split("\t")[0]).name for x in lines(captured.out)] == ["a.jpg", "b.png"]
    err = lines(captured.err)
    assert err[0] == f"error: input 1 ({photos / 'missing.png'}): no such file"
    assert err[1].startswith(f"error: input 2 ({photos / 'broken.png'}): ")
    assert err[2].startswith(f"error: input 3 ({photos / 'notes.txt'}): not an image")


def test_empty_directory_and_unmatched_glob(tmp_path: Path, tiny_model_dir: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert run_cli(["predict", str(tmp_path / "empty"), str(tmp_path / "*.webp"), "--model", str(tiny_model_dir)]) == 1
    err = capsys.readouterr().err
    assert "directory has no image files" in err and "no file matches this pattern" in err


@pytest.mark.parametrize("opts", [["--decoding", "ctc"], ["--mode", "parallel", "--refine-iters", "2"],
                                  ["--keep-aspect-ratio", "--rotate-tall"], ["--dtype", "bfloat16"]])
def test_options(photos: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture, opts: list[str]) -> None:
    assert run_cli(["predict", str(photos), "--model", str(tiny_model_dir), "--device", "cpu", *opts]) == 0
    assert len(lines(capsys.readouterr().out)) == 3


def test_model_that_cannot_load(photos: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture,
                                no_network: list[str]) -> None:
    assert run_cli(["predict", str(photos), "--local-files-only", "--model", "siga-vit-s"]) == 2  # untrained
    err = capsys.readouterr().err
    assert "cannot load model 'siga-vit-s'" in err and "not yet trained" in err
    assert run_cli(["predict", str(photos), "--model", str(tiny_model_dir), "--device", "cpu",
                    "--dtype", "float16"]) == 2
    assert "bfloat16" in capsys.readouterr().err


def test_models_command(capsys: pytest.CaptureFixture, no_network: list[str]) -> None:
    assert run_cli(["models"]) == 0
    out = capsys.readouterr().out
    row = next(x for x in out.splitlines() if x.startswith("siga-vit-s "))
    assert "not yet trained" in row and "30.1M" in row
    assert "siga-vit-t" in out and "no published weights" in out
    assert run_cli(["models", "siga-vit-s", "--json"]) == 0
    (rec,) = [json.loads(x) for x in lines(capsys.readouterr().out)]
    assert rec["name"] == "siga-vit-s" and rec["status"] == "not yet trained" and rec["size_bytes"] is None
    assert run_cli(["models", "nothing*"]) == 1


def test_models_command_lists_bundled_weights(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    from str_distill.hub import manifest

    monkeypatch.setattr(manifest, "MANIFEST_PATH", tmp_path / "m.json")
    monkeypatch.setattr(manifest, "BUNDLED_DIR", tmp_path / "w")
    rec = manifest.make_record("tiny", tiny_model_dir, bundle=True, metrics={"IIIT5k": {"accuracy": 12.5}})
    manifest.update_record("tiny", rec)
    assert run_cli(["models", "tiny"]) == 0
    row = lines(capsys.readouterr().out)[1]
    assert "bundled" in row and "IIIT5k 12.50" in row and "MiB" in row


def test_full_dispatcher_when_available(photos: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    try:
        from str_distill.cli import build_parser

        build_parser()
    except ImportError as e:
        pytest.skip(f"not every command module exists yet: {e}")
    from str_distill.cli import main

    assert main(["predict", str(photos / "b.png"), "--model", str(tiny_model_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"].endswith("b.png")


def test_expand_inputs_is_lazy(tmp_path: Path) -> None:
    src = io.StringIO("x.png\ny.png\n")
    gen = predict_cli.expand_inputs(["-"], stdin=src)
    assert next(gen) == "x.png"
    assert src.readline() == "y.png\n"  # the second line was not read ahead
