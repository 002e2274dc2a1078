"""``str-distill visualize``: PNGs of CCD masks/regions and of decoder attention are written and not empty."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from str_distill.cli.visualize import register
from str_distill.models import get_config
from str_distill.training.ccd import CCD, CCDConfig
from str_distill.training.ccd.pretrain import save_outputs
from str_distill.viz import attention_panel, colormap, regions_image, to_pil


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["visualize", *argv])
    return args.func(args)


@pytest.fixture
def images(tmp_path, render):
    paths = []
    for i, word in enumerate(["hello", "Exit 42"]):
        p = tmp_path / f"w{i}.png"
        Image.fromarray(render(word, size=(40, 150), seed=i)).save(p)
        paths.append(str(p))
    return paths


def _check_png(path, min_size=(300, 200)) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 1000
    a = np.asarray(Image.open(path).convert("RGB"))
    assert a.shape[1] >= min_size[0] and a.shape[0] >= min_size[1]
    packed = (a[..., 0].astype(np.int32) << 16) | (a[..., 1].astype(np.int32) << 8) | a[..., 2]
    assert len(np.unique(packed)) > 50  # a picture, not a blank canvas
    return a


def test_kmeans_and_regions_without_a_model(tmp_path, images, capsys):
    out = tmp_path / "out"
    assert _run([*images, "-o", str(out)]) == 0
    for i in range(len(images)):
        _check_png(out / f"{i:03d}_w{i}_ccd.png")
    assert str(out / "000_w0_ccd.png") in capsys.readouterr().out
    assert not list(out.glob("*_attention.png"))


def test_ccd_checkpoint_adds_the_predicted_mask(tmp_path, images):
    torch.manual_seed(0)
    config = get_config("siga-vit-t", embed_dim=32, depth=2, num_heads=2, dec_dim=32, dec_heads=2, dec_depth=1)
    save_outputs(CCD(config, CCDConfig(out_dim=32, hidden_dim=32, bottleneck_dim=8, seg_dim=16)), tmp_path / "ccd", {})
    assert _run([images[0], "--model", str(tmp_path / "ccd"), "-o", str(tmp_path / "a")]) == 0
    assert _run([images[0], "-o", str(tmp_path / "b")]) == 0
    with_pred = _check_png(tmp_path / "a" / "000_w0_ccd.png")
    without = _check_png(tmp_path / "b" / "000_w0_ccd.png")
    assert with_pred.shape[0] > without.shape[0]  # one more panel
    assert (
        _run([images[0], "--model", str(tmp_path / "ccd"), "--regions-from", "predicted", "-o", str(tmp_path / "c")])
        == 0
    )
    _check_png(tmp_path / "c" / "000_w0_ccd.png")


def test_recognizer_attention_maps(tmp_path, images, tiny_model_dir):
    out = tmp_path / "out"
    assert _run([*images, "--model", str(tiny_model_dir), "-o", str(out)]) == 0
    for i in range(len(images)):
        _check_png(out / f"{i:03d}_w{i}_ccd.png")
        _check_png(out / f"{i:03d}_w{i}_attention.png", min_size=(300, 90))


def test_bad_inputs_are_named_and_the_rest_is_drawn(tmp_path, images, capsys):
    out = tmp_path / "out"
    missing = str(tmp_path / "nope.png")
    assert _run([missing, images[0], "-o", str(out)]) == 1
    assert missing in capsys.readouterr().err
    assert (out / "001_w0_ccd.png").is_file()
    assert _run([images[0], "--regions-from", "predicted", "-o", str(out)]) == 2


def test_drawing_helpers():
    img = to_pil(torch.rand(3, 32, 128), scale=2)
    assert img.size == (256, 64)
    regions = torch.zeros(3, 32, 128, dtype=torch.bool)
    regions[0, 5:20, 10:30] = True
    regions[2, 5:20, 60:90] = True
    drawn = np.asarray(regions_image(img, regions, torch.tensor([True, True, False])))
    assert drawn.shape == (64, 256, 3) and not np.array_equal(drawn[10:40, 20:60], np.asarray(img)[10:40, 20:60])
    assert np.array_equal(drawn[10:40, 125:175], np.asarray(img)[10:40, 125:175])  # the invalid region is not drawn
    cm = colormap(np.array([0.0, 1.0]))
    assert cm[0].sum() < 20 and cm[1].sum() > 600
    attn = torch.softmax(torch.randn(4, 128), -1)
    panel = attention_panel(torch.rand(3, 32, 128), "abc", [0.9, 0.8, 0.7], attn, (8, 16))
    assert panel.width > 2 * 384  # 5 tiles -> two columns


def test_attention_of_a_ppocr_decoder_model(tmp_path, images) -> None:
    """A PP-OCR model with an attention decoder: one heat map per character over the padded frame row."""
    from str_distill.hub.serialization import save_pretrained
    from str_distill.models import build_model

    torch.manual_seed(0)
    model = build_model(get_config("siga-lcnet-t-ctc", dec_depth=1, dec_dim=32, dec_heads=2, dec_max_length=6,
                                   charset="ppocrv6-en"))
    save_pretrained(model, tmp_path / "dec")
    out = tmp_path / "viz"
    assert _run([*images, "--model", str(tmp_path / "dec"), "-o", str(out)]) == 0
    written = sorted(out.iterdir())
    assert [p.name for p in written] == ["000_w0_attention.png", "001_w1_attention.png"]
    _check_png(written[0], min_size=(300, 60))


def test_ctc_only_model_is_refused(tmp_path, images, capsys) -> None:
    from str_distill.hub.serialization import save_pretrained
    from str_distill.models import build_model

    save_pretrained(build_model(get_config("siga-lcnet-t-ctc")), tmp_path / "ctc")
    assert _run([images[0], "--model", str(tmp_path / "ctc"), "-o", str(tmp_path / "v")]) == 2
    assert "no attention decoder" in capsys.readouterr().err
