"""How well each definition of a reading's confidence ranks right readings above wrong ones, and how well calibrated
it is: the data behind ``Prediction.confidence`` (the lowest of the per-token probabilities).

Candidates, all from one reading: the ``minimum`` of the per-character probabilities (the library's ``confidence``),
their ``geometric mean``, their arithmetic ``mean``, and the ``path probability`` (product of the per-frame maxima
for CTC, ``Prediction.path_probability``). For each set and protocol it prints:

* AUARC: the area under the accuracy-rejection curve (the accuracy of the readings kept when the least confident are
  rejected, averaged over every rejection rate from 0 to 100 %; higher is better; ``oracle`` rejects every wrong
  reading first);
* ECE: the expected calibration error over 15 equal-width bins (lower is better);
* the accuracy and the share kept at a threshold of 0.5;
* the mean confidence of right readings by length (does it shrink with length?);
* a bootstrap 95 % interval of the AUARC difference between the minimum and each other candidate.

and draws a reliability diagram and the accuracy-rejection curves with Pillow::

    python benchmarks/confidence_calibration.py --data path/to/IIIT5K_train path/to/SVT_train path/to/IC15_train \\
        path/to/IC03_train --val-split 0.05 --test path/to/IIIT5K --image docs/img/confidence_calibration.png

The validation split is the one ``str-distill eval --val-split 0.05 --seed 0`` scores. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

CANDIDATES = ("minimum", "geometric mean", "mean", "path probability")


def scores(pred: Any) -> dict[str, float]:
    """Every candidate confidence of one :class:`~str_distill.Prediction` (a reading of no character: the library's
    fallback for all but the path probability)."""
    p = pred.char_probs.double().numpy()
    if len(p) == 0:
        return {"geometric mean": pred.confidence, "minimum": pred.confidence, "mean": pred.confidence,
                "path probability": pred.path_probability}
    return {"minimum": pred.confidence, "geometric mean": float(np.exp(np.log(p).mean())), "mean": float(p.mean()),
            "path probability": pred.path_probability}


def auarc(conf: np.ndarray, correct: np.ndarray) -> float:
    """Mean accuracy of the ``k`` most confident readings over ``k = 1..n`` (ties broken by order)."""
    order = np.argsort(-conf, kind="stable")
    kept = np.cumsum(correct[order]) / np.arange(1, len(conf) + 1)
    return float(kept.mean())


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(conf) * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """``(mean confidence, accuracy, count)`` per equal-width bin (empty bins left out)."""
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return [(float(conf[idx == b].mean()), float(correct[idx == b].mean()), int((idx == b).sum()))
            for b in range(bins) if (idx == b).any()]


def read_sets(rec: Any, sets: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    from str_distill.training.evaluate import _payloads
    from str_distill.training.metrics import normalize_protocol

    rows = []
    for name, ds in sets:
        items = [(raw.image, raw.label, raw.key) for raw in (ds[i] for i in range(len(ds)))]
        for (_, label, _), pred in zip(items, rec.predict(_payloads(items), batch_size=32, errors="return")):
            if isinstance(pred, Exception) or not normalize_protocol(label, "36"):
                continue
            rows.append({"set": name, "label": label, "text": pred.text, **scores(pred),
                         "36": normalize_protocol(pred.text, "36") == normalize_protocol(label, "36"),
                         "94": normalize_protocol(pred.text, "94") == normalize_protocol(label, "94")})
    return rows


def summarize(rows: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    correct = np.array([r[protocol] for r in rows], dtype=float)
    out: dict[str, Any] = {"n": len(rows), "accuracy": float(correct.mean()),
                           "oracle AUARC": auarc(correct, correct), "candidates": {}}
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(rows), len(rows)) for _ in range(300)]
    ref = np.array([r[CANDIDATES[0]] for r in rows], dtype=float)
    lengths = np.array([len(r["text"]) for r in rows])
    for c in CANDIDATES:
        conf = np.array([r[c] for r in rows], dtype=float)
        keep = conf >= 0.5
        by_len = {}
        for lo, hi in ((0, 4), (5, 8), (9, 99)):
            m = (lengths >= lo) & (lengths <= hi) & (correct == 1)
            if m.any():
                by_len[f"{lo}-{hi}" if hi < 99 else f">={lo}"] = round(float(conf[m].mean()), 3)
        out["candidates"][c] = {
            "AUARC": auarc(conf, correct), "ECE": ece(conf, correct),
            "kept at 0.5": float(keep.mean()), "accuracy kept at 0.5": float(correct[keep].mean()) if keep.any() else 0,
            "mean confidence of right readings by length": by_len,
            "reliability": reliability(conf, correct),
        }
        if c != CANDIDATES[0]:
            diff = [auarc(ref[i], correct[i]) - auarc(conf[i], correct[i]) for i in draws]
            out["candidates"][c]["minimum - this, AUARC 95 %"] = [round(float(x), 4)
                                                                  for x in np.percentile(diff, [2.5, 97.5])]
    return out


def draw(results: dict[str, dict[str, Any]], rows: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Reliability diagrams (left) and accuracy-rejection curves (right), one row per set, protocol 36."""
    from PIL import Image, ImageDraw, ImageFont

    from str_distill.training.plot import PALETTE

    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 13)
    except OSError:
        font = ImageFont.load_default()
    panel, margin = 330, 50
    names = list(results)
    img = Image.new("RGB", (2 * (panel + margin) + 200, len(names) * (panel + margin + 20) + 10), "white")
    d = ImageDraw.Draw(img)
    for row, name in enumerate(names):
        top = 30 + row * (panel + margin + 20)
        res, rs = results[name]["36"], rows[name]
        correct = np.array([r["36"] for r in rs], dtype=float)
        lo = max(0.0, math.floor(correct.mean() * 10) / 10 - 0.1)  # the rejection curves' y axis: lo..1
        for col in range(2):
            x0, y0 = margin + col * (panel + margin), top
            d.rectangle([x0, y0, x0 + panel, y0 + panel], outline="black")
            for t in range(0, 11, 2):  # ticks 0..1
                d.text((x0 + t / 10 * panel - 8, y0 + panel + 3), f"{t / 10:.1f}", fill="black", font=font)
                y = t / 10 if col == 0 else lo + t / 10 * (1 - lo)
                d.text((x0 - 34, y0 + panel - t / 10 * panel - 7), f"{y:.2f}", fill="black", font=font)
            title = (f"{name} ({len(rs)} words): accuracy per confidence bin" if col == 0
                     else f"{name}: accuracy of the kept vs share rejected")
            d.text((x0, y0 - 18), title, fill="black", font=font)
            if col == 0:
                d.line([x0, y0 + panel, x0 + panel, y0], fill=(180, 180, 180))
        for i, c in enumerate(CANDIDATES):
            color = PALETTE[i]
            pts = [(margin + conf * panel, top + panel - acc * panel)
                   for conf, acc, _ in res["candidates"][c]["reliability"]]
            if len(pts) > 1:
                d.line(pts, fill=color, width=2)
            for x, y in pts:
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
            conf = np.array([r[c] for r in rs], dtype=float)
            order = np.argsort(-conf, kind="stable")
            kept = np.cumsum(correct[order]) / np.arange(1, len(conf) + 1)  # accuracy of the k most confident
            n = len(conf)
            step = max(1, n // 200)
            x1 = 2 * margin + panel
            curve = [(x1 + (1 - k / n) * panel, top + panel - (max(kept[k - 1], lo) - lo) / (1 - lo) * panel)
                     for k in range(n, 0, -step)]
            d.line(curve, fill=color, width=2)
            label = f"{c}: AUARC {res['candidates'][c]['AUARC']:.4f}, ECE {res['candidates'][c]['ECE']:.3f}"
            d.text((x1 + panel + 10, top + 20 + 36 * i), label[: label.index(":") + 1], fill=color, font=font)
            d.text((x1 + panel + 10, top + 36 + 36 * i), label[label.index(":") + 2:], fill=color, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="weights (default: the default model)")
    ap.add_argument("--data", nargs="*", default=[], help="sets whose validation split is scored")
    ap.add_argument("--val-split", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test", nargs="*", default=[], help="sets scored whole (e.g. IIIT5K)")
    ap.add_argument("--image", type=Path, default=None, help="write the reliability diagram here (PNG)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from str_distill import Recognizer
    from str_distill.data.mix import split_validation
    from str_distill.training.evaluate import open_eval_sets

    rec = Recognizer.from_pretrained(args.model, device="cpu")
    groups: dict[str, list[tuple[str, Any]]] = {}
    if args.data:
        groups["validation split"] = [(n, split_validation(ds, args.val_split, args.seed)[1])
                                      for n, ds in open_eval_sets(args.data)]
    for t in args.test:
        groups.update({n: [(n, ds)] for n, ds in open_eval_sets([t])})
    results: dict[str, dict[str, Any]] = {}
    all_rows: dict[str, list[dict[str, Any]]] = {}
    for name, sets in groups.items():
        t0 = time.perf_counter()
        rows = read_sets(rec, sets)
        all_rows[name] = rows
        results[name] = {p: summarize(rows, p) for p in ("36", "94")}
        print(f"\n{name}: {len(rows)} readings by {rec!r} in {time.perf_counter() - t0:.0f} s")
        for p in ("36", "94"):
            r = results[name][p]
            print(f"  protocol {p}: accuracy {100 * r['accuracy']:.2f} %, oracle AUARC {r['oracle AUARC']:.4f}")
            print(f"    {'candidate':18s} {'AUARC':>7s} {'ECE':>6s} {'kept@0.5':>9s} {'acc@0.5':>8s}  right readings' "
                  "mean confidence by length")
            for c, m in r["candidates"].items():
                print(f"    {c:18s} {m['AUARC']:7.4f} {m['ECE']:6.3f} {100 * m['kept at 0.5']:8.1f}% "
                      f"{100 * m['accuracy kept at 0.5']:7.2f}%  {m['mean confidence of right readings by length']}"
                      + (f"  min - this: {m['minimum - this, AUARC 95 %']}" if c != CANDIDATES[0] else ""))
    if args.image:
        draw(results, all_rows, args.image)
        print(f"\nwrote {args.image}")
    if args.json:
        args.json.write_text(json.dumps({"model": rec.name, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
