"""Decoder training from cached encoder features: the cache, its batches, and the model made for it."""

from __future__ import annotations

import numpy as np
import torch

from str_distill.models import build_model, get_config
from str_distill.training.decoder_fit import FeatureCache, build_feature_cache, decoder_model_from, iter_batches


def _encoder():
    torch.manual_seed(0)
    return build_model(get_config("siga-lcnet-t-ctc", charset="ppocrv6-en")).eval()


def test_cache_holds_one_entry_per_crop_and_view_with_its_own_label(tmp_path) -> None:
    model = _encoder()
    rng = np.random.default_rng(0)
    widths = [40, 200, 90, 400]  # different padded widths: the cache groups them, labels must follow
    samples = [(rng.integers(0, 255, (32, w, 3), dtype=np.uint8), f"w{w}") for w in widths]
    cache = build_feature_cache(model, samples, views=2, first_view=1, dtype=torch.float32)
    assert len(cache) == 8 and sorted(set(cache.view)) == [1, 2]
    for f, label, i in zip(cache.feats, cache.labels, cache.sample):
        assert label == samples[i][1] and f.dtype == torch.float16
    # a clean view is exactly what the encoder computes for that crop alone at its padded width
    clean = build_feature_cache(model, samples[1:2], views=1, dtype=torch.float32)
    from str_distill.preprocess import Preprocessor

    pre = Preprocessor(model.config)
    from PIL import Image

    x = pre(Image.fromarray(samples[1][0]))
    x = pre.pad(x, pre.padded_width(x.shape[-1]))[None]
    with torch.no_grad():
        want = model.features(x)[0].half()
    torch.testing.assert_close(clean.feats[0], want, atol=2e-3, rtol=1e-2)
    cache.save(tmp_path / "c.pt")
    back = FeatureCache.load(tmp_path / "c.pt")
    assert back.labels == cache.labels and all(torch.equal(a, b) for a, b in zip(back.feats, cache.feats))


def test_batches_have_one_frame_count_and_cover_the_cache() -> None:
    feats = [torch.zeros(t, 4) for t in [30, 30, 40, 30, 40, 50, 30]]
    cache = FeatureCache(feats, ["a"] * 7, list(range(7)), [0] * 7)
    it = iter_batches(cache, 2, np.random.default_rng(0))
    seen = []
    for _ in range(5):  # one pass: 2 + 1 + 1 batches of T=30, 40, 50 ... (ceil(4/2) + 1 + 1 = 4), then repeats
        b = next(it)
        assert len({feats[i].shape[0] for i in b}) == 1
        seen += b
    assert set(seen) == set(range(7))


def test_decoder_model_keeps_the_encoder_and_the_shared_ctc_rows() -> None:
    src = build_model(get_config("siga-lcnet-t-ctc", charset="ppocrv6")).eval()  # the full PP-OCRv6 dictionary
    m = decoder_model_from(src, "ppocrv6-en", dec_depth=1, dec_dim=32, dec_heads=2)
    assert m.decodings == ("ctc", "attention", "joint")
    assert torch.equal(m.stem.conv1[0].weight, src.stem.conv1[0].weight)
    # ppocrv6-en is the first 94 classes after the blank of the full dictionary: rows 0..94 carry over
    assert torch.equal(m.head.weight, src.head.weight[:95])
