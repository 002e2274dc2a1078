"""The PP-OCR family's optional attention decoder: passes, joint reading, predictor, save/load, export, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from str_distill.models import build_model, get_config
from str_distill.models.decoder import cloze_mask, permutation_mask, teacher_forced
from str_distill.models.ppocr import PPOCRRecognizer
from str_distill.predictor import Recognizer

TINY_DEC = dict(dec_depth=1, dec_dim=32, dec_heads=2, dec_max_length=12, charset="ppocrv6-en")


def tiny(seed: int = 0, **kw: object) -> PPOCRRecognizer:
    torch.manual_seed(seed)
    return build_model(get_config("siga-lcnet-t-ctc", **{**TINY_DEC, **kw})).eval()


def test_decodings_follow_config() -> None:
    assert build_model(get_config("siga-lcnet-t-ctc")).decodings == ("ctc",)
    assert tiny().decodings == ("ctc", "attention", "joint")
    assert tiny(default_decoding="joint").decodings[0] == "joint"
    with pytest.raises(ValueError, match="default_decoding"):
        get_config("siga-lcnet-t-ctc", default_decoding="attention")  # no decoder


def test_ctc_only_model_refuses_attention() -> None:
    m = build_model(get_config("siga-lcnet-t-ctc")).eval()
    with pytest.raises(ValueError, match="CTC only"):
        m(torch.zeros(1, 3, 32, 128), "attention")


def test_forward_shapes_all_decodings() -> None:
    m = tiny()
    x = torch.randn(2, 3, 32, 128)
    frames = 128 // 8
    assert m(x, "ctc").logits.shape == (2, frames, 95)
    ar = m(x, "attention", return_attn=True)
    assert ar.logits.shape[0] == 2 and ar.logits.shape[1] <= 13 and ar.attn.shape[-1] == frames
    assert m(x, "attention", "parallel", 2).logits.shape == (2, 13, 95)
    joint = m(x, "joint")
    assert joint.ids is not None and joint.ids.shape == joint.logits.shape[:2]


def test_permutation_mask_identity_is_causal_and_reverse_is_anticausal() -> None:
    content = torch.tensor([[96, 5, 6, 7]])  # BOS + 3 characters (BOS id is irrelevant here)
    ident = permutation_mask(torch.arange(4), content, pad=97, eos=0)[0, 0]
    assert torch.equal(ident, torch.ones(4, 4, dtype=torch.bool).tril())
    rev = permutation_mask(torch.tensor([2, 1, 0, 3]), content, pad=97, eos=0)[0, 0]
    # position 2 goes first: it sees only BOS; position 0 goes third: it sees BOS and the tokens of positions 2, 1
    assert rev[2].tolist() == [True, False, False, False]
    assert rev[0].tolist() == [True, False, True, True]
    assert rev[3].tolist() == [True, True, True, True]  # EOS position last: sees everything


def test_permutation_mask_hides_eos_and_pad() -> None:
    content = torch.tensor([[96, 5, 0, 97]])  # BOS, one character, EOS, PAD
    m = permutation_mask(torch.arange(4), content, pad=97, eos=0)[0, 0]
    assert not m[:, 2].any() and not m[:, 3].any()


def test_identity_permutation_pass_equals_autoregressive_pass() -> None:
    m = tiny()
    memory = m.decoder_memory(torch.randn(2, 16, m.config.neck_dim))
    targets = m.tokenizer.encode(["abc", "hello"])
    ar, _, cloze, perm = teacher_forced(m.decoder, memory, targets, m.tokenizer.PAD, m.tokenizer.EOS, ("ar", "cloze"),
                                        [torch.arange(targets.shape[1] - 1)])
    # identical on every position whose content is not PAD/EOS-masked differently (the first sample's EOS key)
    torch.testing.assert_close(perm[0].logits[1], ar.logits[1])
    assert cloze is not None and cloze_mask(targets[:, :-1], m.tokenizer.PAD).shape[-1] == targets.shape[1] - 1


def test_autoregressive_cache_matches_full_recompute() -> None:
    from str_distill.models.decoder import decode_autoregressive

    m = tiny()
    tok = m.tokenizer
    mem = m.decoder_memory(torch.randn(3, 16, m.config.neck_dim))
    a = decode_autoregressive(m.decoder, tok.BOS, tok.EOS, mem, 13, use_cache=True)
    b = decode_autoregressive(m.decoder, tok.BOS, tok.EOS, mem, 13, use_cache=False)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-4)


def test_joint_picks_the_candidate_with_the_higher_score() -> None:
    """Joint keeps, sample by sample, the candidate with the higher log p_att + w log p_ctc."""
    for w in (0.0, 1.0):
        m = tiny(joint_ctc_weight=w)
        x = torch.randn(3, 3, 32, 128)
        with torch.no_grad():
            feats = m.features(x)
            ctc = m.head(feats)
            out = m.read_joint(feats, ctc)
            c = m.joint_candidates(feats, ctc)
        score = c["att_lp"] + w * c["ctc_lp"]
        for i in range(3):
            want = c["cands"][3 + i] if score[3 + i] > score[i] else c["cands"][i]
            got = out.ids[i].tolist()
            got = got[: got.index(0)] if 0 in got else got
            assert got == want


def test_joint_keeps_a_ctc_reading_the_decoder_cannot_score() -> None:
    """CTC over the full dictionary, decoder over its first 94 characters: a CTC reading with other characters is
    kept as CTC read it, with CTC's per-character probabilities."""
    torch.manual_seed(0)
    m = build_model(get_config("siga-lcnet-t-ctc", charset="ppocrv6", dec_depth=1, dec_dim=32, dec_heads=2,
                               dec_max_length=12, dec_charset="ppocrv6-en", joint_ctc_weight=0.0)).eval()
    assert m.tokenizer.num_classes > 1000 and m.dec_tokenizer.num_classes == 95
    x = torch.randn(2, 3, 32, 128)
    with torch.no_grad():
        feats = m.features(x)
        ctc = torch.full((2, feats.shape[1], m.tokenizer.num_classes), -10.0)
        ctc[:, :, 0] = 0.0
        ctc[0, 2, 2000] = 10.0  # sample 0: CTC reads one character outside ASCII
        ctc[1, 2, 40] = 10.0  # sample 1: one ASCII character
        att = m.read_attention(m.decoder_memory(feats))
        assert att.logits.shape[-1] == m.tokenizer.num_classes and torch.isinf(att.logits[..., 95:]).all()
        out = m.read_joint(feats, ctc)
    assert out.ids[0, 0] == 2000 and out.ids[0, 1] == 0
    probs = out.logits.softmax(-1)
    assert abs(float(probs[0, 0, 2000]) - float(ctc[0, 2].softmax(-1).max())) < 1e-3
    with pytest.raises(ValueError, match="first characters"):
        get_config("siga-lcnet-t-ctc", charset="94", dec_depth=1, dec_charset="ppocrv6-en")


