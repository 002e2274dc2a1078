"""The evaluation protocol on hand-made cases, evaluate() with a scripted recognizer, and the Pillow plot."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from str_distill.training.evaluate import evaluate, open_eval_sets
from str_distill.training.metrics import WordMetrics, edit_distance, normalize_protocol
from str_distill.training.plot import nice_ticks, plot_curves, read_metrics


def test_protocol_filters() -> None:
    assert normalize_protocol("Hello, World!") == "helloworld"
    assert normalize_protocol("Hello, World!", "94") == "Hello,World!"
    assert normalize_protocol("Café-Déjà 42") == "cafedeja42"
    assert normalize_protocol("…!?") == ""
    with pytest.raises(ValueError):
        normalize_protocol("x", "62")  # type: ignore[arg-type]


@pytest.mark.parametrize(("a", "b", "d"), [("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3), ("hello", "helo", 1)])
def test_edit_distance(a: str, b: str, d: int) -> None:
    assert edit_distance(a, b) == d == edit_distance(b, a)


def test_word_metrics_hand_made() -> None:
    m = WordMetrics("36")
    assert m.update("HELLO", "hello") is True  # case-insensitive
    assert m.update("helo", "Hello!") is False  # 1 edit over max(4, 5)
    assert m.update("", "abc") is False  # empty prediction: NED 1
    assert m.update("anything", "!!!") is None  # filtered label empty: dropped
    assert (m.count, m.correct, m.dropped) == (3, 1, 1)
    assert m.accuracy == pytest.approx(1 / 3)
    assert m.one_minus_ned == pytest.approx(1 - (0 + 1 / 5 + 1) / 3)
    cased = WordMetrics("94")
    assert cased.update("HELLO", "hello") is False
    assert cased.update("it's", "it's") is True
    total = WordMetrics("36").merge(m).merge(WordMetrics("36"))
    assert total.count == 3 and total.correct == 1
    with pytest.raises(ValueError):
        m.merge(cased)


class ScriptedRecognizer:
    """Returns a fixed text per image bytes; raises-like results for unreadable payloads."""

    def __init__(self, answers: dict[bytes, str]) -> None:
        self.answers = answers
        self.calls: list[dict] = []

    def predict(self, images, batch_size=64, decoding="attention", mode="autoregressive", refine_iters=1,
                progress=False, errors="raise"):
        from str_distill.predictor import Prediction
        from str_distill.preprocess import InputError

        self.calls.append({"decoding": decoding, "mode": mode, "n": len(images)})
        out = []
        for i, x in enumerate(images):
            if x not in self.answers:
                out.append(InputError(f"input {i}", "cannot read"))
            else:
                import torch

                out.append(Prediction(self.answers[x], 0.5, torch.ones(len(self.answers[x]))))
        return out


def png(color: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 4), (color, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def test_evaluate_tables_failures_and_unreadable(tmp_path: Path) -> None:
    # set A: right, wrong (w0rld), dropped ("!!" filters to ""); set B: wrong (hello for Cat), unreadable
    data = {"A": [("Hello", "hello"), ("World", "w0rld"), ("!!", "x")], "B": [("Cat", "hello")]}
    answers = {}
    for k, (name, rows) in enumerate(data.items()):
        root = tmp_path / name
        root.mkdir()
        lines = []
        for i, (label, prediction) in enumerate(rows):
            payload = png(100 * k + 10 * i)
            (root / f"{i}.png").write_bytes(payload)
            answers[payload] = prediction
            lines.append(f"{i}.png\t{label}")
        (root / "labels.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "B" / "broken.png").write_bytes(b"junk")
    with open(tmp_path / "B" / "labels.tsv", "a") as f:
        f.write("broken.png\tdog\n")
    rec = ScriptedRecognizer(answers)
    res = evaluate(rec, open_eval_sets([tmp_path]), failures=tmp_path / "fail.tsv", keep_failures=True)
    a, b = res.sets
    assert (a.name, a.metrics.count, a.metrics.correct, a.metrics.dropped) == ("A", 2, 1, 1)
    assert (b.name, b.metrics.count, b.unreadable) == ("B", 1, 1)
    assert res.total.count == 3 and res.total.correct == 1  # sample-weighted over sets
    table = res.table()
    assert "total (sample-weighted)" in table and "33.33" in table
    rows = (tmp_path / "fail.tsv").read_text().splitlines()
    assert rows[0] == "set\tpath\tlabel\tprediction\tconfidence"
    assert len(rows) == 1 + 3  # A/World wrong, B/Cat wrong, B/broken unreadable
    assert any("<unreadable" in r and "broken.png" in r for r in rows)
    assert res.to_dict()["total"]["unreadable"] == 1
    # reproducible to the digit
    again = evaluate(rec, open_eval_sets([tmp_path]))
    assert again.to_dict()["total"] == {**res.to_dict()["total"]}


def test_plot_curves(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    recs = [{"type": "train", "step": s, "loss": 5 / s, "ar": 3 / s, "ctc": 8 / s, "train_acc": s / 100}
            for s in range(10, 101, 10)]
    recs += [{"type": "val", "step": 50, "set": "v", "accuracy": 0.4}, {"type": "val", "step": 100, "set": "v",
                                                                        "accuracy": 0.7}]
    import json

    log.write_text("".join(json.dumps(r) + "\n" for r in recs) + "{cut line")
    records = read_metrics(log)
    assert len(records) == len(recs)
    out = plot_curves(records, tmp_path / "curves.png", title="t")
    img = Image.open(out)
    assert img.size == (1000, 760) and len(img.getcolors(1 << 16) or []) > 5
    plot_curves([], tmp_path / "empty.png")  # no data yet: still a valid image
    assert nice_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0.13, 0.52, 4)[0] >= 0.13
