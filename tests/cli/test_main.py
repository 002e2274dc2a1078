"""The ``str-distill`` dispatcher: ``python -m str_distill``, per-command usage errors, the train extra, eval files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from str_distill import __version__
from str_distill.cli import TRAIN_COMMANDS, main
from str_distill.cli import eval as eval_cli

HINT = 'pip install "str-distill[train]"'


def make_set(root: Path, n: int, render) -> Path:  # noqa: ANN001
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        Image.fromarray(render(f"w{i}", size=(32, 80), seed=i)).save(root / "images" / f"{i}.png")
        lines.append(f"images/{i}.png\tw{i}")
    (root / "labels.tsv").write_text("\n".join(lines) + "\n")
    return root


# ------------------------------------------------------------------------------------------ python -m str_distill
def test_python_dash_m_runs_the_command_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "str_distill", "--version"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert (res.returncode, res.stdout.strip()) == (0, f"str-distill {__version__}"), res.stderr
    res = subprocess.run([sys.executable, "-m", "str_distill", "eval", "--data", "x", "--bogus"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 2 and res.stderr.startswith("usage: str-distill eval "), res.stderr
    assert "str-distill eval: error: unrecognized arguments: --bogus" in res.stderr


# ---------------------------------------------------------------------------------------------- usage per command
@pytest.mark.parametrize("argv, usage", [
    (["eval", "--model", "m", "--data", "d", "--bogus", "1"], "usage: str-distill eval "),
    (["predict", "a.png", "--bogus"], "usage: str-distill predict "),
    (["data", "convert", "folder", "-o", "out", "--bogus"], "usage: str-distill data convert "),
    (["synth", "sheet", "--bogus"], "usage: str-distill synth sheet "),
    (["models", "--bogus"], "usage: str-distill models "),
])
def test_unknown_arguments_show_the_sub_command_usage(argv: list[str], usage: str,
                                                      capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith(usage), err
    assert f"{usage.removeprefix('usage: ').strip()}: error: unrecognized arguments: " in err
    assert "--bogus" in err and "COMMAND ..." not in err  # not the top-level usage


def test_missing_required_argument_shows_the_sub_command_usage(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["data", "convert", "folder"])
    err = capsys.readouterr().err
    assert err.startswith("usage: str-distill data convert ") and "-o/--output" in err


# -------------------------------------------------------------------------------------------------- train extra
def fast_argv(command: str, tmp_path: Path) -> list[str]:
    """Arguments that would end each command quickly even if the extra check let it run."""
    return {
        "synth": ["synth", "sheet", "-o", str(tmp_path / "sheet.png"), "--n", "1"],
        "data": ["data", "check", str(tmp_path / "none")],
        "train": ["train", "--data", str(tmp_path / "none"), "--steps", "1", "-o", str(tmp_path / "run")],
        "pretrain": ["pretrain", "--data", str(tmp_path / "none"), "-o", str(tmp_path / "pre")],
    }[command]


@pytest.mark.parametrize("command", sorted(TRAIN_COMMANDS))
@pytest.mark.parametrize("module", ["cv2", "lmdb", "fontTools"])
def test_train_commands_without_the_extra_say_how_to_install_it(command: str, module: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` now raises ModuleNotFoundError
    assert main(fast_argv(command, tmp_path)) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 1, captured.err
    assert err[0].startswith(f"error: str-distill {command} needs the train extra (missing: {module} (")
    assert err[0].endswith(HINT)
    assert not any(tmp_path.iterdir())  # nothing ran


def test_missing_extra_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    code = ("import runpy, sys; sys.modules['cv2'] = None; "
            f"sys.argv = ['str_distill', 'synth', 'sheet', '-o', {str(tmp_path / 's.png')!r}, '--n', '1']; "
            "runpy.run_module('str_distill', run_name='__main__', alter_sys=True)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"error: str-distill synth needs the train extra (missing: cv2 (opencv-python-headless)); install it: {HINT}"]


def test_extra_module_missing_deep_inside_any_command(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    def needs_cv2(args: object) -> int:
        try:
            import cv2  # noqa: F401
        except ImportError as e:
            raise RuntimeError("wrapped") from e
        return 0

    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.setattr(eval_cli, "run", needs_cv2)
    assert main(["eval", "--model", "m", "--data", "d"]) == 2
    assert capsys.readouterr().err.strip().endswith(HINT)

    def other_import(args: object) -> int:
        import str_distill_no_such_module  # type: ignore[import-not-found]  # noqa: F401

        return 0

    monkeypatch.setattr(eval_cli, "run", other_import)
    with pytest.raises(ModuleNotFoundError, match="str_distill_no_such_module"):  # not ours to explain
        main(["eval", "--model", "m", "--data", "d"])


# ------------------------------------------------------------------------------------------------------------ eval
def test_eval_limit_and_no_failures_file_unless_asked(tmp_path: Path, tiny_model_dir: Path, render,  # noqa: ANN001
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    data = make_set(tmp_path / "words", 5, render)
    work, out = tmp_path / "cwd", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    monkeypatch.chdir(work)
    common = ["eval", "--model", str(tiny_model_dir), "--data", str(data), "--device", "cpu", "--no-progress"]
    assert main([*common, "--limit", "3", "--json", str(out / "res.json")]) == 0
    assert json.loads((out / "res.json").read_text())["sets"][0]["count"] == 3  # --limit = --max-samples
    assert list(work.iterdir()) == []  # no failures file by default
    assert "failures written" not in capsys.readouterr().out
    assert main([*common, "--max-samples", "2", "--failures", str(out / "fail.tsv")]) == 0
    assert len((out / "fail.tsv").read_text().splitlines()) == 3  # header + 2 (the random model reads nothing)
    assert list(work.iterdir()) == []
