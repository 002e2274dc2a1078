"""Train the CPU student ``siga-vit-t-ctc`` on a CPU: an ablation at equal time, then a longer run of the best arm.

    python recipes/student/train.py --data-root path/to/sets -o runs/student [--arm-minutes 15 --main-minutes 85]

``--data-root`` holds the real training sets (IIIT5K_train, SVT_train, IC15_train, IC03_train) and IIIT5K (the
benchmark; never trained on). Every run trains on synthetic words rendered on the fly (half of every batch) and the
real sets, keeps 5 % of every real set out as the validation split (the fine-tuning recipe's split), reads it every
250 steps and keeps the best weights. The arms, at the same wall-clock budget, seed and data:

* ``supervised``: CTC on the labels, from random weights;
* ``teacher``: + distillation from the frozen default recognizer (its per-frame posteriors as soft CTC targets);
* ``teacher-features``: + encoder blocks 4 and 8 matched to the teacher's per-frame features (CLIP-OCR's
  consistency loss, ``--teacher-features``);
* ``ccd-teacher``: a third of the budget CCD self-supervised pretraining of the encoder on the same images (labels
  unused), the rest as ``teacher`` from those encoder weights.

Then ``main`` trains the best arm's recipe for ``--main-minutes`` more, starting from that arm's final weights (or from
``--init``: the last shipped student). Every run folder that exists is resumed; a finished one is only evaluated.
Results (validation split and IIIT5K, 36 and 94 characters, reading speed left to the benchmark) go to
``OUT/results.json`` and ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "recipes" / "finetune"))

from compare import evaluate  # noqa: E402  (the fine-tuning recipe's evaluation: same split, same protocols)

MODEL, CHARSET, TEACHER, SEED = "siga-vit-t-ctc", "94", "ppocrv6-small.scene-ft", 0
REAL = {"IIIT5K_train": 0.2, "IC15_train": 0.15, "IC03_train": 0.1, "SVT_train": 0.05}
TEACHER_ARGS = ["--teacher", TEACHER, "--teacher-weight", "1.0", "--teacher-temperature", "2.0"]
FEATURE_ARGS = ["--teacher-features", "4,8", "--teacher-feature-weight", "1.0"]
ARMS = ("supervised", "teacher", "teacher-features", "ccd-teacher")


def data_specs(root: Path) -> list[str]:
    return ["synth:0.5", *[f"{root / s}:{w}" for s, w in REAL.items()]]


def run_logged(cmd: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def train(name: str, root: Path, out: Path, minutes: float, extra: list[str], lr: float = 5e-4) -> dict[str, Any]:
    run = out / name
    cmd = ["str-distill", "train", *extra, "--data", *data_specs(root), "--val-split", "0.05", "--seed", str(SEED),
           "--minutes", f"{minutes:g}", "--batch-size", "64", "--lr", f"{lr:g}", "--warmup", "0.05",
           "--val-every", "250", "--keep-best", "--save-minutes", "5", "--progress", "log", "--log-every", "50",
           "--workers", "0", "-o", str(run)]
    if not (run / "final").is_dir():
        run_logged(cmd + (["--resume"] if (run / "checkpoint").is_dir() else []), out / f"{name}.log")
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in recs if r["type"] == "summary"][-1]
    return {"command": " ".join(cmd), "steps": last["step"], "minutes": minutes}


def pretrain(root: Path, out: Path, minutes: float) -> Path:
    """CCD on the images of the training mix (labels unused): ``OUT/ccd`` (resumed when it exists)."""
    run = out / "ccd"
    if not (run / "done").is_file():
        cmd = ["str-distill", "pretrain", "--method", "ccd", "--model", MODEL, "--data", *data_specs(root),
               "--minutes", f"{minutes:g}", "--batch-size", "64", "--workers", "0", "--seed", str(SEED),
               "--log-every", "10", "-o", str(run)]
        run_logged(cmd + (["--resume"] if (run / "ccd_state.pt").is_file() else []), out / "ccd.log")
        (run / "done").touch()
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--arm-minutes", type=float, default=15.0, help="budget of every ablation arm")
    ap.add_argument("--main-minutes", type=float, default=85.0, help="budget of the longer run (0: none)")
    ap.add_argument("--init", default=None, help="start the longer run from these weights (the shipped student)")
    ap.add_argument("--main-recipe", choices=list(ARMS[:3]),
                    help="the longer run's recipe (default: the arm best on the validation split; when every arm "
                    "reads nothing yet, pass the one whose losses fell furthest)")
    ap.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    out, root = args.output, args.data_root
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}

    def save() -> None:
        results_file.write_text(json.dumps(results, indent=2))

    base = ["--model", MODEL, "--charset", CHARSET]
    for arm in args.arms:
        if arm in results:
            continue
        t0 = time.time()
        if arm == "supervised":
            info = train(arm, root, out, args.arm_minutes, base)
        elif arm == "teacher":
            info = train(arm, root, out, args.arm_minutes, base + TEACHER_ARGS)
        elif arm == "teacher-features":
            info = train(arm, root, out, args.arm_minutes, base + TEACHER_ARGS + FEATURE_ARGS)
        else:
            ccd = pretrain(root, out, args.arm_minutes / 3)
            info = train(arm, root, out, args.arm_minutes * 2 / 3, ["--init", str(ccd), "--charset", CHARSET,
                                                                     *TEACHER_ARGS])
            info["pretrain_minutes"] = args.arm_minutes / 3
        info["wall_minutes"] = round((time.time() - t0) / 60, 1)
        info["eval"] = evaluate(out / arm / "final", root)  # the arm's weights at the end of its budget
        results[arm] = info
        save()
        print(arm, info, flush=True)

    if args.main_minutes > 0 and "main" not in results:
        done = [a for a in ARMS if a in results]
        best = args.main_recipe or max(done, key=lambda a: (
            results[a]["eval"]["val/36"], results[a]["eval"]["IIIT5K/36"], results[a]["eval"]["val/36/1-ned"]))
        start = args.init or str(out / best / "final")
        extra = ["--init", start, "--charset", CHARSET] + ([] if best == "supervised" else TEACHER_ARGS) + (
            FEATURE_ARGS if best == "teacher-features" else [])
        t0 = time.time()
        info = train("main", root, out, args.main_minutes, extra)
        info.update(recipe=best, init=start, wall_minutes=round((time.time() - t0) / 60, 1))
        info["eval"] = evaluate(out / "main" / ("best" if (out / "main" / "best").is_dir() else "final"), root)
        results["main"] = info
        save()
        print("main", info, flush=True)

    lines = ["| run | minutes | steps | val 36 | val 94 | IIIT5K 36 | IIIT5K 94 |", "|---|---|---|---|---|---|---|"]
    for name in (*ARMS, "main"):
        if name in results:
            r, e = results[name], results[name]["eval"]
            lines.append(f"| {name} | {r['minutes']:g} | {r['steps']} | {e['val/36']:.2f} | {e['val/94']:.2f} | "
                         f"{e['IIIT5K/36']:.2f} | {e['IIIT5K/94']:.2f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
