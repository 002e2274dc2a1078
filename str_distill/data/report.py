"""Bad-sample accounting: every sample a data source cannot use is counted, with a few examples, and reported.

Workers never drop a sample silently and never crash on one: they record it in a :class:`BadSampleReport` that
travels with the next batch (:attr:`str_distill.data.collate.Batch.bad`) and is merged in the main process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["REASONS", "BadSampleReport", "merge_reports"]

#: Reasons a sample is rejected (or, for ``stripped_chars``, repaired), with the text used in reports.
REASONS: dict[str, str] = {
    "undecodable_image": "image cannot be decoded",
    "missing_image": "image file does not exist",
    "empty_label": "label is empty (after normalization to the charset)",
    "too_long": "label is longer than the model's max label length",
    "out_of_charset": "label has characters outside the charset (sample skipped)",
    "stripped_chars": "label had characters outside the charset (characters removed, sample kept)",
}

MAX_EXAMPLES = 5


@dataclass
class BadSampleReport:
    """Counts of rejected samples per ``(source, reason)``, with up to :data:`MAX_EXAMPLES` examples each.

    Attributes:
        counts: ``{(source, reason): n}``.
        examples: ``{(source, reason): [(key, detail), ...]}``; ``key`` names the sample (path or LMDB index).
        seen: samples looked at per source (good + bad), so that rates can be reported.
    """

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    examples: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)

    def add(self, source: str, reason: str, key: str, detail: str = "") -> None:
        """Record one bad sample of ``source`` (``reason`` is one of :data:`REASONS`)."""
        if reason not in REASONS:
            raise ValueError(f"unknown bad-sample reason {reason!r}; known: {', '.join(REASONS)}")
        k = (source, reason)
        self.counts[k] = self.counts.get(k, 0) + 1
        ex = self.examples.setdefault(k, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append((str(key), detail))

    def add_seen(self, source: str, n: int = 1) -> None:
        self.seen[source] = self.seen.get(source, 0) + n

    def merge(self, other: BadSampleReport | None) -> BadSampleReport:
        """Add ``other``'s counts into this report (in place) and return ``self``."""
        if other is None:
            return self
        for k, n in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + n
        for k, ex in other.examples.items():
            mine = self.examples.setdefault(k, [])
            mine.extend(ex[: max(MAX_EXAMPLES - len(mine), 0)])
        for s, n in other.seen.items():
            self.seen[s] = self.seen.get(s, 0) + n
        return self

    @property
    def total(self) -> int:
        """Number of rejected samples (repairs such as ``stripped_chars`` are not rejections)."""
        return sum(n for (_, r), n in self.counts.items() if r != "stripped_chars")

    def count(self, reason: str | None = None, source: str | None = None) -> int:
        """Sum of counts, optionally filtered by reason and/or source."""
        return sum(
            n
            for (s, r), n in self.counts.items()
            if (reason is None or r == reason) and (source is None or s == source)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: ``{"total": n, "seen": {...}, "by_source": {source: {reason: {count, examples}}}}``."""
        by_source: dict[str, dict[str, Any]] = {}
        for (s, r), n in sorted(self.counts.items()):
            by_source.setdefault(s, {})[r] = {"count": n, "examples": [list(e) for e in self.examples.get((s, r), [])]}
        return {"total": self.total, "seen": dict(sorted(self.seen.items())), "by_source": by_source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BadSampleReport:
        rep = cls(seen=dict(d.get("seen", {})))
        for s, reasons in d.get("by_source", {}).items():
            for r, v in reasons.items():
                rep.counts[(s, r)] = int(v["count"])
                rep.examples[(s, r)] = [tuple(e) for e in v.get("examples", [])]  # type: ignore[misc]
        return rep

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    def format(self, title: str = "bad samples") -> str:
        """A human-readable table, one line per ``(source, reason)`` plus examples; says so when there are none."""
        if not self.counts:
            looked = sum(self.seen.values())
            return f"{title}: none" + (f" ({looked} samples checked)" if looked else "")
        lines = [f"{title}: {self.total} rejected" + self._rate()]
        for (s, r), n in sorted(self.counts.items()):
            lines.append(f"  {s}: {n} x {r} ({REASONS[r]})")
            for key, detail in self.examples.get((s, r), []):
                lines.append(f"      {key}" + (f"  {detail}" if detail else ""))
        return "\n".join(lines)

    def _rate(self) -> str:
        looked = sum(self.seen.values())
        return f" of {looked} samples looked at ({100.0 * self.total / looked:.2f}%)" if looked else ""


def merge_reports(reports: Iterable[BadSampleReport | None]) -> BadSampleReport:
    """One report summing ``reports``."""
    out = BadSampleReport()
    for r in reports:
        out.merge(r)
    return out
