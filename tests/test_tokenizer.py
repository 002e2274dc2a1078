"""The tokenizer contract shared by CTC and attention decoding."""

from __future__ import annotations

import math

import pytest
import torch

from str_distill.tokenizer import CHARSETS, Tokenizer, resolve_charset


def probs_for(tok: Tokenizer, seqs: list[list[int]], p: float = 0.9) -> torch.Tensor:
    """``(B, T, C+1)`` probabilities putting ``p`` on each given class id, the rest spread evenly."""
    t = max(len(s) for s in seqs)
    c = tok.num_classes
    out = torch.full((len(seqs), t, c), (1 - p) / (c - 1))
    for b, seq in enumerate(seqs):
        for i, k in enumerate(seq):
            out[b, i, k] = p
    return out


def ids(tok: Tokenizer, text: str) -> list[int]:
    return [tok.charset.index(ch) + 1 for ch in text]


# ------------------------------------------------------------------------------------------------------ CTC
@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ("aab", "ab"),  # repeats collapse
        ("a_a", "aa"),  # a blank between repeats keeps both
        ("__a__bb_b_", "abb"),
        ("____", ""),  # all blank
        ("a", "a"),
        ("aaaa", "a"),
    ],
)
def test_ctc_collapse(frames: str, expected: str) -> None:
    tok = Tokenizer("36")
    seq = [0 if ch == "_" else tok.charset.index(ch) + 1 for ch in frames]
    (d,) = tok.decode(probs_for(tok, [seq]), mode="ctc")
    assert d.text == expected
    assert d.char_probs.shape == (len(expected),)
    assert d.char_probs.dtype == torch.float32
    assert d.path_probability == pytest.approx(0.9 ** len(frames), rel=1e-5)  # greedy path probability
    assert d.confidence == pytest.approx(0.9, rel=1e-5)  # the lowest: characters, or the blanks of an empty one


def test_ctc_repeat_takes_max_prob() -> None:
    tok = Tokenizer("36")
    probs = probs_for(tok, [ids(tok, "aa")])
    probs[0, 0, ids(tok, "a")[0]], probs[0, 1, ids(tok, "a")[0]] = 0.6, 0.8
    (d,) = tok.decode(probs, mode="ctc")
    assert d.text == "a"
    assert d.char_probs.tolist() == pytest.approx([0.8])


def test_ctc_truncates_to_max_length() -> None:
    tok = Tokenizer("36", max_length=25)
    frames = []
    for i in range(32):  # 32 characters separated by blanks in 64 frames
        frames += [ids(tok, "abc"[i % 3])[0], 0]
    (d,) = tok.decode(probs_for(tok, [frames]), mode="ctc")
    assert len(d.text) == 25 and d.char_probs.shape == (25,)
    assert d.text == ("abc" * 9)[:25]


def test_ctc_batch_elements_independent() -> None:
    tok = Tokenizer("36")
    probs = probs_for(tok, [ids(tok, "hhi"), [0, 0, 0], ids(tok, "xyz")])
    assert [d.text for d in tok.decode(probs, mode="ctc")] == ["hi", "", "xyz"]


# ------------------------------------------------------------------------------------------------------ attention
def test_attention_stops_at_first_eos() -> None:
    tok = Tokenizer("94")
    seq = ids(tok, "Cat") + [0] + ids(tok, "dog") + [0]
    (d,) = tok.decode(probs_for(tok, [seq], p=0.8))
    assert d.text == "Cat"
    assert d.char_probs.tolist() == pytest.approx([0.8] * 3)
    assert d.path_probability == pytest.approx(0.8**4)  # three characters and the EOS
    assert d.confidence == pytest.approx(0.8)


def test_attention_eos_first_gives_empty_text() -> None:
    tok = Tokenizer("94")
    (d,) = tok.decode(probs_for(tok, [[0, 5, 6]], p=0.7))
    assert d.text == "" and d.char_probs.numel() == 0
    assert d.confidence == pytest.approx(0.7) and d.path_probability == pytest.approx(0.7)


def test_attention_without_eos_stops_at_max_length() -> None:
    tok = Tokenizer("36", max_length=5)
    (d,) = tok.decode(probs_for(tok, [ids(tok, "abcdef")], p=0.5))
    assert d.text == "abcde"
    assert d.path_probability == pytest.approx(0.5**5)  # no EOS factor
    assert d.confidence == pytest.approx(0.5)


def test_decode_rejects_bad_shapes_and_modes() -> None:
    tok = Tokenizer("36")
    with pytest.raises(ValueError, match="shape"):
        tok.decode(torch.rand(2, 5, 10))
    with pytest.raises(ValueError, match="shape"):
        tok.decode(torch.rand(5, tok.num_classes))
    with pytest.raises(ValueError, match="mode"):
        tok.decode(torch.rand(1, 5, tok.num_classes), mode="beam")  # type: ignore[arg-type]


