"""Golden outputs of the shipped weights on ``examples/``: any change to preprocessing, decoding or the weights that
changes what the model reads (or its confidence beyond a small tolerance) fails here.

``recipes/gpu/ship.py`` writes ``tests/golden/<name>.json`` when it bundles weights. Until ``siga-vit-s`` has
trained weights, the test checks the other side of that contract: nothing is pinned and loading says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from str_distill import Recognizer
from str_distill.hub.manifest import get_record

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
NAME = "siga-vit-s"
GOLDEN = REPO / "tests" / "golden" / f"{NAME}.json"
CONFIDENCE_TOL = 2e-3


def shipped() -> bool:
    rec = get_record(NAME)
    return bool(rec and rec["status"] == "published" and rec["sources"].get("bundled"))


def test_nothing_pinned_without_weights() -> None:
    if shipped():
        pytest.skip(f"{NAME} ships weights: test_golden_outputs checks them")
    assert not GOLDEN.exists(), f"{GOLDEN} pins outputs of weights the manifest does not ship"
    with pytest.raises(Exception, match="no trained weights"):
        Recognizer.from_pretrained(NAME)


@pytest.mark.parametrize("decoding", ["attention", "ctc"])
def test_golden_outputs(decoding: str) -> None:
    if not shipped():
        pytest.skip(f"{NAME} has no trained weights yet (test_nothing_pinned_without_weights)")
    gold = json.loads(GOLDEN.read_text())
    assert gold["weights_sha256"] == [f["sha256"] for f in get_record(NAME)["files"]], (
        "the bundled weights changed: re-run recipes/gpu/ship.py to pin their outputs")
    names = sorted(gold["images"])
    assert names == sorted(p.name for p in EXAMPLES.glob("*.png"))
    rec = Recognizer.from_pretrained(NAME, device="cpu", dtype="float32")
    preds = rec.predict([str(EXAMPLES / n) for n in names], decoding=decoding)  # type: ignore[arg-type]
    for n, p in zip(names, preds):
        want = gold["images"][n][decoding]
        assert p.text == want["text"], n
        assert abs(p.confidence - want["confidence"]) <= CONFIDENCE_TOL, (n, p.confidence, want["confidence"])


def test_examples_are_read_right() -> None:
    """The README's main job: the shipped weights read every example word exactly (attention decoding)."""
    if not shipped():
        pytest.skip(f"{NAME} has no trained weights yet")
    labels = dict(line.split("\t") for line in (EXAMPLES / "labels.tsv").read_text().splitlines() if line)
    rec = Recognizer.from_pretrained(NAME, device="cpu")
    names = sorted(labels)
    got = [p.text for p in rec.predict([str(EXAMPLES / n) for n in names])]
    assert dict(zip(names, got)) == labels
