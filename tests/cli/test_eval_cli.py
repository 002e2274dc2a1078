"""``str-distill eval``, including ``--val-split`` (score only the carved validation samples)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from str_distill.cli import eval as eval_cli
from str_distill.data.compact import pack_sets
from str_distill.data.mix import split_validation


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="str-distill")
    eval_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def make_set(root: Path, n: int, render) -> Path:  # noqa: ANN001
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        Image.fromarray(render(f"w{i}", size=(32, 80), seed=i)).save(root / "images" / f"{i}.png")
        lines.append(f"images/{i}.png\tw{i}")
    (root / "labels.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_eval_val_split_scores_exactly_the_carved_samples(tmp_path: Path, tiny_model_dir: Path, render) -> None:  # noqa: ANN001
    data = make_set(tmp_path / "words", 40, render)
    out, fails = tmp_path / "res.json", tmp_path / "fail.tsv"
    rc = run_cli(["eval", "--model", str(tiny_model_dir), "--data", str(data), "--val-split", "0.1", "--seed", "3",
                  "--json", str(out), "--failures", str(fails), "--device", "cpu", "--no-progress"])
    assert rc == 0
    res = json.loads(out.read_text())
    (row,) = res["sets"]
    assert row["set"] == "words:val" and row["count"] == 4
    # the random tiny model reads nothing right: every scored sample is a failure, so the file names them all
    scored = {line.split("\t")[1] for line in fails.read_text().splitlines()[1:]}
    _, val = split_validation(list(range(40)), 0.1, 3)
    assert scored == {str(data / "images" / f"{i}.png") for i in val.indices}
    # the same samples `data pack --val-split 0.1 --seed 3` puts in val/
    packed = pack_sets([data], tmp_path / "packed", val_split=0.1, seed=3)
    assert packed.splits["val"].is_dir()
    names = [line.split("\t")[0] for line in (tmp_path / "packed" / "val" / "labels.tsv").read_text().splitlines()]
    assert sorted(int(Path(n).stem) for n in names) == sorted(val.indices)


def test_eval_missing_onnxruntime_is_one_line_and_exit_2(tmp_path: Path, render, monkeypatch,  # noqa: ANN001
                                                         capsys) -> None:  # noqa: ANN001
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    data = make_set(tmp_path / "words", 2, render)
    model = tmp_path / "default.onnx"
    model.write_bytes(b"not read")
    assert run_cli(["eval", "--model", str(model), "--data", str(data), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'pip install "str-distill[onnxruntime]"' in err
