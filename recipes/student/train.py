"""Train a CPU student on a CPU: an ablation at equal time, then a longer run of the best arm.

    python recipes/student/train.py --data-root path/to/sets -o runs/student [--student siga-lcnet-t-ctc]
        [--arm-minutes 15 --main-minutes 85]

Two students: ``siga-vit-t-ctc`` (a ViT, from random weights) and ``siga-lcnet-t-ctc`` (PP-OCRv6 small's layers with
fewer blocks, read at 32 pixels high; every arm starts from the teacher's own blocks, depth-pruned by ``--init``).

``--data-root`` holds the real training sets (IIIT5K_train, SVT_train, IC15_train, IC03_train) and IIIT5K (the
benchmark; never trained on). Every run trains on synthetic words rendered on the fly (half of every batch) and the
real sets, keeps 5 % of every real set out as the validation split (the fine-tuning recipe's split), reads it every
250 steps and keeps the best weights. The arms, at the same wall-clock budget, seed and data:

* ``supervised``: CTC on the labels (the ViT from random weights, the conv student from the teacher's blocks);
* ``teacher``: + distillation from the frozen default recognizer (its per-frame posteriors as soft CTC targets; for the
  conv student a copy of it with the English head and padded to 160 pixels instead of 320, which reads the same
  (96.3 % of 300 IIIT5K images either way) at 1.7x the speed: ``OUT/teacher``);
* ``teacher-features`` (ViT only): + encoder blocks 4 and 8 matched to the teacher's per-frame features (CLIP-OCR's
  consistency loss, ``--teacher-features``);
* ``ccd-teacher`` (ViT only): a third of the budget CCD self-supervised pretraining of the encoder on the same images
  (labels unused), the rest as ``teacher`` from those encoder weights.

Then ``main`` trains the best arm's recipe for ``--main-minutes`` more, starting from that arm's final weights (or from
``--init``: the last shipped student). Every run folder that exists is resumed; a finished one is only evaluated.
Results (validation split and IIIT5K, 36 and 94 characters, reading speed left to the benchmark) go to
``OUT/results.json`` and ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from str_distill.training.publish import evaluate_splits as evaluate  # the fine-tuning recipes' split and protocols

CHARSET, TEACHER, SEED = "94", "ppocrv6-small.scene-ft", 0
REAL = {"IIIT5K_train": 0.2, "IC15_train": 0.15, "IC03_train": 0.1, "SVT_train": 0.05}
TEACHER_ARGS = ["--teacher", TEACHER, "--teacher-weight", "1.0", "--teacher-temperature", "2.0"]
#: per student: learning rate, the arms that apply, and whether it starts from the teacher's blocks
STUDENTS = {"siga-vit-t-ctc": (5e-4, ("supervised", "teacher", "teacher-features", "ccd-teacher"), False),
            "siga-lcnet-t-ctc": (3e-4, ("supervised", "teacher"), True)}
FEATURE_ARGS = ["--teacher-features", "4,8", "--teacher-feature-weight", "1.0"]
ARMS = ("supervised", "teacher", "teacher-features", "ccd-teacher")


def data_specs(root: Path) -> list[str]:
    return ["synth:0.5", *[f"{root / s}:{w}" for s, w in REAL.items()]]


def lean_teacher(out: Path) -> str:
    """``OUT/teacher``: the teacher with its English head only (95 rows) and a 160-pixel minimum width."""
    path = out / "teacher"
    if not (path / "config.json").is_file():
        from str_distill.hub.loading import load_model
        from str_distill.hub.serialization import save_pretrained
        from str_distill.models import get_config
        from str_distill.models.registry import build_model
        from str_distill.training.warm_start import initialize_from

        src = load_model(TEACHER)
        cfg = get_config(src.config.arch, **{**src.config.to_dict(), "charset": CHARSET, "min_width": 160})
        lean = build_model(cfg)
        initialize_from(lean, src, TEACHER)
        save_pretrained(lean, path)
    return str(path)


def run_logged(cmd: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def train(name: str, root: Path, out: Path, minutes: float, extra: list[str], lr: float) -> dict[str, Any]:
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
        cmd = ["str-distill", "pretrain", "--method", "ccd", "--model", "siga-vit-t-ctc", "--data", *data_specs(root),
               "--minutes", f"{minutes:g}", "--batch-size", "64", "--workers", "0", "--seed", str(SEED),
               "--log-every", "10", "-o", str(run)]
        run_logged(cmd + (["--resume"] if (run / "ccd_state.pt").is_file() else []), out / "ccd.log")
        (run / "done").touch()
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--student", choices=list(STUDENTS), default="siga-lcnet-t-ctc")
    ap.add_argument("--arm-minutes", type=float, default=15.0, help="budget of every ablation arm")
    ap.add_argument("--main-minutes", type=float, default=85.0, help="budget of the longer run (0: none)")
    ap.add_argument("--init", default=None, help="start the longer run from these weights (the shipped student)")
    ap.add_argument("--main-recipe", choices=list(ARMS[:3]),
                    help="the longer run's recipe (default: the arm best on the validation split; when every arm "
                    "reads nothing yet, pass the one whose losses fell furthest)")
    ap.add_argument("--arms", nargs="*", default=None, choices=list(ARMS), help="default: every arm the student has")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    out, root = args.output, args.data_root
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}

    def save() -> None:
        results_file.write_text(json.dumps(results, indent=2))

    lr, student_arms, from_teacher = STUDENTS[args.student]
    arms = student_arms if args.arms is None else args.arms
    unknown = sorted(set(arms) - set(student_arms))
    if unknown:
        raise SystemExit(f"{args.student} has no arm {unknown}; its arms: {', '.join(student_arms)}")
    base = ["--model", args.student, "--charset", CHARSET] + (["--init", TEACHER] if from_teacher else [])
    teacher_args = TEACHER_ARGS
    if from_teacher:
        teacher_args = ["--teacher", lean_teacher(out), *TEACHER_ARGS[2:]]
    for arm in arms:
        if arm in results:
            continue
        t0 = time.time()
        if arm == "supervised":
            info = train(arm, root, out, args.arm_minutes, base, lr)
        elif arm == "teacher":
            info = train(arm, root, out, args.arm_minutes, base + teacher_args, lr)
        elif arm == "teacher-features":
            info = train(arm, root, out, args.arm_minutes, base + teacher_args + FEATURE_ARGS, lr)
        else:
            ccd = pretrain(root, out, args.arm_minutes / 3)
            info = train(arm, root, out, args.arm_minutes * 2 / 3, ["--init", str(ccd), "--charset", CHARSET,
                                                                     *TEACHER_ARGS], lr)
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
        extra = ["--init", start, "--charset", CHARSET] + ([] if best == "supervised" else teacher_args) + (
            FEATURE_ARGS if best == "teacher-features" else [])
        t0 = time.time()
        info = train("main", root, out, args.main_minutes, extra, lr)
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
