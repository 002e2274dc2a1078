"""Drawing helpers of :mod:`str_distill.viz`: CTC alignment plots and prediction grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from str_distill.predictor import Prediction, Recognizer
from str_distill.viz import ctc_frame_probs, plot_ctc_alignment, predictions_panel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHARSET = "abc"


def one_hot(ids: list[int], classes: int = len(CHARSET) + 1, p: float = 0.9) -> torch.Tensor:
    """``(T, classes)`` probabilities putting ``p`` on ``ids[t]`` and the rest evenly elsewhere."""
    out = torch.full((len(ids), classes), (1 - p) / (classes - 1))
    out[torch.arange(len(ids)), torch.tensor(ids)] = p
    return out


def test_plot_ctc_alignment_layout_and_tint() -> None:
    white = Image.new("RGB", (40, 10), "white")
    ids = [0, 1, 1, 0, 2]  # blank, 'a' (emitted), 'a' (repeat), blank, 'b' (emitted); frames 8 px wide
    out = plot_ctc_alignment(white, one_hot(ids), CHARSET, scale=2)
    assert out.mode == "RGB" and out.width == 80 and out.height > 20 + 28  # image + characters + bars
    a = np.asarray(out)
    emitted, repeat, blank = a[10, 24], a[10, 40], a[10, 8]  # centre columns of frames 1, 2 and 0 (scaled)
    assert emitted[2] > emitted[0] and tuple(emitted) != (255, 255, 255)  # tinted blue
    assert tuple(repeat) == (255, 255, 255) and tuple(blank) == (255, 255, 255)
    bars = a[-3]  # just above the base line: every frame has a bar
    assert (bars[4:12] != 255).any() and (bars[20:28] != 255).any()


def test_plot_ctc_alignment_inputs_and_title() -> None:
    probs = one_hot([0, 3, 0, 0])
    from_array = plot_ctc_alignment(np.zeros((8, 32, 3), np.uint8), probs.numpy(), list(CHARSET), scale=1)
    from_tensor = plot_ctc_alignment(torch.zeros(3, 8, 32), probs, CHARSET, scale=1)
    assert from_array.size == from_tensor.size and from_array.width == 32
    titled = plot_ctc_alignment(torch.zeros(3, 8, 32), probs, CHARSET, scale=1, title="c 0.90")
    assert titled.height > from_tensor.height


@pytest.mark.parametrize("shape", [(4,), (0, 4), (4, 3), (4, 5)])
def test_plot_ctc_alignment_rejects_bad_probs(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="probs must be"):
        plot_ctc_alignment(Image.new("RGB", (8, 8)), torch.zeros(shape), CHARSET)


def test_plot_ctc_alignment_rejects_bad_scale() -> None:
    with pytest.raises(ValueError, match="scale"):
        plot_ctc_alignment(Image.new("RGB", (8, 8)), one_hot([0]), CHARSET, scale=0)


def greedy(probs: torch.Tensor, charset: str) -> str:
    ids = probs.argmax(-1).tolist()
    return "".join(charset[i - 1] for t, i in enumerate(ids) if i != 0 and (t == 0 or ids[t - 1] != i))


def test_ctc_frame_probs_default_model_matches_predict(no_network: list[str]) -> None:
    rec = Recognizer.from_pretrained(device="cpu")
    path = EXAMPLES / "hotel42.png"
    view, probs = ctc_frame_probs(rec, path)
    charset = rec.model.tokenizer.charset
    assert probs.shape == (view.width // 8, len(charset) + 1) and view.height == 48  # one frame per 8 pixels
    assert torch.allclose(probs.sum(-1), torch.ones(len(probs)), atol=1e-4)
    assert greedy(probs, charset) == rec.predict([path])[0].text == "Hotel42"
    assert plot_ctc_alignment(view, probs, charset).width == 2 * view.width


def test_ctc_frame_probs_vit_family(tiny_model: torch.nn.Module, word_image: np.ndarray) -> None:
    rec = Recognizer(tiny_model, device="cpu")
    view, probs = ctc_frame_probs(rec, word_image)
    assert view.size == tuple(reversed(rec.preprocessor.size))
    assert probs.shape[1] == len(rec.model.tokenizer.charset) + 1
    tok = rec.model.tokenizer  # a random model reads garbage, cut at the label length
    assert greedy(probs, tok.charset)[: tok.max_length] == rec.predict([word_image], decoding="ctc")[0].text


def test_predictions_panel_captions() -> None:
    images = [Image.new("RGB", (60, 20), "white"), np.full((30, 30, 3), 200, np.uint8)]
    preds = [Prediction("ok", 0.99, torch.ones(2)), Prediction("bad", 0.4, torch.ones(3))]
    out = predictions_panel(images, preds, ["ok", "good"], height=24, columns=2)
    a = np.asarray(out).reshape(-1, 3).astype(int)
    greenish = ((a[:, 1] > a[:, 0] + 60) & (a[:, 1] > a[:, 2] + 30)).any()
    reddish = ((a[:, 0] > a[:, 1] + 100) & (a[:, 0] > a[:, 2] + 100)).any()
    assert greenish and reddish  # a correct and a wrong reading
    plain = np.asarray(predictions_panel(images, preds, height=24, columns=1)).reshape(-1, 3).astype(int)
    assert not (np.abs(plain[:, 0] - plain[:, 1]) > 60).any()  # no labels: black captions only
    with pytest.raises(ValueError):
        predictions_panel(images, preds[:1])
    with pytest.raises(ValueError):
        predictions_panel(images, preds, ["ok"])
