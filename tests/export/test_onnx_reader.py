"""The torch-free reader: the same readings as the predictor, its own preprocessing checked against the library's,
and no torch import."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from str_distill import Recognizer
from str_distill.models import PPOCRRecognizer
from str_distill.preprocess import Preprocessor
from tests.export.conftest import EXAMPLES, REPO

pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs the onnxruntime extra")

from str_distill.backends.onnx_reader import ONNXReader  # noqa: E402
from str_distill.backends.ort_model import ONNXRuntimeModel  # noqa: E402

READER = REPO / "str_distill" / "backends" / "onnx_reader.py"


@pytest.mark.parametrize("fixture", ["vit_onnx", "ppocr_onnx"])
def test_reads_what_the_predictor_reads(fixture: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    images = sorted(EXAMPLES.glob("*.png"))
    reader = ONNXReader(path, threads=1)
    rec = Recognizer(ONNXRuntimeModel(reader.session, str(path)))  # one session for both (built in seconds)
    modes = [("ctc", "autoregressive")] + ([("attention", "parallel"), ("attention", "autoregressive")]
                                           if "attention" in reader.info.decodings else [])
    for decoding, mode in modes:
        ours = reader.predict(images, batch_size=3, decoding=decoding, mode=mode)
        ref = rec.predict(images, batch_size=3, decoding=decoding, mode=mode)
        assert [r.text for r in ours] == [p.text for p in ref]
        for r, p in zip(ours, ref):
            np.testing.assert_allclose(r.char_probs, p.char_probs.numpy(), atol=1e-5)
            assert r.confidence == pytest.approx(p.confidence, rel=1e-4, abs=1e-30)
            assert r.path_probability == pytest.approx(p.path_probability, rel=1e-4, abs=1e-30)


@pytest.mark.parametrize("size", [(20, 37), (48, 200), (120, 333), (31, 500), (300, 90)])
def test_cv2_linear_resize_matches_the_library(tiny_ppocr: PPOCRRecognizer, ppocr_onnx: Path,
                                               size: tuple[int, int]) -> None:
    rng = np.random.default_rng(size[0] * size[1])
    img = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    ours = ONNXReader(ppocr_onnx).preprocess(img)
    ref = Preprocessor(tiny_ppocr.config)(img).numpy()
    assert ours.shape == ref.shape and ours.dtype == np.float32
    step = 2 / 255  # one grey level after normalization with std 0.5
    diff = np.abs(ours - ref)
    assert diff.max() <= step + 1e-6 and (diff > 1e-6).mean() < 0.01  # rounding ties only


def test_min_width_option(ppocr_onnx: Path, vit_onnx: Path) -> None:
    images = sorted(EXAMPLES.glob("*.png"))
    reader = ONNXReader(ppocr_onnx, threads=1, min_width=128)
    assert reader.padded_width(8) == 128 and ONNXReader(ppocr_onnx).padded_width(8) == 64  # the file's own: 64
    rec = Recognizer.from_pretrained(ppocr_onnx, threads=1, min_width=128)
    assert [r.text for r in reader.predict(images)] == [p.text for p in rec.predict(images)]
    for bad, match in ((-3, "non-negative"), (2.0, "non-negative"), (10_000, "larger than the model's max_width")):
        with pytest.raises(ValueError, match=match):
            ONNXReader(ppocr_onnx, min_width=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="variable-width models"):
        ONNXReader(vit_onnx, min_width=128)


def test_inputs_and_errors(ppocr_onnx: Path, tmp_path: Path) -> None:
    reader = ONNXReader(ppocr_onnx)
    a = np.asarray(Image.open(EXAMPLES / "open.png").convert("RGB"))
    path = tmp_path / "open.png"
    Image.fromarray(a).save(path)
    rgba = np.concatenate([a, np.full((*a.shape[:2], 1), 255, np.uint8)], -1)
    results = reader.predict([str(path), path, path.read_bytes(), Image.fromarray(a), a, rgba])
    assert len({r.text for r in results}) == 1
    assert reader.predict(a)[0].text == results[0].text  # a single image
    with pytest.raises(ValueError, match="input 1"):
        reader.predict([a, a.astype(np.float32)])
    with pytest.raises(ValueError, match="supports ctc"):
        reader.predict([a], decoding="attention")


def test_runs_without_torch(ppocr_onnx: Path) -> None:
    code = (
        "import sys, importlib.util\n"
        "sys.modules['torch'] = None\n"  # any torch import fails
        f"spec = importlib.util.spec_from_file_location('onnx_reader', {str(READER)!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['onnx_reader'] = mod; spec.loader.exec_module(mod)\n"
        f"r = mod.ONNXReader({str(ppocr_onnx)!r}, threads=1)\n"
        f"print(len(r.predict([{str(EXAMPLES / 'open.png')!r}])[0].char_probs) >= 0, 'str_distill' in sys.modules)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "False"]


def test_imports_nothing_but_numpy_pillow_and_the_standard_library() -> None:
    tree = ast.parse(READER.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] if n.level == 0 and n.module else "." for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom)}
    assert modules - set(sys.stdlib_module_names) == {"numpy", "PIL", "onnxruntime"}
