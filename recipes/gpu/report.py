"""Gather a GPU session's arms into ``report.json``, choose the arm to ship and copy its weights to ``final/``.

    python recipes/gpu/report.py SESSION_DIR --arms scratch ccd [--plan ablation] [--arm-minutes 9]

The choice uses the validation split only (``val``: carved from the real training sets, never trained on): word
accuracy under the 36-character protocol with attention decoding, then 1-NED, then the order of ``--arms``. The
IIIT5K figures (the development benchmark) are reported, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

VAL_SET = "val"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
    return out


def benchmark(session: Path) -> dict[str, Any] | None:
    files = sorted(session.glob("bench*/metrics.jsonl"))
    recs = [r for f in files for r in read_jsonl(f) if r.get("type") == "benchmark"]
    return recs[-1] if recs else None


def evals(arm_dir: Path) -> dict[str, dict[str, Any]]:
    """``{"36_attention": {set: {count, accuracy, one_minus_ned}}, ...}`` from the arm's eval JSON files."""
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(arm_dir.glob("eval_*.json")):
        res = json.loads(f.read_text())
        out[f.stem.removeprefix("eval_")] = {
            s["set"]: {k: s[k] for k in ("count", "accuracy", "one_minus_ned")} for s in res["sets"]
        }
    return out


def arm_summary(session: Path, arm: str) -> dict[str, Any]:
    d = session / arm
    recs = read_jsonl(d / "metrics.jsonl")
    summary = next((r for r in reversed(recs) if r.get("type") == "summary"), {})
    config = next((r for r in recs if r.get("type") == "config"), {})
    train = [r for r in recs if r.get("type") == "train"]
    batch = config.get("train", {}).get("batch_size", 0)
    rates = [r["images_per_s"] for r in train[1:]] or [r["images_per_s"] for r in train]
    out: dict[str, Any] = {
        "steps": summary.get("step"),
        "train_seconds": summary.get("time"),
        "images_seen": (summary.get("step") or 0) * batch,
        "batch_size": batch,
        "reuse": config.get("train", {}).get("reuse"),
        "compile": config.get("train", {}).get("compile"),
        "lr": config.get("train", {}).get("lr"),
        "median_images_per_s": round(statistics.median(rates), 1) if rates else None,
        "median_data_wait": round(statistics.median(r.get("data_wait", 0.0) for r in train), 3) if train else None,
        "final_train_loss": train[-1]["loss"] if train else None,
        "final_train_acc": train[-1].get("train_acc") if train else None,
        "bad_samples": summary.get("bad_samples"),
        "val_during_training": summary.get("val"),
        "evals": evals(d),
        "init": config.get("init"),
        "argv": config.get("argv"),
    }
    pre = session / f"{arm}_pretrain" / "log.jsonl"
    if pre.is_file():
        plog = read_jsonl(pre)
        out["pretrain"] = {"records": len(plog), "last": plog[-1] if plog else None}
    return out


def score(arm: dict[str, Any]) -> tuple[float, float]:
    row = arm["evals"].get("36_attention", {}).get(VAL_SET)
    if row is None:  # no packed validation split: the trainer's own last validation total
        total = (arm.get("val_during_training") or {}).get("total") or {}
        return float(total.get("accuracy", -1.0)), float(total.get("one_minus_ned", -1.0))
    return float(row["accuracy"]), float(row["one_minus_ned"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("session", type=Path)
    ap.add_argument("--arms", nargs="+", required=True)
    ap.add_argument("--plan", default="ablation")
    ap.add_argument("--arm-minutes", type=float)
    ap.add_argument("--pretrain-minutes", type=float)
    args = ap.parse_args(argv)
    s: Path = args.session
    arms = {a: arm_summary(s, a) for a in args.arms}
    scores = {a: score(v) for a, v in arms.items()}
    chosen = max(args.arms, key=lambda a: (scores[a], -args.arms.index(a)))
    report = {
        "type": "session_report",
        "plan": args.plan,
        "arm_minutes": args.arm_minutes,
        "pretrain_minutes": args.pretrain_minutes if "ccd" in arms else None,
        "benchmark": benchmark(s),
        "arms": arms,
        "choice": {"arm": chosen, "by": "validation split: word accuracy (36, attention), then 1-NED",
                   "scores": {a: {"accuracy": v[0], "one_minus_ned": v[1]} for a, v in scores.items()}},
    }
    (s / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (s / "chosen.txt").write_text(chosen + "\n")
    final = s / "final"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(s / chosen / "final", final)
    print(f"{'arm':10s} {'steps':>7s} {'images':>10s} {'img/s':>8s} {'val acc':>8s} {'val 1-NED':>9s}")
    for a, v in arms.items():
        acc, ned = scores[a]
        print(f"{a:10s} {v['steps'] or 0:>7d} {v['images_seen']:>10d} {v['median_images_per_s'] or 0:>8.0f} "
              f"{100 * acc:>8.2f} {100 * ned:>9.2f}")
        for key, sets in sorted(v["evals"].items()):
            row = "  ".join(f"{name} {100 * m['accuracy']:.2f}/{100 * m['one_minus_ned']:.2f}"
                            for name, m in sets.items())
            print(f"    {key:15s} {row}")
    print(f"chosen: {chosen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