def test_recognizer_reads_with_every_decoding_and_attention_maps() -> None:
    rec = Recognizer(tiny(), "cpu")
    imgs = [np.random.default_rng(i).integers(0, 255, (32, 90, 3), dtype=np.uint8) for i in range(3)]
    for decoding in ("ctc", "attention", "joint"):
        preds = rec.predict(imgs, decoding=decoding)
        assert len(preds) == 3
        for p in preds:
            assert len(p.char_probs) == len(p.text) and 0.0 <= p.confidence <= 1.0
    p = rec.predict(imgs[:1], decoding="attention", return_attention=True)[0]
    assert p.attention is not None and p.attention.shape[1] == 1 and p.attention.shape[2] == 128 // 8
    with pytest.raises(ValueError, match="return_attention"):
        rec.predict(imgs[:1], decoding="joint", return_attention=True)


def test_save_load_round_trip(tmp_path) -> None:
    from str_distill.hub.loading import load_model
    from str_distill.hub.serialization import save_pretrained

    m = tiny(default_decoding="joint")
    save_pretrained(m, tmp_path / "m")
    back = load_model(tmp_path / "m").eval()
    assert back.decodings[0] == "joint"
    x = torch.randn(1, 3, 32, 128)
    torch.testing.assert_close(back(x, "attention").logits, m(x, "attention").logits)


def test_export_of_a_decoder_model_reads_ctc(tmp_path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from str_distill.export import export_onnx

    m = tiny()
    path = export_onnx(m, tmp_path / "m.onnx")
    rec = Recognizer.from_pretrained(path)
    assert rec.model.decodings == ("ctc",)
    img = np.random.default_rng(0).integers(0, 255, (32, 90, 3), dtype=np.uint8)
    want = Recognizer(m, "cpu").predict([img], decoding="ctc")[0]
    assert rec.predict([img])[0].text == want.text


def test_decoder_training_lowers_the_loss(tmp_path) -> None:
    from str_distill.training.decoder_fit import FeatureCache, decoder_loss, train_decoder

    m = tiny()
    g = torch.Generator().manual_seed(0)
    words = ["ab", "cd", "abc", "dcba"]
    cache = FeatureCache([torch.randn(16, m.config.neck_dim, generator=g).half() for _ in words * 4], words * 4,
                         list(range(16)), [0] * 16)
    rng = np.random.default_rng(0)
    mem = torch.stack(cache.feats).float()
    tg = m.tokenizer.encode(cache.labels)
    with torch.no_grad():
        before = float(decoder_loss(m, mem, tg, "plm", 2, rng))
    enc_before = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("decoder.")}
    state = train_decoder(m, cache, tmp_path, minutes=0.05, objective="plm", num_perms=2, batch_size=16, lr=3e-3)
    with torch.no_grad():
        after = float(decoder_loss(m, mem, tg, "plm", 2, rng))
    assert state["steps"] > 5 and after < before
    for k, v in m.state_dict().items():  # only the decoder (and its position scale) trained
        if k in enc_before and k != "pos_scale":
            assert torch.equal(v, enc_before[k]), k
