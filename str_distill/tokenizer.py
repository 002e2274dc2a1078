"""Charsets and the one tokenizer contract shared by CTC and attention decoding.

Index layout (``C`` = number of characters in the charset):

* class ``0`` is *end-of-sequence* for the attention decoder and *blank* for CTC;
* character ``charset[i]`` is class ``i + 1``;
* ``BOS = C + 1`` and ``PAD = C + 2`` only ever appear as attention-decoder *inputs*; ``MASK = C + 3`` is the
  placeholder input of the parallel (non-autoregressive) pass.

Both heads therefore predict ``C + 1`` classes and :meth:`Tokenizer.decode` turns either head's probabilities into
text plus per-character probabilities.

Labels with characters outside the charset are handled by :meth:`Tokenizer.normalize`: Unicode is NFKD-folded to
ASCII where that keeps the character's identity (``é`` -> ``e``), case is folded when the charset has only one
case, and whatever is still unknown is either dropped (``unknown="drop"``, the default, reported by the data
layer) or raises ``ValueError`` (``unknown="error"``). Nothing crashes silently.
"""

from __future__ import annotations

import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["CHARSETS", "Decoded", "Tokenizer", "reading_confidence", "resolve_charset"]

CHARSETS: dict[str, str] = {
    "36": string.digits + string.ascii_lowercase,
    "62": string.digits + string.ascii_lowercase + string.ascii_uppercase,
    "94": string.digits + string.ascii_lowercase + string.ascii_uppercase + string.punctuation,
    # PP-OCRv6's first 94 classes after the blank, in that model's own order (not ASCII order)
    "ppocrv6-en": string.punctuation + string.digits + string.ascii_uppercase + string.ascii_lowercase,
}
#: Built-in charsets too long to write inline: a UTF-8 file in ``str_distill/charsets/``, one character per line,
#: plus characters appended after the file's list.
CHARSET_FILES: dict[str, tuple[str, str]] = {
    "ppocrv6": ("ppocrv6.txt", " "),  # PP-OCRv6's 18,708-character dictionary, then space (its last class)
}
_FILE_CACHE: dict[str, str] = {}


def resolve_charset(charset: str) -> str:
    """Return the literal characters for a built-in charset name (``"36"``, ``"62"``, ``"94"``, ``"ppocrv6-en"``,
    ``"ppocrv6"``) or a literal string.

    Raises:
        ValueError: if the literal charset is empty or has repeated characters.
    """
    if charset in CHARSET_FILES:
        return _charset_file(charset)
    chars = CHARSETS.get(charset, charset)
    if not chars:
        raise ValueError("charset is empty")
    dupes = sorted(c for c, n in Counter(chars).items() if n > 1)  # linear: a charset may be 20k characters
    if dupes:
        raise ValueError(f"charset has repeated characters: {''.join(dupes)!r}")
    return chars


def _charset_file(name: str) -> str:
    if name not in _FILE_CACHE:
        from pathlib import Path

        file, tail = CHARSET_FILES[name]
        lines = (Path(__file__).parent / "charsets" / file).read_text(encoding="utf-8").split("\n")
        _FILE_CACHE[name] = "".join(c for c in lines if c) + tail
    return _FILE_CACHE[name]


def reading_confidence(token_probs: Sequence[float], fallback: Sequence[float] = ()) -> float:
    """The confidence of a reading: the lowest probability among the tokens it emitted (its least sure character).

    It is not a product, so it does not fall with length (a 40-character line whose characters are all read at 0.9
    scores 0.9, where their product is 0.015); of the length-independent definitions measured (minimum, geometric
    and arithmetic mean) it ranked right readings above wrong ones best and was the best calibrated (see the API
    documentation, "Confidence").

    Args:
        token_probs: the probability of each emitted token: the characters, and for attention decoding the
            end-of-sequence token.
        fallback: used when ``token_probs`` is empty (a CTC reading of no character: the per-frame probabilities
            of the blanks, i.e. how sure the model is that there is no text).

    Returns:
        A float in ``[0, 1]``; ``0.0`` when both are empty.
    """
    probs = token_probs if len(token_probs) else fallback
    return min(1.0, float(min(probs))) if len(probs) else 0.0


