"""Compare fine-tuning recipes for the bundled PP-OCRv6 port on a CPU, at equal time per arm, and decide whether
any of them may ship.

    python recipes/finetune/compare.py --data-root path/to/sets --minutes 70 -o runs/ft-compare

``--data-root`` holds the real training sets (IIIT5K_train, SVT_train, IC15_train, IC03_train) and IIIT5K (the
benchmark; never trained on). Every arm trains from ``ppocrv6-small`` with ``str-distill train`` on the same data
(the real sets, weighted towards incidental scene text, strong augmentation of the real crops; ``--synth W`` mixes
in synthetic words), the same seed and the same wall-clock budget, keeps 5 % of every real set out as the
validation split, reads it every 250 steps and keeps the best weights (``best/``). Arms:

* ``plain``: CTC on the labels only (BatchNorm statistics fixed in every arm);
* ``lwf``: + distillation from the frozen original on every batch (its per-frame posteriors as soft targets);
* ``lwf-frozen``: + the backbone held fixed (neck and head adapt).

An arm whose run folder exists is resumed where it stopped (``--resume``), so a budget may be spread over several
sessions; a finished arm is only evaluated. Each arm's best weights, and their average with the original
(weight-space ensembling at 0.5), are evaluated on the validation split and on IIIT5K under the 36- and
94-character protocols; the table goes to ``OUT/table.md`` and ``OUT/results.json``. The ship rule: a candidate must
beat the original on the validation split and on IIIT5K (36 characters) and lose at most 0.3 point under 94
characters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from str_distill.training.publish import SCENE_TEXT_SETS as TRAIN_SETS
from str_distill.training.publish import SEED, VAL_SPLIT
from str_distill.training.publish import evaluate_splits as evaluate

ARMS: dict[str, list[str]] = {
    "plain": ["--freeze-bn"],
    "lwf": ["--freeze-bn", "--teacher", "init", "--teacher-weight", "1.0", "--teacher-temperature", "2.0"],
    "lwf-frozen": ["--freeze-bn", "--teacher", "init", "--teacher-weight", "1.0", "--teacher-temperature", "2.0",
                   "--freeze", "backbone"],
}


def train(arm: str, root: Path, out: Path, minutes: float, base: str, synth: float) -> dict[str, Any]:
    data = ([f"synth:{synth}"] if synth > 0 else []) + [f"{root / s}:{w}" for s, w in TRAIN_SETS.items()]
    cmd = ["str-distill", "train", "--init", base, "--data", *data, "--val-split", str(VAL_SPLIT), "--seed", str(SEED),
           "--minutes", str(minutes), "--batch-size", "32", "--lr", "3e-5", "--warmup", "0.05", "--ema", "0.999",
           "--augment-strength", "0.7", "--val-every", "250", "--keep-best", "--save-minutes", "5",
           "--progress", "log", "--log-every", "50", "--workers", "0", "-o", str(out / arm), *ARMS[arm]]
    t0 = time.time()
    if not (out / arm / "final").is_dir():
        if (out / arm / "checkpoint").is_dir():
            cmd.append("--resume")
        with open(out / f"{arm}.log", "a") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    recs = [json.loads(x) for x in (out / arm / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in recs if r["type"] == "summary"][-1]
    return {"command": " ".join(cmd), "steps": last["step"], "minutes": round((time.time() - t0) / 60, 1)}


def average(a: Path, b_name: str, out: Path, alpha: float = 0.5) -> Path:
    """``alpha * trained + (1 - alpha) * original`` into a save_pretrained folder."""
    from str_distill.hub.loading import load_model
    from str_distill.hub.serialization import save_pretrained

    trained, orig = load_model(a), load_model(b_name)
    sa, so = trained.state_dict(), orig.state_dict()
    mixed = {k: alpha * sa[k] + (1 - alpha) * so[k] if sa[k].is_floating_point() else sa[k] for k in sa}
    trained.load_state_dict(mixed)
    return save_pretrained(trained, out)


def ship_decision(candidate: dict[str, float], original: dict[str, float]) -> tuple[bool, list[str]]:
    """The ship rule: beat the original on the validation split and on IIIT5K (36 characters), and lose at most 0.3
    point on IIIT5K under 94 characters. Returns ``(ships, reasons it does not)``.

    Both dicts hold word accuracies in percent under the keys ``val/36``, ``IIIT5K/36`` and ``IIIT5K/94``.
    """
    why = []
    if not candidate["val/36"] > original["val/36"]:
        why.append(f"validation {candidate['val/36']:.2f} % is not above the original's {original['val/36']:.2f} %")
    if not candidate["IIIT5K/36"] > original["IIIT5K/36"]:
        why.append(f"IIIT5K {candidate['IIIT5K/36']:.2f} % is not above the original's {original['IIIT5K/36']:.2f} %")
    if candidate["IIIT5K/94"] < original["IIIT5K/94"] - 0.3:
        why.append(f"IIIT5K (94 characters) {candidate['IIIT5K/94']:.2f} % loses more than 0.3 point "
                   f"(original {original['IIIT5K/94']:.2f} %)")
    return not why, why


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=70.0, help="training minutes per arm")
    ap.add_argument("--synth", type=float, default=0.0, help="weight of synthetic words in the mix (default: none)")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--base", default="ppocrv6-small")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if "original" not in results:
        results["original"] = {"eval": evaluate(args.base, args.data_root)}
        results_file.write_text(json.dumps(results, indent=2))
    for arm in args.arms:
        if arm in results:
            continue
        info = train(arm, args.data_root, out, args.minutes, args.base, args.synth)
        best = out / arm / ("best" if (out / arm / "best").is_dir() else "final")
        info["eval"] = evaluate(best, args.data_root)
        avg = average(best, args.base, out / f"{arm}-avg")
        info["eval_avg"] = evaluate(avg, args.data_root)
        results[arm] = info
        results_file.write_text(json.dumps(results, indent=2))
        print(arm, info["steps"], info["eval"], info["eval_avg"], flush=True)
    base = results["original"]["eval"]
    lines = ["| weights | steps | val 36 | val 94 | IIIT5K 36 | IIIT5K 94 | ships? |", "|---|---|---|---|---|---|---|"]

    def row(name: str, steps: Any, e: dict[str, Any]) -> str:
        ok = ship_decision(e, base)[0]
        return (f"| {name} | {steps} | {e['val/36']:.2f} | {e['val/94']:.2f} | {e['IIIT5K/36']:.2f} | "
                f"{e['IIIT5K/94']:.2f} | {'yes' if ok else 'no'} |")

    lines.append(row("original (ppocrv6-small)", "-", base).replace("| no |", "| - |"))
    for arm in args.arms:
        if arm in results:
            lines.append(row(arm, results[arm]["steps"], results[arm]["eval"]))
            lines.append(row(f"{arm}, averaged 0.5 with the original", results[arm]["steps"],
                             results[arm]["eval_avg"]))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
