"""Bundle a CPU student trained by ``recipes/student/train.py`` when it passes the student's ship rule.

    python recipes/student/bundle.py WEIGHTS --results runs/student/results.json --run main \
        --data-root path/to/sets [--name siga-lcnet-t-ctc.ppocrv6-pruned] [--speed peers.json]

The ship rule (:func:`ship_decision`): the first student of an architecture ships when it reads IIIT5K at 80 % or more
(36 characters); afterwards a run replaces the shipped one only when it beats it on the validation split **and** on
IIIT5K. The script then

1. saves the weights in float16 and checks that the float16 weights still pass the rule (the numbers must come from
   the weights users load);
2. measures IIIT5K under both protocols in float32 and bfloat16 and writes the manifest record: config, charset,
   preprocessing, sha256 and size, license and attribution (the weights derive from PP-OCRv6 small's), how it was
   trained (recipe, teacher, arms, command, steps) and the metrics with their commands; ``--speed`` adds the reading
   speed (a ``speed`` entry) from a ``benchmarks/cpu_vs_peers.py --json`` file;
3. writes ``tests/golden/<name>.json``, the texts and confidences of ``examples/``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from str_distill.hub import manifest as mf
from str_distill.training import publish as pub

FIRST_SHIP_IIIT5K = 80.0
ATTRIBUTION = (
    "Made by str-distill from ppocrv6-small.scene-ft: a depth-pruned copy of its layers, trained further; that model "
    "is fine-tuned from ppocrv6-small, itself converted from PP-OCRv6_small_rec by the PaddleOCR authors "
    "(https://github.com/PaddlePaddle/PaddleOCR); upstream weights copyright Baidu and/or the applicable PaddleOCR "
    "rights holders, Apache-2.0. ONNX packaging by the RapidOCR Authors (rapidocr==3.10.0, Apache-2.0). See NOTICE."
)


def ship_decision(candidate: dict[str, float], shipped: dict[str, float] | None) -> tuple[bool, list[str]]:
    """The student's ship rule. Returns ``(ships, reasons it does not)``.

    Args:
        candidate: word accuracies in percent under ``val/36`` and ``IIIT5K/36``.
        shipped: the same for the student already shipped under this architecture, or ``None`` for the first one
            (which needs ``IIIT5K/36 >= 80``).
    """
    why = []
    if shipped is None:
        if not candidate["IIIT5K/36"] >= FIRST_SHIP_IIIT5K:
            why.append(f"IIIT5K {candidate['IIIT5K/36']:.2f} % is below the first student's bar of "
                       f"{FIRST_SHIP_IIIT5K:.0f} %")
        return not why, why
    for key, what in (("val/36", "validation"), ("IIIT5K/36", "IIIT5K")):
        if not candidate[key] > shipped[key]:
            why.append(f"{what} {candidate[key]:.2f} % is not above the shipped student's {shipped[key]:.2f} %")
    return not why, why


def shipped_student(arch: str) -> tuple[str, dict[str, float]] | None:
    """The published record of architecture ``arch`` (its name and accuracies), if any."""
    for name, rec in mf.load_manifest().items():
        if rec.get("architecture") == arch and rec["status"] == mf.PUBLISHED:
            m = rec["metrics"]
            return name, {"val/36": m["validation"]["by_protocol"]["36"], "IIIT5K/36": m["IIIT5K"]["accuracy"]}
    return None


def speed_metrics(path: Path, name: str, command: str) -> dict[str, Any]:
    """The student's rows of a ``benchmarks/cpu_vs_peers.py --json`` file: img/s, peak RSS and accuracy per engine,
    thread count and batch size (the ONNX rows are those of a file named after the student)."""
    keep = ("engine", "threads", "batch", "images", "img_s", "peak_rss_mib", "acc36", "acc94")
    rows = [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items() if k in keep}
            for r in json.loads(path.read_text()) if str(r.get("model", "")).split("/")[-1].startswith(name)]
    if not rows:
        raise SystemExit(f"{path} has no rows for {name!r}; run the benchmark with --model {name}")
    return {"rows": rows, "command": command}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, help="the candidate's save_pretrained folder")
    ap.add_argument("--results", type=Path, required=True, help="train.py's results.json")
    ap.add_argument("--run", default="main", help="the results entry the candidate comes from")
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--name", default="siga-lcnet-t-ctc.ppocrv6-pruned")
    ap.add_argument("--speed", type=Path, help="a benchmarks/cpu_vs_peers.py --json file measuring this student")
    ap.add_argument("--speed-command", default="python benchmarks/cpu_vs_peers.py --model NAME",
                    help="the benchmark command that wrote --speed (recorded with the figures)")
    args = ap.parse_args()

    from str_distill.hub.loading import load_model

    results: dict[str, Any] = json.loads(args.results.read_text())
    run = results[args.run]
    model = load_model(args.weights)
    arch = model.config.arch
    if args.name.split(".")[0] != arch:
        raise SystemExit(f"--name {args.name!r} does not start with the weights' architecture {arch!r}")
    current = shipped_student(arch)
    with tempfile.TemporaryDirectory() as tmp:
        shipped = pub.float16_candidate(model, Path(tmp) / args.name, args.data_root,
                                    lambda c: ship_decision(c, current[1] if current else None))
        if shipped is None:
            return 1
        out, check = shipped
        metrics, cpu_dtype = pub.measure(out, args.data_root / "IIIT5K", args.name)
        metrics["validation"] = pub.validation_metric(
            check, f"{int(pub.VAL_SPLIT * 100)} % of every real training set held out (seed {pub.SEED})",
            "python recipes/student/train.py --data-root DATA -o OUT")
        depths = "/".join(map(str, model.config.depths))
        desc = (f"str-distill's CPU student {arch}: PP-OCRv6 small's layers with {depths} blocks per stage,"
                f" read {model.config.height} pixels high, 94-character CTC head; started from the "
                "teacher's own blocks (depth-pruned) and trained on synthetic and real words with CTC on the labels"
                + ("." if run.get("recipe", args.run) == "supervised" else
                   " and the frozen teacher's per-frame posteriors as soft targets."))
        rec = mf.make_record(args.name, out, bundle=True, license="Apache-2.0", metrics=metrics, description=desc)
        rec["attribution"] = ATTRIBUTION
        rec["inference"] = {"cpu_dtype": cpu_dtype}
        if args.speed:
            rec["speed"] = speed_metrics(args.speed, args.name, args.speed_command)
        root = f"{args.data_root.resolve()}/"
        rec["training"] = {
            "recipe": "recipes/student/train.py", "run": args.run, "steps": run["steps"],
            "objectives": run.get("recipe", args.run),
            "teacher": "ppocrv6-small.scene-ft (English head, 160-pixel minimum width)",
            "init": "ppocrv6-small.scene-ft, depth-pruned (stage blocks at evenly spaced indices)",
            "command": run["command"].replace(root, "DATA/").replace(f"{args.results.parent.resolve()}/", "OUT/"),
            "arms": {k: {"minutes": v["minutes"], "steps": v["steps"], "val/36": v["eval"]["val/36"],
                         "IIIT5K/36": v["eval"]["IIIT5K/36"]} for k, v in results.items() if k != args.run},
            "validation_split": pub.VAL_SPLIT, "seed": pub.SEED,
        }
        if current and current[0] != args.name:
            print(f"note: {current[0]} is still published; retire it by hand if {args.name} replaces it")
        pub.publish(args.name, rec)
    return pub.check_manifest()


if __name__ == "__main__":
    raise SystemExit(main())
