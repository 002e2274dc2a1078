"""Spell labels for a CLIP text tower one character per token, with no BPE merges file.

CLIP's byte-level BPE vocabulary (49,408 entries for OpenAI CLIP and the OpenCLIP ViT models) begins with:

* ids ``0..255``: the 256 single byte-characters, in the order of :func:`bytes_to_unicode`;
* ids ``256..511``: the same 256 characters followed by the end-of-word marker ``</w>``;
* then the merges, and at the very end ``<|startoftext|>`` (``vocab_size - 2`` = 49406) and ``<|endoftext|>``
  (``vocab_size - 1`` = 49407).

When a label is written with a space between its characters (``"hello"`` -> ``"h e l l o"``) every character is a
word of its own, so CLIP's tokenizer emits exactly ``char + "</w>"`` for each of them and never needs a merge. The
id of such a token is therefore ``256 + position of the character's byte in the bytes_to_unicode order``, and this
module computes it directly. Like CLIP's own tokenizer, labels are lower-cased first (CLIP never saw upper case).

Only characters that are one UTF-8 byte and not whitespace can be spelled this way (multi-byte characters need
merges, and whitespace is a separator, never a token): :func:`unspellable_chars` finds the others so that callers
can refuse a charset up front.
"""

from __future__ import annotations

from functools import lru_cache

import torch

__all__ = [
    "CLIP_VOCAB_SIZE",
    "byte_token_id",
    "bytes_to_unicode",
    "char_token_id",
    "special_ids",
    "spell",
    "unspellable_chars",
]

CLIP_VOCAB_SIZE = 49408
_BYTE_TOKENS = 256
_MIN_VOCAB = 2 * _BYTE_TOKENS + 2


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable-character table of byte-level BPE (GPT-2 / CLIP).

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) map to themselves; the
    other 68 bytes (control characters, space, ``\\x7f``..``\\xa0``, soft hyphen) map to ``chr(256 + k)`` in
    ascending byte order. The dict's iteration order (printable bytes first, then the others) is the order of the
    first 256 vocabulary entries.

    Returns:
        ``{byte: character}`` with 256 entries.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    k = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(_BYTE_TOKENS + k)
            k += 1
    return table


@lru_cache(maxsize=1)
def _byte_rank() -> dict[int, int]:
    return {b: i for i, b in enumerate(bytes_to_unicode())}


def byte_token_id(byte: int, end_of_word: bool = True) -> int:
    """Vocabulary id of a single byte-character, with (``256 + rank``) or without (``rank``) ``</w>``."""
    if not 0 <= byte < 256:
        raise ValueError(f"byte must be in 0..255, got {byte}")
    return _byte_rank()[byte] + (_BYTE_TOKENS if end_of_word else 0)


def unspellable_chars(text: str) -> str:
    """Characters of ``text`` that cannot be one CLIP token each: whitespace and non-ASCII (multi-byte) characters.

    Returns:
        The offending characters, de-duplicated in order of appearance (empty string if none).
    """
    bad: dict[str, None] = {}
    for c in text:
        if c.isspace() or len(c.encode("utf-8")) != 1:
            bad[c] = None
    return "".join(bad)


def char_token_id(char: str, lowercase: bool = True) -> int:
    """Vocabulary id of ``char + "</w>"`` (e.g. ``"a"`` -> 320, as CLIP's tokenizer gives for the word "a").

    Raises:
        ValueError: if ``char`` is not a single spellable character (see :func:`unspellable_chars`).
    """
    if len(char) != 1 or unspellable_chars(char):
        raise ValueError(f"{char!r} cannot be spelled as one CLIP token (need one non-space ASCII character)")
    if lowercase:
        char = char.lower()
    return byte_token_id(ord(char))


def special_ids(vocab_size: int = CLIP_VOCAB_SIZE) -> tuple[int, int]:
    """``(start_of_text, end_of_text)`` ids: the last two vocabulary entries (49406, 49407 for CLIP)."""
    if vocab_size < _MIN_VOCAB:
        raise ValueError(f"a CLIP vocabulary has at least {_MIN_VOCAB} entries, got {vocab_size}")
    return vocab_size - 2, vocab_size - 1


def spell(
    labels: list[str],
    vocab_size: int = CLIP_VOCAB_SIZE,
    length: int | None = None,
    lowercase: bool = True,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``[SOT, c_1</w>, ..., c_n</w>, EOT, 0...]`` for each label.

    Args:
        labels: the labels (each character must be spellable, see :func:`unspellable_chars`).
        vocab_size: the text tower's vocabulary size (SOT/EOT are its last two ids).
        length: sequence length ``T``; default ``max(len(label)) + 2``. Padding is id 0, as in CLIP (padding comes
            after EOT and a causal text tower never lets it change earlier positions).
        lowercase: lower-case the labels first, as CLIP's tokenizer does.

    Returns:
        ``(ids, eot_index)``: LongTensor ``(B, T)`` and LongTensor ``(B,)`` with the position of EOT (``len + 1``).

    Raises:
        ValueError: naming the label and characters that cannot be spelled, or if a label does not fit ``length``.
    """
    sot, eot = special_ids(vocab_size)
    width = max((len(x) for x in labels), default=0) + 2
    if length is not None:
        if length < width:
            raise ValueError(f"labels need {width} text positions (longest + SOT + EOT) but length is {length}")
        width = length
    ids = torch.zeros((len(labels), width), dtype=torch.long)
    for i, label in enumerate(labels):
        bad = unspellable_chars(label)
        if bad:
            raise ValueError(f"label {label!r} has characters that cannot be one CLIP token each: {bad!r}")
        text = label.lower() if lowercase else label
        ids[i, 0] = sot
        if text:
            ids[i, 1 : len(text) + 1] = torch.tensor([byte_token_id(ord(c)) for c in text], dtype=torch.long)
        ids[i, len(text) + 1] = eot
    eot_index = torch.tensor([len(x) + 1 for x in labels], dtype=torch.long)
    if device is not None:
        return ids.to(device), eot_index.to(device)
    return ids, eot_index
