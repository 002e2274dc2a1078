"""Word accuracy and 1-NED under the standard STR evaluation protocols.

* ``"36"`` (the headline number): NFKD-fold to ASCII, lower-case, keep only ``[0-9a-z]``, exact match.
* ``"94"``: NFKD-fold to ASCII, keep the 94 printable non-space ASCII characters, case-sensitive exact match.

Both sides (label and prediction) go through the same filter; samples whose *filtered label* is empty are
dropped (counted in :attr:`WordMetrics.dropped`). 1-NED is ``1 - mean(ED / max(len(pred), len(gt)))`` (ICDAR 2019).
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass
from typing import Literal

__all__ = ["PROTOCOLS", "WordMetrics", "edit_distance", "normalize_protocol"]

Protocol = Literal["36", "94"]
PROTOCOLS: dict[str, str] = {
    "36": string.digits + string.ascii_lowercase,
    "94": string.digits + string.ascii_lowercase + string.ascii_uppercase + string.punctuation,
}


def normalize_protocol(text: str, protocol: Protocol = "36") -> str:
    """Filter a label or prediction for comparison under ``protocol`` (see the module docstring)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    if protocol == "36":
        folded = folded.lower()
    keep = PROTOCOLS[protocol]
    return "".join(c for c in folded if c in keep)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (unit costs for insertion, deletion, substitution)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@dataclass
class WordMetrics:
    """Accumulates word accuracy and 1-NED over ``(prediction, label)`` pairs.

    Attributes:
        protocol: ``"36"`` or ``"94"``.
        count: samples scored (filtered label non-empty).
        correct: exact matches after filtering.
        ned_sum: sum of normalized edit distances ``ED / max(len p, len g)``.
        dropped: samples skipped because the filtered label is empty.
    """

    protocol: Protocol = "36"
    count: int = 0
    correct: int = 0
    ned_sum: float = 0.0
    dropped: int = 0

    def update(self, prediction: str, label: str) -> bool | None:
        """Score one pair; returns whether it is correct, or ``None`` if the sample is dropped."""
        gt = normalize_protocol(label, self.protocol)
        if not gt:
            self.dropped += 1
            return None
        pred = normalize_protocol(prediction, self.protocol)
        self.count += 1
        ok = pred == gt
        self.correct += ok
        self.ned_sum += edit_distance(pred, gt) / max(len(pred), len(gt))
        return ok

    def merge(self, other: WordMetrics) -> WordMetrics:
        """Add ``other`` into this accumulator (sample-weighted totals); returns ``self``."""
        if other.protocol != self.protocol:
            raise ValueError("cannot merge metrics of different protocols")
        self.count += other.count
        self.correct += other.correct
        self.ned_sum += other.ned_sum
        self.dropped += other.dropped
        return self

    @property
    def accuracy(self) -> float:
        """Word accuracy in [0, 1] (0 when nothing was scored)."""
        return self.correct / self.count if self.count else 0.0

    @property
    def one_minus_ned(self) -> float:
        """1 - mean normalized edit distance, in [0, 1]."""
        return 1.0 - self.ned_sum / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "protocol": self.protocol,
            "count": self.count,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "one_minus_ned": self.one_minus_ned,
            "dropped": self.dropped,
        }
