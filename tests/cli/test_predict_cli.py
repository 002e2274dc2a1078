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
    assert out[0] == "path\ttext\tconfidence\terror" and len(out) == 2
    assert out[1].startswith(str(photos / "b.png") + "\t")
    assert out[1].count("\t") == 3 and out[1].endswith("\t")  # an empty error field


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


def test_decode_workers_keep_the_output(photos: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    outs = []
    for workers in ("0", "3"):
        argv = ["predict", str(photos), "-r", "--model", str(tiny_model_dir), "--batch-size", "2",
                "--decode-workers", workers]
        assert run_cli(argv) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and len(lines(outs[0])) == 4


def test_unreadable_files_are_rows_in_json_and_tsv(photos: Path, tiny_model_dir: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    inputs = [str(photos / "a.jpg"), str(photos / "missing.png"), str(photos / "notes.txt")]
    assert run_cli(["predict", *inputs, "--json", "--model", str(tiny_model_dir)]) == 1
    captured = capsys.readouterr()
    rows = [json.loads(x) for x in lines(captured.out)]
    assert [r["path"] for r in rows] == inputs
    assert set(rows[0]) == {"path", "text", "confidence"}
    assert rows[1] == {"path": inputs[1], "text": None, "confidence": None, "error": "no such file"}
    assert rows[2]["error"].startswith("not an image") and rows[2]["text"] is None
    assert len(lines(captured.err)) == 2  # still reported on stderr too
    assert run_cli(["predict", *inputs, "--tsv", "--model", str(tiny_model_dir)]) == 1
    out = [x.split("\t") for x in lines(capsys.readouterr().out)][1:]
    assert [r[0] for r in out] == inputs and out[1] == [inputs[1], "", "", "no such file"] and out[0][3] == ""


@pytest.mark.parametrize("fmt", ["out.jsonl", "out.tsv"])
def test_output_file_and_resume(photos: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture,
                                fmt: str) -> None:
    out = photos.parent / fmt
    missing = str(photos / "missing.png")
    first = [str(photos / "a.jpg"), missing]
    everything = [*first, str(photos / "b.png"), str(photos / "C.PNG")]
    base = ["--model", str(tiny_model_dir), "-o", str(out), "--batch-size", "1"]
    assert run_cli(["predict", *first, *base]) == 1
    assert capsys.readouterr().out == ""  # rows go to the file
    before = out.read_text()
    assert run_cli(["predict", *everything, *base]) == 2  # an existing file is never overwritten or appended to
    assert "--resume" in capsys.readouterr().err and out.read_text() == before
    with open(out, "a") as f:
        f.write('{"path": "cut short by a kil' if fmt.endswith("jsonl") else "cut\tsho")  # the run died mid-line
    assert run_cli(["predict", *everything, *base, "--resume"]) == 1  # the old error row still counts
    assert "2 paths already" in capsys.readouterr().err
    text = out.read_text().splitlines()
    if fmt.endswith("jsonl"):
        paths = [json.loads(x)["path"] for x in text]
    else:
        assert text[0] == "path\ttext\tconfidence\terror" and text.count(text[0]) == 1
        paths = [x.split("\t")[0] for x in text[1:]]
    assert paths == everything  # each path once, in order; the cut line is gone
    assert run_cli(["predict", *everything, *base, "--resume"]) == 1 and out.read_text().splitlines() == text
    capsys.readouterr()
    assert run_cli(["predict", str(photos / "b.png"), "--resume", "--model", str(tiny_model_dir)]) == 2
    assert "--resume needs --output" in capsys.readouterr().err


def test_tsv_escaping_round_trips() -> None:
    for s in ["plain", "tab\there", "new\nline", "back\\slash\\t", "cr\r", ""]:
        assert predict_cli._unescape(predict_cli._escape(s)) == s


def test_missing_onnxruntime_is_one_line_and_exit_2(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    model = tmp_path / "default.onnx"
    model.write_bytes(b"not read: onnxruntime is missing first")
    assert run_cli(["predict", str(photos / "b.png"), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert lines(err) == [err.strip()] and "Traceback" not in err
    assert err.startswith("error: cannot load model") and 'pip install "str-distill[onnxruntime]"' in err


def test_progress_logs_lines_when_not_a_terminal() -> None:
    from str_distill.cli.progress import Progress

    buf = io.StringIO()  # not a terminal: log lines, not a bar
    with Progress("predict", total=4, unit="img", interval=0.0, file=buf) as bar:
        for _ in range(4):
            bar.update()
    out = lines(buf.getvalue())
    assert len(out) == 5 and out[0].startswith("predict: running, 1/4 img (25 %)") and "\r" not in buf.getvalue()
    assert out[-1].startswith("predict: done, 4/4 img (100 %)")
    quiet = io.StringIO()
    with Progress("predict", unit="img", file=quiet) as bar:  # a short job prints nothing (first line after 30 s)
        bar.update(10)
    with Progress("predict", unit="img", mode=False, interval=0.0, file=quiet) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""


def test_predict_warns_about_a_whole_photo(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (700, 1000, 3), dtype=np.uint8)).save(tmp_path / "street.png")
    assert run_cli(["predict", str(tmp_path / "street.png"), "--json"]) == 0  # read (exit 0), with a warning
    captured = capsys.readouterr()
    row = json.loads(captured.out)
    assert "looks like a whole photo" in row["warning"]
    assert captured.err.startswith(f"warning: input 0 ({tmp_path / 'street.png'}): 1000x700 looks like a whole photo")
    assert "str-distill read" in captured.err


def test_heartbeat_speaks_when_the_log_is_silent() -> None:
    import time

    from str_distill.cli.progress import Heartbeat

    buf = io.StringIO()
    with Heartbeat("train", interval=0.05, file=buf) as hb:
        hb.log("step 0")
        time.sleep(0.3)  # the thread wakes every min(5 s, interval) = 0.05 s
    out = lines(buf.getvalue())
    assert out[0] == "step 0" and any(x.startswith("train: still running") for x in out[1:])
    quiet = io.StringIO()
    with Heartbeat("train", interval=0.05, enabled=False, file=quiet) as hb:
        hb.log("step 0")
        time.sleep(0.2)
    assert lines(quiet.getvalue()) == ["step 0"]
