"""Benchmark evaluation through the inference predictor (so evaluation preprocessing == inference preprocessing).

For each set: labels are filtered with the protocol (:func:`~str_distill.training.metrics.normalize_protocol`);
samples whose filtered label is empty are dropped before prediction; the rest go through
``Recognizer.predict`` in a fixed order and batch size, so results are reproducible to the digit. Images that
cannot be read are counted (``unreadable``) and listed in the failures file, never silently skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from .metrics import WordMetrics, normalize_protocol

__all__ = ["EvalResult", "SetResult", "evaluate", "open_eval_sets"]

CHUNK = 4096  # samples held in memory at a time


@dataclass
class SetResult:
    """Scores of one set.

    Attributes:
        name: the set's name.
        metrics: accuracy / 1-NED accumulator.
        unreadable: images that could not be decoded (not scored).
        seconds: wall time of the set.
    """

    name: str
    metrics: WordMetrics
    unreadable: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"set": self.name, **self.metrics.to_dict(), "unreadable": self.unreadable, "seconds": self.seconds}


@dataclass
class EvalResult:
    """Scores of several sets and their sample-weighted total."""

    sets: list[SetResult]
    protocol: str = "36"
    decoding: str = "attention"
    mode: str = "autoregressive"
    failures: list[tuple[str, str, str, str, float]] = field(default_factory=list)

    @property
    def total(self) -> WordMetrics:
        tot = WordMetrics(self.protocol)  # type: ignore[arg-type]
        for s in self.sets:
            tot.merge(s.metrics)
        return tot

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "decoding": self.decoding,
            "mode": self.mode,
            "sets": [s.to_dict() for s in self.sets],
            "total": {**self.total.to_dict(), "unreadable": sum(s.unreadable for s in self.sets)},
        }

    def table(self) -> str:
        """A fixed-width table: one row per set and the sample-weighted total (accuracies in percent)."""
        head = f"{'set':<24} {'count':>7} {'word acc':>9} {'1-NED':>8} {'dropped':>8} {'unreadable':>10}"
        lines = [
            f"protocol {self.protocol} ({'case-insensitive [0-9a-z]' if self.protocol == '36' else '94 chars, cased'})"
            f", decoding {self.decoding}" + (f" ({self.mode})" if self.decoding == "attention" else ""),
            head,
            "-" * len(head),
        ]

        def row(name: str, m: WordMetrics, unreadable: int) -> str:
            return (
                f"{name:<24} {m.count:>7} {100 * m.accuracy:>9.2f} {100 * m.one_minus_ned:>8.2f} "
                f"{m.dropped:>8} {unreadable:>10}"
            )

        for s in self.sets:
            lines.append(row(s.name[:24], s.metrics, s.unreadable))
        if len(self.sets) > 1:
            lines.append("-" * len(head))
            lines.append(row("total (sample-weighted)", self.total, sum(s.unreadable for s in self.sets)))
        return "\n".join(lines)


def open_eval_sets(paths: Sequence[str | Path]) -> list[tuple[str, Any]]:
    """``(name, dataset)`` for each labelled set under ``paths`` (a set, or a folder of sets); names made unique."""
    from ..data.mix import open_set
    from ..data.spec import find_sets

    out: list[tuple[str, Any]] = []
    names: dict[str, int] = {}
    for p in paths:
        for s in find_sets(p):
            name = s.name
            names[name] = names.get(name, 0) + 1
            out.append((name if names[name] == 1 else f"{name}#{names[name]}", open_set(s)))
    return out


def evaluate(
    recognizer: Any,
    sets: Sequence[tuple[str, Any]],
    protocol: Literal["36", "94"] = "36",
    decoding: Literal["attention", "ctc", "greedy"] | None = None,
    mode: Literal["autoregressive", "parallel"] = "autoregressive",
    refine_iters: int = 1,
    batch_size: int = 64,
    max_samples: int | None = None,
    failures: str | Path | IO[str] | None = None,
    progress: bool = False,
    keep_failures: bool = False,
) -> EvalResult:
    """Evaluate ``recognizer`` (a :class:`str_distill.Recognizer`) on labelled sets.

    Args:
        sets: ``(name, dataset)`` pairs; items are :class:`~str_distill.data.collate.RawSample`.
        protocol: ``"36"`` (lower-case ``[0-9a-z]``) or ``"94"`` (94 printable characters, case-sensitive).
        decoding, mode, refine_iters: passed to ``Recognizer.predict`` (``decoding=None``: the model's own).
        max_samples: score only the first ``n`` samples of each set (in stored order).
        failures: write ``set, path, label, prediction, confidence`` (TSV, with a header) for every wrong or
            unreadable sample to this path or open file.
        keep_failures: also keep them in :attr:`EvalResult.failures`.

    Returns:
        Per-set scores and the total.
    """
    from ..predictor import resolve_decoding

    decoding = resolve_decoding(getattr(recognizer, "model", None), decoding)  # type: ignore[assignment]
    own = isinstance(failures, (str, Path))
    fh: IO[str] | None = open(failures, "w", encoding="utf-8") if own else failures  # type: ignore[arg-type]
    if fh is not None:
        fh.write("set\tpath\tlabel\tprediction\tconfidence\n")
    result = EvalResult([], protocol, decoding, mode)
    try:
        for name, ds in sets:
            t0 = time.perf_counter()
            metrics = WordMetrics(protocol)
            unreadable = 0
            n = len(ds) if max_samples is None else min(len(ds), max_samples)
            for lo in range(0, n, CHUNK):
                items: list[tuple[Any, str, str]] = []
                for i in range(lo, min(lo + CHUNK, n)):
                    raw = ds[i]
                    if not normalize_protocol(raw.label, protocol):
                        metrics.dropped += 1
                        continue
                    items.append((raw.image, raw.label, raw.key))
                preds = recognizer.predict(
                    _payloads(items), batch_size=batch_size, decoding=decoding, mode=mode,
                    refine_iters=refine_iters, progress=progress, errors="return",
                )
                for (_, label, key), pred in zip(items, preds):
                    if isinstance(pred, Exception):
                        unreadable += 1
                        row = (name, key, label, f"<unreadable: {pred}>", 0.0)
                    else:
                        if metrics.update(pred.text, label):
                            continue
                        row = (name, key, label, pred.text, float(pred.confidence))
                    if fh is not None:
                        fh.write("\t".join([row[0], row[1], _clean(row[2]), _clean(row[3]), f"{row[4]:.4f}"]) + "\n")
                    if keep_failures:
                        result.failures.append(row)
            result.sets.append(SetResult(name, metrics, unreadable, time.perf_counter() - t0))
    finally:
        if own and fh is not None:
            fh.close()
    return result


def _payloads(items: Iterable[tuple[Any, str, str]]) -> list[Any]:
    # A missing image file becomes an empty payload: the predictor reports it as unreadable.
    return [b"" if img is None else img for img, _, _ in items]


def _clean(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")
