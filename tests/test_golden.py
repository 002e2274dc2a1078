"""Golden outputs of the shipped weights on ``examples/``: any change to preprocessing, decoding or the weights that
changes what a model reads (or its confidence beyond a small tolerance) fails here.

Every manifest record with bundled weights has ``tests/golden/<name>.json`` (written by the script that bundled it:
``recipes/ppocrv6/bundle.py``, ``recipes/finetune/bundle.py``, ``recipes/gpu/ship.py``). Records without weights pin
nothing, and loading them says why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from str_distill import Recognizer
from str_distill.hub.manifest import default_model, load_manifest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
GOLDEN = REPO / "tests" / "golden"
CONFIDENCE_TOL = 2e-3
# recognizers only: the text detectors' records are checked in tests/ocr
MANIFEST = {n: r for n, r in load_manifest().items() if r.get("task", "recognition") == "recognition"}
SHIPPED = sorted(n for n, r in MANIFEST.items() if r["status"] == "published" and r["sources"].get("bundled"))
UNSHIPPED = sorted(set(MANIFEST) - set(SHIPPED))
LABELS = dict(line.split("\t") for line in (EXAMPLES / "labels.tsv").read_text().splitlines() if line)


@pytest.mark.parametrize("name", UNSHIPPED)
def test_nothing_pinned_without_weights(name: str) -> None:
    assert not (GOLDEN / f"{name}.json").exists(), f"{name}.json pins outputs of weights the manifest does not ship"
    with pytest.raises(Exception, match="no trained weights"):
        Recognizer.from_pretrained(name)


def test_every_golden_file_belongs_to_shipped_weights() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_golden_outputs(name: str) -> None:
    gold = json.loads((GOLDEN / f"{name}.json").read_text())
    assert gold["weights_sha256"] == [f["sha256"] for f in MANIFEST[name]["files"]], (
        f"the bundled weights of {name} changed: re-run the script that bundled them to pin their outputs")
    names = sorted(gold["images"])
    assert names == sorted(p.name for p in EXAMPLES.glob("*.png"))
    rec = Recognizer.from_pretrained(name, device="cpu", dtype="float32")
    for decoding in sorted({d for v in gold["images"].values() for d in v}):
        preds = rec.predict([str(EXAMPLES / n) for n in names], decoding=decoding)  # type: ignore[arg-type]
        for n, p in zip(names, preds):
            want = gold["images"][n][decoding]
            assert p.text == want["text"], (name, decoding, n)
            assert abs(p.confidence - want["confidence"]) <= CONFIDENCE_TOL, (n, p.confidence, want["confidence"])


def test_default_model_reads_every_example() -> None:
    """The README's main job: the default model, loaded without a name, reads every example word exactly."""
    name = default_model()
    assert name in SHIPPED, f"the default model {name!r} has no bundled weights"
    rec = Recognizer.from_pretrained(device="cpu")
    names = sorted(LABELS)
    got = [p.text for p in rec.predict([str(EXAMPLES / n) for n in names])]
    assert dict(zip(names, got)) == LABELS


def test_cli_predict_examples_offline_with_the_default_model(tmp_path: Path) -> None:
    """`str-distill predict examples/` with no --model, no network (HF_HUB_OFFLINE=1), from another folder."""
    env = {"HF_HUB_OFFLINE": "1", "PATH": "", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "str_distill.cli", "predict", str(EXAMPLES)], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    read = {Path(line.split("\t")[0]).name: line.split("\t")[1] for line in out.stdout.splitlines()}
    assert read == LABELS
