"""The shipped default model exported to ONNX: logits as torch's (float32 rounding aside) and the same text on
``examples/`` and on 300 IIIT5K images (``$STR_DISTILL_DATA/IIIT5K``, default ``../shared/data``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from str_distill import Recognizer
from str_distill.hub.manifest import bundled_dir, default_model, get_record
from tests.export.conftest import EXAMPLES, data_root

pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs the onnxruntime extra")

#: largest |logits difference| / largest |logit|: float32 rounding differs between any two implementations (torch's
#: NCHW and channels-last paths differ by more than the export on this model)
REL_TOL = 1e-4


def _bundled() -> str | None:
    name = default_model()
    bundled = ((get_record(name) or {}).get("sources") or {}).get("bundled")
    ok = bundled and all((bundled_dir() / f).is_file() for f in bundled["files"])
    return name if ok else None


pytestmark = pytest.mark.skipif(_bundled() is None, reason="the default model's weights are not bundled here")


@pytest.fixture(scope="module")
def pair() -> tuple[Recognizer, Recognizer]:
    return (Recognizer.from_pretrained(device="cpu", dtype="float32"),
            Recognizer.from_pretrained(backend="onnxruntime", threads=1))


def check(pair: tuple[Recognizer, Recognizer], images: list[Path]) -> None:
    """One pass per backend over the same preprocessed batches: logits close, decoded texts identical."""
    ref, ours = pair
    worst, texts_ref, texts_ours = 0.0, [""] * len(images), [""] * len(images)
    tensors = [ref.preprocessor(Image.open(p).convert("RGB")) for p in images]
    for idx, batch in ref.preprocessor.batches(tensors):
        with torch.inference_mode():  # as the predictor runs it: channels-last
            a = ref.model(batch.contiguous(memory_format=torch.channels_last)).logits
        b = ours.model.forward(batch).logits  # the onnxruntime backend (not a module: no __call__)
        worst = max(worst, float((a - b).abs().max() / a.abs().max()))
        for i, x, y in zip(idx, ref.model.tokenizer.decode(a.softmax(-1), "ctc"),
                           ours.model.tokenizer.decode(b.softmax(-1), "ctc")):
            texts_ref[i], texts_ours[i] = x.text, y.text
    assert worst <= REL_TOL
    assert texts_ours == texts_ref
    assert [p.text for p in ours.predict(images[:16])] == texts_ref[:16]  # and end to end through the predictor


def test_examples(pair: tuple[Recognizer, Recognizer]) -> None:
    check(pair, sorted(EXAMPLES.glob("*.png")))


@pytest.mark.slow
def test_300_iiit5k_images(pair: tuple[Recognizer, Recognizer]) -> None:
    root = data_root() / "IIIT5K"
    if not (root / "labels.tsv").is_file():
        pytest.skip(f"IIIT5K not found at {root} (set STR_DISTILL_DATA)")
    rows = [line.split("\t")[0] for line in (root / "labels.tsv").read_text().splitlines() if line][:300]
    check(pair, [root / r for r in rows])
