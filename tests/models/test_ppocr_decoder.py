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


def test_joint_picks_the_candidate_with_the_higher_score(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the CTC weight at 0, joint keeps whichever candidate the decoder scores higher."""
    from str_distill.models import decoder as dec_mod
    from str_distill.models import ppocr as ppocr_mod

    m = tiny(joint_ctc_weight=0.0)
    x = torch.randn(2, 3, 32, 128)
    with torch.no_grad():
        feats = m.features(x)
        ctc = m.head(feats)
        out = m.read_joint(feats, ctc)
        tok = m.tokenizer
        c_ctc = ppocr_mod._ctc_greedy(ctc.argmax(-1), tok.BLANK, 12)
        c_att = ppocr_mod._until_eos(m.read_attention(m.decoder_memory(feats)).logits.argmax(-1), tok.EOS, 12)
        tg = ppocr_mod._targets(c_ctc + c_att, tok.BOS, tok.EOS, tok.PAD, x.device)
        mem = m.decoder_memory(feats)
        lp, _ = dec_mod.sequence_log_probs(m.decoder, torch.cat([mem, mem]), tg, tok.PAD)
    for i in range(2):
        want = c_att[i] if lp[2 + i] > lp[i] else c_ctc[i]
        got = out.ids[i].tolist()
        got = got[: got.index(tok.EOS)] if tok.EOS in got else got
        assert got == want


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