def test_encode_decode_round_trip() -> None:
    tok = Tokenizer("94")
    labels = ["Hello!", "", "a", "x" * 25]
    targets = tok.encode(labels)
    assert targets.shape == (4, 27)
    assert targets[:, 0].eq(tok.BOS).all()
    assert targets[1, 1] == tok.EOS and targets[1, 2:].eq(tok.PAD).all()
    one_hot = torch.nn.functional.one_hot(targets[:, 1:], tok.num_input_tokens)[..., : tok.num_classes].float()
    assert [d.text for d in tok.decode(one_hot)] == labels


def test_encode_ctc() -> None:
    tok = Tokenizer("36")
    targets, lengths = tok.encode_ctc(["ab", "", "xyz"])
    assert lengths.tolist() == [2, 0, 3]
    assert targets.tolist() == [ids(tok, "ab") + [0], [0, 0, 0], ids(tok, "xyz")]


def test_special_indices() -> None:
    tok = Tokenizer("36")
    assert (tok.EOS, tok.BLANK, tok.BOS, tok.PAD, tok.MASK) == (0, 0, 37, 38, 39)
    assert tok.num_classes == 37 and tok.num_input_tokens == 40 and len(tok) == 36


# ------------------------------------------------------------------------------------------------------ charsets
def test_out_of_charset_labels_dropped_or_rejected() -> None:
    drop = Tokenizer("36")
    assert drop.normalize("Café-Noir 2") == "cafenoir2"  # accents folded, case folded, '-' and ' ' dropped
    assert drop.unknown_chars("Café-Noir 2") == "- "
    strict = Tokenizer("36", unknown="error")
    with pytest.raises(ValueError, match="outside the charset"):
        strict.normalize("a-b")
    assert strict.normalize("ÉTÉ") == "ete"


def test_case_kept_when_charset_has_both_cases() -> None:
    tok = Tokenizer("62")
    assert tok.normalize("HeLLo!") == "HeLLo"
    assert Tokenizer("94").normalize("HeLLo!") == "HeLLo!"


def test_encode_rejects_unnormalized_or_long_labels() -> None:
    tok = Tokenizer("36", max_length=4)
    with pytest.raises(ValueError, match="outside the charset"):
        tok.encode(["A"])
    with pytest.raises(ValueError, match="max_length"):
        tok.encode(["abcde"])
    with pytest.raises(ValueError, match="max_length"):
        tok.encode_ctc(["abcde"])


def test_custom_charset() -> None:
    tok = Tokenizer("αβγ", max_length=8)
    assert tok.num_classes == 4
    assert tok.normalize("αxβ") == "αβ"
    (d,) = tok.decode(probs_for(tok, [[3, 1, 0]]))
    assert d.text == "γα"
    (c,) = tok.decode(probs_for(tok, [[2, 2, 0, 2]]), mode="ctc")
    assert c.text == "ββ"


def test_charset_validation() -> None:
    assert resolve_charset("36") == CHARSETS["36"]
    assert len(CHARSETS["94"]) == 94 and len(set(CHARSETS["94"])) == 94
    with pytest.raises(ValueError, match="repeated"):
        Tokenizer("abca")
    with pytest.raises(ValueError, match="empty"):
        Tokenizer("")
    with pytest.raises(ValueError, match="unknown"):
        Tokenizer("36", unknown="keep")  # type: ignore[arg-type]


def test_path_probability_is_product_and_confidence_the_lowest_token() -> None:
    tok = Tokenizer("36")
    torch.manual_seed(0)
    probs = torch.rand(3, 8, tok.num_classes).softmax(-1)
    for d, p in zip(tok.decode(probs), probs):
        n = len(d.text)
        tokens = d.char_probs.tolist() + ([p[n].max().item()] if n < 8 else [])
        eos = p[n].max().item() if n < 8 else 1.0
        assert math.isclose(d.path_probability, float(d.char_probs.prod()) * eos, rel_tol=1e-5)
        assert math.isclose(d.confidence, min(tokens), rel_tol=1e-6)


@pytest.mark.parametrize("mode", ["ctc", "attention"])
def test_confidence_does_not_shrink_with_length(mode: str) -> None:
    """Every character read at 0.9: a 3- and a 24-character reading get the same confidence (attention: their path
    probabilities differ by a factor 0.9 ** 21)."""
    tok = Tokenizer("36")
    short, long = ids(tok, "abc"), ids(tok, "abcdefghijklmnopqrstuvwx")
    if mode == "ctc":  # characters separated by blanks, padded with blanks to one length
        seqs = [[x for c in s for x in (c, 0)] for s in (short, long)]
        seqs = [s + [0] * (48 - len(s)) for s in seqs]
    else:
        seqs = [s + [0] * (25 - len(s)) for s in (short, long)]
    a, b = tok.decode(probs_for(tok, seqs, p=0.9), mode=mode)
    assert (a.text, b.text) == ("abc", "abcdefghijklmnopqrstuvwx")
    assert a.confidence == pytest.approx(0.9, rel=1e-5) and b.confidence == pytest.approx(0.9, rel=1e-5)
    if mode == "attention":  # (CTC: both paths have 48 frames at 0.9, blanks included)
        assert b.path_probability < a.path_probability * 0.9**20
