"""``Recognizer`` on the onnxruntime backend: the same ``predict`` contract (inputs, batching, order, results,
errors) as torch, loading a ``.onnx`` file or exporting on the fly, options and error messages."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from str_distill import Prediction, Recognizer
from str_distill.models import PPOCRRecognizer, ViTRecognizer
from str_distill.preprocess import InputError

pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs the onnxruntime extra")

from str_distill.backends.ort_model import ONNXRuntimeModel  # noqa: E402


@pytest.fixture(scope="module")
def words() -> list[np.ndarray]:
    from tests.conftest import render_word

    texts = ["open", "EXIT", "cafe", "42", "Station", "bus", "STOP"]
    return [render_word(t, size=(32 + 4 * i, 60 + 25 * i), seed=i) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def vit_pair(tiny_vit: ViTRecognizer, vit_onnx: Path) -> tuple[Recognizer, Recognizer]:
    return Recognizer(tiny_vit, device="cpu"), Recognizer.from_pretrained(vit_onnx, threads=1)


@pytest.fixture(scope="module")
def ppocr_pair(tiny_ppocr: PPOCRRecognizer, ppocr_onnx: Path) -> tuple[Recognizer, Recognizer]:
    return Recognizer(tiny_ppocr, device="cpu"), Recognizer.from_pretrained(ppocr_onnx, threads=1)


def assert_same(a: list[Prediction], b: list[Prediction]) -> None:
    assert [p.text for p in a] == [p.text for p in b]
    for p, q in zip(a, b):
        assert abs(p.confidence - q.confidence) <= 1e-4 * max(p.confidence, 1e-30) + 1e-12
        assert abs(p.path_probability - q.path_probability) <= 1e-4 * max(p.path_probability, 1e-30) + 1e-12
        torch.testing.assert_close(p.char_probs, q.char_probs, atol=1e-4, rtol=0)
        assert q.attention is None and q.char_probs.dtype == torch.float32


@pytest.mark.parametrize(("decoding", "mode"), [("ctc", "autoregressive"), ("attention", "parallel"),
                                                ("attention", "autoregressive"), (None, "autoregressive")])
def test_vit_predictions_match_torch(vit_pair: tuple[Recognizer, Recognizer], words: list[np.ndarray],
                                     decoding: str | None, mode: str) -> None:
    ref, ours = vit_pair
    assert_same(ref.predict(words, batch_size=3, decoding=decoding, mode=mode),
                ours.predict(words, batch_size=3, decoding=decoding, mode=mode))


def test_ppocr_predictions_match_torch_batched_and_one_by_one(ppocr_pair: tuple[Recognizer, Recognizer],
                                                              words: list[np.ndarray]) -> None:
    ref, ours = ppocr_pair
    expected = ref.predict(words, batch_size=4)
    assert_same(expected, ours.predict(words, batch_size=4))
    assert_same(expected, [ours.predict(w)[0] for w in words])  # one by one: same results, same order
    assert ours.preprocessor.variable_width and ours.preprocessor.data == ref.preprocessor.data


def test_min_width_option_applies_to_the_onnx_file(tiny_ppocr: PPOCRRecognizer, ppocr_onnx: Path,
                                                   words: list[np.ndarray]) -> None:
    ours = Recognizer.from_pretrained(ppocr_onnx, threads=1, min_width=128)
    assert ours.preprocessor.padded_width(8) == 128
    assert_same(Recognizer(tiny_ppocr, device="cpu", min_width=128).predict(words), ours.predict(words))


def test_every_input_type_and_streaming(ppocr_pair: tuple[Recognizer, Recognizer], words: list[np.ndarray],
                                        tmp_path: Path) -> None:
    _, ours = ppocr_pair
    w = words[4]
    path = tmp_path / "w.png"
    Image.fromarray(w).save(path)
    chw = torch.from_numpy(w).permute(2, 0, 1)
    inputs = [str(path), path, path.read_bytes(), Image.fromarray(w), w, w.astype(np.float32) / 255, chw,
              chw[None].repeat(2, 1, 1, 1)]
    preds = ours.predict(inputs, batch_size=3)
    assert len(preds) == len(inputs) + 1 and all(isinstance(p, Prediction) for p in preds)
    assert len({(p.text, round(p.confidence, 6)) for p in preds}) == 1
    streamed = list(ours.iter_predict(iter(words), batch_size=2))
    assert [p.text for p in streamed] == [p.text for p in ours.predict(words)]


def test_errors_raise_or_return_like_torch(ppocr_pair: tuple[Recognizer, Recognizer], words: list[np.ndarray],
                                           tmp_path: Path) -> None:
    _, ours = ppocr_pair
    missing = tmp_path / "missing.png"
    with pytest.raises(InputError, match="missing.png") as e:
        ours.predict([words[0], missing])
    assert e.value.index == 1
    out = ours.predict([words[0], missing, words[1]], errors="return")
    assert isinstance(out[1], InputError) and isinstance(out[0], Prediction) and isinstance(out[2], Prediction)
    assert ours.predict([]) == []


def test_what_the_backend_refuses(vit_pair: tuple[Recognizer, Recognizer], ppocr_pair: tuple[Recognizer, Recognizer],
                                  words: list[np.ndarray], tmp_path: Path) -> None:
    _, vit = vit_pair
    _, ppocr = ppocr_pair
    never = (pytest.fail("read an image") for _ in range(1))  # refused before reading: on the call itself
    with pytest.raises(ValueError, match="attention maps are not part of the ONNX export"):
        vit.iter_predict(never, return_attention=True)
    with pytest.raises(ValueError, match="refine_iters=1"):
        vit.iter_predict(never, mode="parallel", refine_iters=2)
    with pytest.raises(ValueError, match="supports ctc"):
        ppocr.predict(words[:1], decoding="attention")
    with pytest.raises(ValueError, match="runs on the CPU"):
        ppocr.to("cuda")
    with pytest.raises(ValueError, match="float32"):
        ppocr.to(dtype="bfloat16")
    assert ppocr.to("cpu", "float32") is ppocr
    with pytest.raises(ValueError, match="save_pretrained"):
        ppocr.save_pretrained(tmp_path / "x")
    assert ppocr.backend == "onnxruntime" and "backend='onnxruntime'" in repr(ppocr)
    assert (ppocr.device, ppocr.dtype) == (torch.device("cpu"), torch.float32)


def test_from_pretrained_exports_on_the_fly(tiny_ppocr: PPOCRRecognizer, words: list[np.ndarray],
                                            tmp_path: Path) -> None:
    from str_distill.hub.serialization import save_pretrained

    folder = save_pretrained(tiny_ppocr, tmp_path / "weights")
    ref = Recognizer.from_pretrained(folder, device="cpu")
    ours = Recognizer.from_pretrained(folder, backend="onnxruntime", threads=1)
    assert isinstance(ours.model, ONNXRuntimeModel) and ref.backend == "torch"
    assert_same(ref.predict(words), ours.predict(words))


def test_threads_option(ppocr_onnx: Path) -> None:
    one = Recognizer.from_pretrained(ppocr_onnx, threads=1)
    assert one.model.session.get_session_options().intra_op_num_threads == 1
    two = Recognizer.from_pretrained(ppocr_onnx, backend="onnxruntime", threads=2)
    assert two.model.session.get_session_options().intra_op_num_threads == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            Recognizer.from_pretrained(ppocr_onnx, threads=bad)


def test_bad_backend_and_files(ppocr_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backend must be"):
        Recognizer.from_pretrained(ppocr_onnx, backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        Recognizer.from_pretrained(tmp_path / "nothing.onnx")
    with pytest.raises(ValueError, match="runs on the CPU"):
        Recognizer.from_pretrained(ppocr_onnx, device="cuda")
    import onnx

    foreign = onnx.load(str(ppocr_onnx))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ValueError, match="not a str-distill export"):
        Recognizer.from_pretrained(tmp_path / "foreign.onnx")


def test_missing_onnxruntime_says_how_to_install(ppocr_onnx: Path, tiny_model_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    for call in (lambda: Recognizer.from_pretrained(ppocr_onnx),
                 lambda: Recognizer.from_pretrained(tiny_model_dir, backend="onnxruntime")):
        with pytest.raises(ImportError, match=r'pip install "str-distill\[onnxruntime\]"'):
            call()