@dataclass(frozen=True)
class Decoded:
    """One decoded sequence.

    Attributes:
        text: the recognized string.
        char_probs: tensor of shape ``(len(text),)``: the probability of each emitted character.
        confidence: in ``[0, 1]``, comparable across lengths: the lowest probability among the emitted tokens
            (:func:`reading_confidence`: the characters, plus the end-of-sequence token for attention decoding; a
            CTC reading of no character: the lowest of its frames' blank probabilities).
        path_probability: in ``[0, 1]``, the probability of the decoded path, which falls with length. Attention:
            the product of the per-character probabilities and the end-of-sequence probability; CTC: the
            probability of the greedy frame path (product of the per-frame maximum probabilities).
    """

    text: str
    char_probs: torch.Tensor
    confidence: float
    path_probability: float = float("nan")


class Tokenizer:
    """Maps labels to class indices and decoder outputs back to text.

    Args:
        charset: a built-in charset name (``"36"``, ``"62"``, ``"94"``) or the literal characters.
        max_length: the longest label the decoder emits (25 by convention).
        unknown: what :meth:`normalize` does with characters outside the charset: ``"drop"`` or ``"error"``.
    """

    EOS = 0
    BLANK = 0

    def __init__(self, charset: str = "94", max_length: int = 25, unknown: Literal["drop", "error"] = "drop") -> None:
        if unknown not in ("drop", "error"):
            raise ValueError(f"unknown must be 'drop' or 'error', got {unknown!r}")
        self.charset = resolve_charset(charset)
        self.max_length = int(max_length)
        self.unknown = unknown
        self._index = {c: i + 1 for i, c in enumerate(self.charset)}
        self.BOS = len(self.charset) + 1
        self.PAD = len(self.charset) + 2
        self.MASK = len(self.charset) + 3
        has_lower = any(c.islower() for c in self.charset)
        has_upper = any(c.isupper() for c in self.charset)
        self._fold = "lower" if has_lower and not has_upper else "upper" if has_upper and not has_lower else None

    @property
    def num_classes(self) -> int:
        """Output classes of both heads: ``len(charset) + 1`` (EOS/blank first)."""
        return len(self.charset) + 1

    @property
    def num_input_tokens(self) -> int:
        """Attention-decoder input vocabulary: classes + BOS, PAD, MASK."""
        return len(self.charset) + 4

    def __len__(self) -> int:
        return len(self.charset)

    def __repr__(self) -> str:
        return f"Tokenizer(charset={self.charset!r}, max_length={self.max_length})"

    # ----------------------------------------------------------------------------------------------- labels
    def unknown_chars(self, label: str) -> str:
        """Characters of ``label`` that :meth:`normalize` cannot map into the charset (empty string if none)."""
        return "".join(c for c in self._fold_case(self._ascii_fold(label)) if c not in self._index)

    def normalize(self, label: str) -> str:
        """Map a label into the charset: NFKD ASCII folding, case folding, then drop or reject unknown characters.

        Raises:
            ValueError: with ``unknown="error"``, naming the characters outside the charset.
        """
        folded = self._fold_case(self._ascii_fold(label))
        bad = [c for c in folded if c not in self._index]
        if bad and self.unknown == "error":
            raise ValueError(f"label {label!r} has characters outside the charset: {''.join(sorted(set(bad)))!r}")
        return "".join(c for c in folded if c in self._index)

    def _ascii_fold(self, label: str) -> str:
        out = []
        for c in label:
            if c in self._index:
                out.append(c)
                continue
            base = unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode("ascii")
            out.append(base if base and all(b in self._index or b.swapcase() in self._index for b in base) else c)
        return "".join(out)

    def _fold_case(self, label: str) -> str:
        if self._fold == "lower":
            return label.lower()
        if self._fold == "upper":
            return label.upper()
        return label

    def encode(self, labels: list[str], device: torch.device | str | None = None) -> torch.Tensor:
        """Attention-decoder targets: ``[BOS, c_1..c_n, EOS, PAD...]``.

        Labels must already be normalized (see :meth:`normalize`) and at most ``max_length`` long.

        Returns:
            LongTensor of shape ``(B, max_len_in_batch + 2)``.
        """
        ids = [self._ids(label) for label in labels]
        width = max((len(x) for x in ids), default=0) + 2
        out = torch.full((len(ids), width), self.PAD, dtype=torch.long)
        for i, seq in enumerate(ids):
            out[i, 0] = self.BOS
            out[i, 1 : len(seq) + 1] = torch.tensor(seq, dtype=torch.long)
            out[i, len(seq) + 1] = self.EOS
        return out.to(device) if device is not None else out

    def encode_ctc(
        self, labels: list[str], device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC targets.

        Returns:
            ``(targets, lengths)``: LongTensor ``(B, max_len_in_batch)`` padded with 0 and LongTensor ``(B,)``.
        """
        ids = [self._ids(label) for label in labels]
        width = max((len(x) for x in ids), default=0)
        targets = torch.zeros((len(ids), max(width, 1)), dtype=torch.long)
        for i, seq in enumerate(ids):
            if seq:
                targets[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
        if device is not None:
            return targets.to(device), lengths.to(device)
        return targets, lengths

    def _ids(self, label: str) -> list[int]:
        if len(label) > self.max_length:
            raise ValueError(f"label {label!r} is {len(label)} characters long; max_length is {self.max_length}")
        try:
            return [self._index[c] for c in label]
        except KeyError as e:
            raise ValueError(
                f"label {label!r} has character {e.args[0]!r} outside the charset; normalize() it first"
            ) from None

    # ----------------------------------------------------------------------------------------------- decoding
    def decode(self, probs: torch.Tensor, mode: Literal["attention", "ctc"] = "attention",
               ids: torch.Tensor | None = None) -> list[Decoded]:
        """Greedy decoding of either head's probabilities.

        Args:
            probs: softmax output of shape ``(B, T, num_classes)``.
            mode: ``"attention"``: stop at the first EOS; ``"ctc"``: collapse repeats, then remove blanks.
            ids: ``(B, T)`` classes to read instead of the argmax of ``probs`` (a reading chosen elsewhere, e.g.
                joint CTC + attention rescoring); their probabilities are taken from ``probs``.

        Returns:
            One :class:`Decoded` per batch element.
        """
        if mode not in ("attention", "ctc"):
            raise ValueError(f"mode must be 'attention' or 'ctc', got {mode!r}")
        if probs.ndim != 3 or probs.shape[-1] != self.num_classes:
            raise ValueError(f"probs must have shape (B, T, {self.num_classes}), got {tuple(probs.shape)}")
        probs = probs.detach().float().cpu()
        if ids is None:
            pmax, ids = probs.max(-1)
        else:
            if ids.shape != probs.shape[:2]:
                raise ValueError(f"ids must have shape {tuple(probs.shape[:2])}, got {tuple(ids.shape)}")
            ids = ids.detach().cpu().long()
            pmax = probs.gather(-1, ids[..., None])[..., 0]
        return [self._decode_ctc(p, i) if mode == "ctc" else self._decode_attn(p, i) for p, i in zip(pmax, ids)]

    def _decode_attn(self, pmax: torch.Tensor, ids: torch.Tensor) -> Decoded:
        eos = (ids == self.EOS).nonzero()
        n = int(eos[0]) if len(eos) else len(ids)
        n_chars = min(n, self.max_length)
        text = "".join(self.charset[int(i) - 1] for i in ids[:n_chars])
        char_probs = pmax[:n_chars].clone()
        tokens = char_probs.tolist() + ([float(pmax[n])] if len(eos) else [])
        path = float(char_probs.prod()) * (float(pmax[n]) if len(eos) else 1.0)
        return Decoded(text, char_probs, reading_confidence(tokens), path)

    def _decode_ctc(self, pmax: torch.Tensor, ids: torch.Tensor) -> Decoded:
        chars: list[str] = []
        probs: list[float] = []
        prev = -1
        for p, i in zip(pmax.tolist(), ids.tolist()):
            if i != prev and i != self.BLANK:
                chars.append(self.charset[i - 1])
                probs.append(p)
            elif i == prev and i != self.BLANK:
                probs[-1] = max(probs[-1], p)
            prev = i
        chars, probs = chars[: self.max_length], probs[: self.max_length]
        conf = reading_confidence(probs, () if probs else pmax.tolist())
        return Decoded("".join(chars), torch.tensor(probs, dtype=torch.float32), conf, float(pmax.prod()))
