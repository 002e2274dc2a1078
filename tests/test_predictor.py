"""Recognizer: input handling, batching/order, streaming, errors, device/dtype, outputs, round trips."""

from __future__ import annotations

import io
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import render_word
from PIL import Image

from str_distill import Prediction, Recognizer, ViTRecognizer
from str_distill.preprocess import InputError


@pytest.fixture
def rec(tiny_model: ViTRecognizer) -> Recognizer:
    return Recognizer(tiny_model, device="cpu")


@pytest.fixture
def words(render) -> list[np.ndarray]:  # noqa: ANN001
    texts = ["open", "EXIT", "cafe", "42", "Station", "bus", "STOP"]
    return [render(t, size=(32 + 4 * i, 100 + 10 * i), seed=i) for i, t in enumerate(texts)]


def same(a: Prediction, b: Prediction, atol: float = 1e-5) -> bool:
    return (a.text == b.text and abs(a.confidence - b.confidence) <= atol * max(1.0, b.confidence)
            and torch.allclose(a.char_probs, b.char_probs, atol=atol))


def test_every_input_type_mixed_in_one_call(rec: Recognizer, words: list[np.ndarray], tmp_path: Path) -> None:
    w = words[0]
    path = tmp_path / "w.png"
    Image.fromarray(w).save(path)
    chw = torch.from_numpy(w).permute(2, 0, 1)
    inputs = [str(path), path, path.read_bytes(), Image.fromarray(w), Image.fromarray(w).convert("RGBA"), w,
              w.astype(np.float32) / 255, w.astype(np.uint16) * 257, chw, chw.float() / 255,
              chw[None].repeat(2, 1, 1, 1)]
    preds = rec.predict(inputs, batch_size=4)
    assert len(preds) == len(inputs) + 1  # the (2, C, H, W) tensor is two images
    assert all(isinstance(p, Prediction) for p in preds)
    assert all(same(p, preds[0]) for p in preds), [p.text for p in preds]


def test_gray_inputs_match_their_rgb_version(rec: Recognizer, words: list[np.ndarray]) -> None:
    g = words[1][..., 1]
    preds = rec.predict([g, g[..., None], np.stack([g] * 3, -1), Image.fromarray(g), torch.from_numpy(g)[None]])
    assert all(same(p, preds[2]) for p in preds)


@pytest.mark.parametrize(("decoding", "mode"), [("attention", "autoregressive"), ("attention", "parallel"),
                                                ("ctc", "autoregressive")])
def test_batched_equals_one_by_one_in_order(rec: Recognizer, words: list[np.ndarray], decoding: str, mode: str) -> None:
    batched = rec.predict(words, batch_size=3, decoding=decoding, mode=mode)
    single = [rec.predict([w], decoding=decoding, mode=mode)[0] for w in words]
    assert len(batched) == len(words)
    for b, s in zip(batched, single):
        assert same(b, s), (b.text, s.text)
    assert len({p.text for p in batched}) > 1  # distinct images give distinct readings: order is checked


def test_generator_is_streamed(rec: Recognizer, words: list[np.ndarray]) -> None:
    pulled = 0

    def gen() -> Iterator[np.ndarray]:
        nonlocal pulled
        for i in range(23):
            pulled += 1
            yield words[i % len(words)]

    seen = 0
    for pred in rec.iter_predict(gen(), batch_size=5):
        seen += 1
        assert isinstance(pred, Prediction)
        assert pulled - seen < 5  # never more than one batch read ahead
    assert seen == pulled == 23


