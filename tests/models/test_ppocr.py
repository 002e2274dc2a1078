"""The PP-OCR family as a pure module and through the library: shapes, registry, variable-width preprocessing and
batching, save/load round trip, charset pruning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from str_distill import Recognizer
from str_distill.hub.serialization import save_pretrained
from str_distill.models import PPOCRConfig, PPOCRRecognizer, config_from_dict, create_model, get_config, list_models
from str_distill.preprocess import Preprocessor
from str_distill.tokenizer import CHARSETS
from tests.conftest import render_word

TINY = dict(stem_channels=[8, 4], channels=[16, 24, 32], depths=[2, 2, 2], se_blocks=[[0], [1], [0]], neck_dim=16,
            neck_heads=2, neck_depth=1, charset="94", max_label_length=40, min_width=64, max_width=256)


def make_tiny(seed: int = 0, **overrides: object) -> PPOCRRecognizer:
    torch.manual_seed(seed)
    model = create_model("ppocrv6-small", **{**TINY, **overrides}).eval()
    with torch.no_grad():  # random BatchNorm statistics, so that eval-mode outputs vary
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_registered_next_to_the_vit_family() -> None:
    assert {"ppocrv6-small", "siga-vit-s"} <= set(list_models())
    cfg = get_config("ppocrv6-small")
    assert isinstance(cfg, PPOCRConfig) and "embed_dim" not in cfg.to_dict()
    with pytest.raises(KeyError, match="embed_dim"):
        get_config("ppocrv6-small", embed_dim=3)
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown PPOCRConfig keys"):
        config_from_dict({**cfg.to_dict(), "patch_size": [4, 8]})


def test_full_size_architecture_matches_the_published_one() -> None:
    with torch.device("meta"):
        model = create_model("ppocrv6-small")
    assert model.num_parameters() == 5_266_910  # the ONNX file's parameter count (BatchNorm statistics aside)
    assert model.tokenizer.num_classes == 18_710
    assert model.tokenizer.charset[:94] == CHARSETS["ppocrv6-en"]  # the English head's rows, in the model's order
    assert model.tokenizer.charset[-1] == " "


@pytest.mark.parametrize("width", [64, 96, 200])
def test_frames_are_an_eighth_of_the_width(width: int) -> None:
    model = make_tiny()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 48, width))
    assert out.logits.shape == (2, width // 8, 95)
    with pytest.raises(ValueError, match="CTC only"):
        model(torch.randn(1, 3, 48, 64), decoding="attention")  # type: ignore[arg-type]


def test_preprocessing_follows_the_data_description() -> None:
    pre = Preprocessor(make_tiny().config)
    assert pre.variable_width
    img = Image.fromarray(np.full((30, 60, 3), (10, 20, 30), dtype=np.uint8))
    x = pre.to_uint8(img)
    assert x.shape == (3, 48, 96)  # height 48, aspect ratio kept: ceil(48 * 60 / 30)
    assert x[:, 0, 0].tolist() == [30, 20, 10]  # BGR
    wide = pre.to_uint8(Image.new("RGB", (1000, 10)))
    assert wide.shape[-1] == 256  # capped at max_width
    assert pre.padded_width(9) == 64 and pre.padded_width(65) == 72  # min width, then multiples of 8
    batches = pre.batches([pre(Image.new("RGB", (w, 30))) for w in (200, 20, 90, 21)])
    assert [idx for idx, _ in batches] == [[1, 3], [2], [0]]
    assert [b.shape[-1] for _, b in batches] == [64, 144, 256]
    padded = batches[0][1][0]
    assert torch.equal(padded[..., 32:], torch.zeros_like(padded[..., 32:]))  # zero (normalized) padding on the right


def test_cv2_linear_resize_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    pre = Preprocessor(make_tiny().config)
    for h, w in [(31, 77), (120, 400), (12, 40), (200, 90)]:
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        tw = pre.target_width(w, h)
        ours = np.asarray(pre.resize(Image.fromarray(a))).astype(int)
        ref = cv2.resize(a, (tw, 48)).astype(int)  # INTER_LINEAR
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() <= 1, (h, w)  # OpenCV's fixed-point rounding


def test_predict_mixed_widths_in_input_order_and_batch_invariant(tmp_path: Path) -> None:
    model = make_tiny()
    save_pretrained(model, tmp_path / "m")
    rec = Recognizer.from_pretrained(tmp_path / "m", device="cpu")
    assert isinstance(rec.model, PPOCRRecognizer)
    images = [render_word(t, size=(h, w), seed=i) for i, (t, h, w) in
              enumerate([("a", 40, 60), ("wide words", 30, 400), ("mid", 32, 120), ("b", 50, 50)])]
    together = rec.predict(images, batch_size=4)
    alone = [rec.predict(im)[0] for im in images]
    assert [p.text for p in together] == [p.text for p in alone]
    assert [round(p.confidence, 5) for p in together] == [round(p.confidence, 5) for p in alone]
    assert rec.predict(images, decoding="greedy")[1].text == together[1].text
    with pytest.raises(ValueError, match="supports ctc"):
        rec.predict(images, decoding="attention")


def test_min_width_option_pads_short_words_less_and_is_checked(tmp_path: Path) -> None:
    model = make_tiny(seed=4)  # min_width 64, max_width 256
    save_pretrained(model, tmp_path / "m")
    images = [render_word(t, size=(h, w), seed=i) for i, (t, h, w) in
              enumerate([("a", 40, 30), ("wide words", 30, 400), ("mid", 32, 120)])]
    rec = Recognizer.from_pretrained(tmp_path / "m", device="cpu", min_width=160)
    assert rec.preprocessor.padded_width(20) == 160 and rec.preprocessor.padded_width(200) == 200
    assert Recognizer(model, device="cpu").preprocessor.padded_width(20) == 64  # the weights' own
    # the same readings as weights whose own min_width is 160
    wider = Recognizer(create_model("ppocrv6-small", **{**TINY, "min_width": 160}), device="cpu")
    wider.model.load_state_dict(model.state_dict())
    got, want = rec.predict(images), wider.predict(images)
    assert [(p.text, round(p.confidence, 5)) for p in got] == [(p.text, round(p.confidence, 5)) for p in want]
    assert [p.text for p in Recognizer(model, device="cpu", min_width=0).predict(images)]  # no padding at all
    for bad, match in ((-1, "non-negative"), (1.5, "non-negative"), (True, "non-negative"), (300, "max_width 256")):
        with pytest.raises(ValueError, match=match):
            Recognizer(model, device="cpu", min_width=bad)  # type: ignore[arg-type]


def test_min_width_option_refused_for_a_fixed_size_model(tiny_model) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="variable-width models"):
        Recognizer(tiny_model, device="cpu", min_width=64)


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    model = make_tiny(seed=3)
    save_pretrained(model, tmp_path / "m")
    loaded = Recognizer.from_pretrained(tmp_path / "m", device="cpu").model
    x = torch.randn(2, 3, 48, 72)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x.contiguous(memory_format=torch.channels_last)).logits,
                                   model(x).logits, atol=1e-5, rtol=1e-5)


def test_prune_charset_keeps_the_rows_of_those_characters() -> None:
    from str_distill.hub.convert_ppocr import prune_charset

    model = make_tiny()
    small = prune_charset(model, "ab9")
    x = torch.randn(1, 3, 48, 64)
    with torch.inference_mode():
        full, part = model(x).logits, small(x).logits
    rows = [0] + [model.tokenizer.charset.index(c) + 1 for c in "ab9"]
    torch.testing.assert_close(part, full[..., rows])
    with pytest.raises(ValueError, match="not in the model's charset"):
        prune_charset(model, "ab\u00e9")


def test_cpu_student_is_a_shallower_ppocr_read_at_32_pixels() -> None:
    cfg = get_config("siga-lcnet-t-ctc")
    assert isinstance(cfg, PPOCRConfig) and cfg.depths == (3, 4, 2) and cfg.height == 32 and cfg.charset == "94"
    with torch.device("meta"):
        model = create_model("siga-lcnet-t-ctc")
    assert model.num_parameters() == 1_839_599
    assert model.tokenizer.num_classes == 95
    pre = Preprocessor(cfg)
    x = pre(Image.new("RGB", (50, 20)))  # aspect 2.5 -> 80 wide at 32 high
    assert tuple(x.shape) == (3, 32, 80) and pre.padded_width(80) == 128  # padded to the 128 minimum
