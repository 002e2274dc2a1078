"""``str_distill.training.finetune``: the Python form of ``str-distill train``, with the same defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_trainer import make_words

from str_distill.cli import build_parser
from str_distill.training import TrainSpec, finetune


def test_cli_defaults_are_the_spec_defaults() -> None:
    args = build_parser().parse_args(["train", "--data", "words/", "--model-arg", "depth=2", "--model-arg", "x=a"])
    assert TrainSpec.from_args(args) == TrainSpec(data=["words/"], model_args={"depth": 2, "x": "a"})
    for f in dataclasses.fields(TrainSpec):
        if f.name not in ("data", "model_args"):
            assert hasattr(args, f.name), f"TrainSpec.{f.name} has no `str-distill train` flag"


def test_spec_refuses_a_string_as_data() -> None:
    with pytest.raises(TypeError, match="list of sources"):
        TrainSpec(data="words/")  # type: ignore[arg-type]


def test_finetune_from_python_reports_before_and_after(tmp_path: Path) -> None:
    from str_distill.hub.serialization import save_pretrained
    from tests.conftest import make_tiny_model

    root = make_words(tmp_path / "words")
    base = save_pretrained(make_tiny_model(seed=0, charset="36"), tmp_path / "base")
    spec = TrainSpec(data=[str(root)], init=base, val_split=0.3, teacher="init", steps=2, batch_size=4, workers=0,
                     progress="none", output=str(tmp_path / "run"), val_every=0, save_every=0)
    lines: list[str] = []
    summary = finetune(spec, log=lines.append)
    assert Path(summary["final"]).is_dir() and summary["step"] == 2
    assert 0 <= summary["val_before"]["total"]["accuracy"] <= 1 and summary["val"]["total"]["count"] > 0
    assert any("teacher" in m.lower() for m in lines)
    with pytest.raises(ValueError, match="needs --init"):
        finetune(dataclasses.replace(spec, init=None, steps=1, teacher="init"))