def test_predict_memory_bounded_for_long_generator(tiny_model: ViTRecognizer) -> None:
    rec = Recognizer(tiny_model, device="cpu")
    n, shape = 150, (200, 1000, 3)  # 90 MB if all images were held at once

    def gen() -> Iterator[np.ndarray]:
        for i in range(n):
            yield np.full(shape, i % 256, np.uint8)

    tracemalloc.start()
    try:
        preds = rec.predict(gen(), batch_size=8, decoding="ctc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(preds) == n
    assert peak < 25 * 2**20, f"peak {peak / 2**20:.1f} MiB"  # about one batch of images, not all of them


def test_empty_inputs(rec: Recognizer) -> None:
    assert rec.predict([]) == []
    assert rec.predict(()) == []
    assert rec.predict(x for x in []) == []
    assert rec.predict(torch.zeros(0, 3, 32, 128)) == []


def test_single_image_arguments(rec: Recognizer, words: list[np.ndarray]) -> None:
    assert len(rec.predict(words[0])) == 1
    assert len(rec.predict(torch.rand(3, 3, 32, 128))) == 3
    assert len(rec.predict(Image.fromarray(words[0]))) == 1


def test_errors_raise_names_index_or_path(rec: Recognizer, words: list[np.ndarray], tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^input 2: ") as e:
        rec.predict([words[0], words[1], np.zeros((4, 4), np.int64)])
    assert e.value.index == 2
    missing = str(tmp_path / "gone.png")
    with pytest.raises(InputError, match=r"^input 1 \(.*gone\.png\): no such file$"):
        rec.predict([words[0], missing])
    with pytest.raises(InputError, match=r"input 1\[1\]: .*NaN"):
        rec.predict([words[0], torch.stack([torch.rand(3, 8, 8), torch.full((3, 8, 8), float("nan"))])])
    with pytest.raises(InputError, match="input 0: .*shape"):
        rec.predict([torch.zeros(1, 1, 3, 8, 8)])


def test_errors_return_keeps_going(rec: Recognizer, words: list[np.ndarray], tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    inputs = [words[0], str(bad), words[1], b"", words[2], torch.zeros(8, 8, 3)]
    out = rec.predict(inputs, batch_size=2, errors="return")
    assert [type(o).__name__ for o in out] == ["Prediction", "InputError", "Prediction", "InputError", "Prediction",
                                               "InputError"]
    assert [o.index for o in out if isinstance(o, InputError)] == [1, 3, 5]
    assert str(bad) in str(out[1])
    good = rec.predict([words[0], words[1], words[2]])
    assert all(same(a, b) for a, b in zip([out[0], out[2], out[4]], good))


def test_bad_arguments_fail_before_reading(rec: Recognizer) -> None:
    def gen() -> Iterator[np.ndarray]:
        raise AssertionError("input consumed")
        yield  # pragma: no cover

    for kwargs, match in [({"decoding": "beam"}, "decoding"), ({"mode": "sideways"}, "mode"),
                          ({"errors": "ignore"}, "errors"), ({"batch_size": 0}, "batch_size"),
                          ({"decoding": "ctc", "return_attention": True}, "attention")]:
        with pytest.raises(ValueError, match=match):
            rec.predict(gen(), **kwargs)
    with pytest.raises(TypeError, match="iterable"):
        rec.predict(5)


def test_prediction_fields(rec: Recognizer, words: list[np.ndarray]) -> None:
    for decoding in ("attention", "ctc"):
        for p in rec.predict(words, decoding=decoding):
            assert isinstance(p.text, str) and isinstance(p.confidence, float)
            assert 0.0 <= p.confidence <= 1.0
            assert p.char_probs.shape == (len(p.text),) and p.char_probs.dtype == torch.float32
            assert p.attention is None
            assert p.path_probability <= float(p.char_probs.prod()) + 1e-6
            assert p.path_probability <= p.confidence + 1e-6  # a product of probabilities <= the lowest of them
            if len(p.text):
                assert p.confidence <= float(p.char_probs.min()) + 1e-6


def test_attention_maps(rec: Recognizer, words: list[np.ndarray], tiny_model: ViTRecognizer) -> None:
    with torch.no_grad():  # make the decoder stop after a few characters so T varies with the text
        tiny_model.decoder.head.bias[0] = 4.0
    for mode in ("autoregressive", "parallel"):
        preds = rec.predict(words, mode=mode, return_attention=True)
        for p in preds:
            assert p.attention is not None and p.attention.shape == (len(p.text) + 1, 8, 16)
            assert torch.allclose(p.attention.sum((1, 2)), torch.ones(len(p.text) + 1), atol=1e-4)


def test_device_and_dtype(tiny_model: ViTRecognizer, model_factory, words: list[np.ndarray]) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="bfloat16"):
        Recognizer(tiny_model, device="cpu", dtype=torch.float16)
    with pytest.raises(ValueError, match="dtype"):
        Recognizer(tiny_model, device="cpu", dtype=torch.float64)
    assert Recognizer(model_factory().to(torch.bfloat16), device="cpu").dtype == torch.bfloat16  # None keeps it
    auto = Recognizer(tiny_model)
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    rec = Recognizer(tiny_model, device=torch.device("cpu"), dtype="bf16")
    assert rec.dtype == torch.bfloat16 and next(rec.model.parameters()).dtype == torch.bfloat16
    half = rec.predict(words[:3], decoding="ctc")
    assert all(p.char_probs.dtype == torch.float32 for p in half)
    rec.to(dtype="float32")
    assert next(rec.model.parameters()).dtype == torch.float32
    full = rec.predict(words[:3], decoding="ctc")
    assert sum(a.text == b.text for a, b in zip(half, full)) >= 1  # bf16 is close, not bit-identical
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            rec.to("cuda")


def test_model_property_save_and_reload(rec: Recognizer, words: list[np.ndarray], tmp_path: Path) -> None:
    assert isinstance(rec.model, ViTRecognizer)
    rec.save_pretrained(tmp_path / "m")
    again = Recognizer.from_pretrained(tmp_path / "m", device="cpu")
    assert all(same(a, b, atol=0) for a, b in zip(rec.predict(words), again.predict(words)))
    assert "Recognizer(arch='siga-vit-t'" in repr(again)


def test_options_are_applied(tiny_model: ViTRecognizer) -> None:
    tall = Image.new("RGB", (20, 90), "white")
    tall.paste((0, 0, 0), (0, 0, 20, 20))
    a = Recognizer(tiny_model, device="cpu", rotate_tall=True)
    b = Recognizer(tiny_model, device="cpu")
    c = Recognizer(tiny_model, device="cpu", keep_aspect_ratio=True)
    assert a.orientation == "tall" and b.orientation == "upright" and c.preprocessor.keep_aspect_ratio
    outs = [r.predict([tall], decoding="ctc")[0] for r in (a, b, c)]
    assert not torch.equal(outs[1].char_probs, outs[2].char_probs)
    assert outs[0].rotation in (0, 90, 270) and outs[1].rotation == outs[2].rotation == 0


def test_progress_bar_goes_to_stderr(rec: Recognizer, words: list[np.ndarray], capsys: pytest.CaptureFixture) -> None:
    rec.predict(words, batch_size=2, progress=True, decoding="ctc")
    captured = capsys.readouterr()
    assert captured.out == "" and "7/7" in captured.err


def test_png_bytes_in_memory(rec: Recognizer, words: list[np.ndarray]) -> None:
    buf = io.BytesIO()
    Image.fromarray(words[3]).save(buf, "PNG")
    assert same(rec.predict([buf.getvalue()])[0], rec.predict([words[3]])[0])


# ------------------------------------------------------------------------------------------------------ examples/
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_images_and_labels() -> None:
    rows = [line.split("\t") for line in (EXAMPLES / "labels.tsv").read_text().splitlines() if line]
    assert 6 <= len(rows) <= 10
    for file, label in rows:
        img = Image.open(EXAMPLES / file)
        assert img.width > img.height >= 32 and label and label.isprintable()


def run_example(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run ``examples/predict.py`` as ``__main__`` in this process (no second torch import)."""
    import runpy

    monkeypatch.setattr(sys, "argv", ["predict.py", *argv])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(EXAMPLES / "predict.py"), run_name="__main__")
    return e.value.code


def test_example_predict_script(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture, no_network: list[str]) -> None:
    assert run_example(["--model", str(tiny_model_dir), "--device", "cpu"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "open.png" in out and "hotel42.png" in out and "read exactly" in out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run_example(["--device", "cpu"], monkeypatch) == 0  # the bundled default model, offline
    assert "8/8 read exactly" in capsys.readouterr().out
    assert run_example(["--model", "siga-vit-s"], monkeypatch) == 1
    assert "not yet trained" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ orientation, warnings
@pytest.fixture(scope="module")
def default_rec() -> Recognizer:
    return Recognizer.from_pretrained(device="cpu", dtype="float32")


def test_orientation_reads_words_turned_every_way(default_rec: Recognizer) -> None:
    word = Image.fromarray(render_word("Welcome", size=(48, 190), seed=3))
    turned = {r: word.rotate(r, expand=True) for r in (0, 90, 180, 270)}  # PIL: counter-clockwise
    upright = default_rec.predict(list(turned.values()))
    assert upright[0].text == "Welcome" and upright[0].rotation == 0
    assert upright[1].text != "Welcome" and upright[3].text != "Welcome"  # the tall ones are misread upright
    assert all(p.warning and "tall crop" in p.warning for p in upright[1:4:2])  # the tall ones are flagged
    rec = Recognizer(default_rec.model, device="cpu", orientation="auto")
    preds = rec.predict(list(turned.values()))
    assert [p.text for p in preds] == ["Welcome"] * 4
    # turned r degrees counter-clockwise, it reads right once turned back: (360 - r) % 360 counter-clockwise
    assert [p.rotation for p in preds] == [0, 270, 180, 90]
    assert preds[0].text == upright[0].text and preds[0].confidence == upright[0].confidence
    tall = Recognizer(default_rec.model, device="cpu", rotate_tall=True).predict([turned[90], turned[270]])
    assert [p.text for p in tall] == ["Welcome"] * 2 and all(p.warning is None for p in tall)
    with pytest.raises(ValueError, match="orientation"):
        Recognizer(default_rec.model, device="cpu", orientation="sideways")  # type: ignore[arg-type]


def test_a_whole_photo_is_flagged(default_rec: Recognizer) -> None:
    from str_distill.predictor import scene_warning

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8))
    for i, w in enumerate(("OPEN", "Bakery", "EXIT")):  # a street-like picture: a few words on clutter
        photo.paste(Image.fromarray(render_word(w, size=(60, 200), seed=i)), (100 + 250 * i, 150 + 200 * i))
    word = render_word("station", size=(48, 200))
    p_photo, p_word = default_rec.predict([photo, word])
    assert p_photo.warning and "1024x768 looks like a whole photo" in p_photo.warning and "str-distill read" in (
        p_photo.warning)
    assert p_word.warning is None
    assert scene_warning(1024, 768, 0.95) is None  # read with confidence: a big word crop
    assert scene_warning(900, 300, 0.1) is None  # at least 2x wider than high: a word or a line
    assert scene_warning(299, 299, 0.1) is None and scene_warning(300, 300, 0.1) is not None


def test_any_backend_runs_behind_the_recognizer(tiny_model: ViTRecognizer, words: list[np.ndarray]) -> None:
    """The predictor knows a runtime only through the Backend interface: a backend of our own (here, torch run by
    hand) reads the same text, and what it refuses is refused through it."""
    from str_distill.backends.base import Backend, check_cpu_float32

    class HandRun(Backend):
        name = "by-hand"
        device, dtype = torch.device("cpu"), torch.float32

        def __init__(self, net: ViTRecognizer) -> None:
            self.net, self.calls = net.eval(), 0

        @property
        def network(self) -> ViTRecognizer:
            return self.net

        def to(self, device=None, dtype=None) -> None:  # noqa: ANN001
            check_cpu_float32(self.name, device, dtype)

        def check_options(self, decoding: str, mode: str, refine_iters: int, return_attention: bool) -> None:
            if return_attention:
                raise ValueError("no attention maps by hand")

        def forward(self, images, decoding, mode, refine_iters, return_attention):  # noqa: ANN001, ANN201
            self.calls += 1
            with torch.no_grad():
                return self.net(images.float(), decoding, mode, refine_iters, return_attention)

    backend = HandRun(tiny_model)
    ours = Recognizer(backend)
    ref = Recognizer(tiny_model, device="cpu").predict(words)
    assert [p.text for p in ours.predict(words)] == [p.text for p in ref] and backend.calls > 0
    assert ours.backend == "by-hand" and "backend='by-hand'" in repr(ours) and ours.model is tiny_model
    with pytest.raises(ValueError, match="no attention maps"):
        ours.predict(words, decoding="attention", return_attention=True)
    with pytest.raises(ValueError, match="needs the torch backend"):
        ours.save_pretrained("unused")
    with pytest.raises(ValueError, match="runs in float32"):
        ours.to(dtype="bfloat16")
