"""Ship the weights a GPU session brought back: verify, evaluate here, bundle, record, pin the golden outputs.

    python recipes/gpu/ship.py FILES_DIR [--name siga-vit-s]

``FILES_DIR`` holds what ``recipes/gpu/collect.sh`` left in ``$OUT``: the fp16 weight shards and ``bundle.tar.gz``.
Steps:

1. unpack into ``runs/shipped/<name>-<date>/`` (the run's logs, curves and report stay there) and put the shards
   beside ``final/config.json``; load the weights strictly;
2. refuse weights whose architecture is not the registered one of ``--name`` (no toy weights under a real name);
3. evaluate on the original IIIT5K images and on the validation split of the real training sets (the samples
   ``--val-split 0.05 --seed 0`` carves, never trained on), both protocols (36, 94), both decodings;
4. copy the files into ``str_distill/weights/`` and write the manifest record (sha256, sizes, config, metrics with
   the commands that reproduce them, training summary from ``report.json``);
5. write the golden outputs of ``examples/`` (``tests/golden/<name>.json``) that ``tests/test_golden.py`` pins;
6. print the README table and the session's ``docs/experiments.md`` entry (benchmark, every arm, the choice, the
   metrics), copying each arm's loss/accuracy curves to ``docs/img/run-<date>-<arm>.png``.

``--manifest``, ``--bundle-dir``, ``--golden``, ``--work``, ``--docs-img`` and ``--allow-any-arch`` exist for tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

from str_distill.hub import manifest as mf

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
TRAIN_SETS = ("IIIT5K_train", "SVT_train", "IC15_train")
VAL_SPLIT, VAL_SEED = 0.05, 0
PROTOCOLS = ("36", "94")
DECODINGS = ("attention", "ctc")


def unpack(files: Path, work: Path) -> Path:
    """``work/final`` as a ``save_pretrained`` folder made of the shards and the bundle's small files."""
    bundle = files / "bundle.tar.gz"
    if not bundle.is_file():
        raise FileNotFoundError(f"{bundle} not found: pass the folder collect.sh filled")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    with tarfile.open(bundle) as tar:
        tar.extractall(work, filter="data")
    final = work / "final"
    if not (final / "config.json").is_file():
        raise FileNotFoundError(f"{bundle} has no final/config.json")
    shards = sorted(files.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"no .safetensors files in {files}")
    for s in shards:
        shutil.copyfile(s, final / s.name)
    return final


def check_arch(name: str, final: Path) -> None:
    from str_distill.models.config import ViTConfig
    from str_distill.models.registry import get_config

    cfg = ViTConfig.from_dict(json.loads((final / "config.json").read_text()))
    ref = get_config(name.split(".")[0], charset=cfg.charset)
    fields = ("arch", "img_size", "patch_size", "embed_dim", "depth", "num_heads", "dec_dim", "dec_depth", "dec_heads")
    diff = {f: (getattr(cfg, f), getattr(ref, f)) for f in fields if getattr(cfg, f) != getattr(ref, f)}
    if diff:
        raise ValueError(f"{final}: not a {name!r} network (field: got, registered): {diff}")


def evaluate_all(name: str, weights: Path, bench: list[Path], val: list[Path], max_samples: int | None,
                 device: str) -> dict[str, Any]:
    """``{"IIIT5K": {...}, "val": {...}}``: headline = protocol 36 attention; ``by_protocol`` has all four."""
    from str_distill.data.mix import split_validation
    from str_distill.predictor import Recognizer
    from str_distill.training.evaluate import evaluate, open_eval_sets

    rec = Recognizer.from_pretrained(weights, device=device, dtype="float32")

    def shown(paths: list[Path]) -> str:  # paths as a user in the repository root would type them
        return " ".join(os.path.relpath(p, REPO) for p in paths)

    groups: dict[str, tuple[list[tuple[str, Any]], str]] = {}
    if bench:
        groups["IIIT5K"] = (open_eval_sets(bench), f"--data {shown(bench)}")
    if val:
        sets = [(f"{n}:val", split_validation(ds, VAL_SPLIT, VAL_SEED)[1]) for n, ds in open_eval_sets(val)]
        groups["val"] = (sets, f"--data {shown(val)} --val-split {VAL_SPLIT} --seed {VAL_SEED}")
    out: dict[str, Any] = {}
    for key, (sets, data_args) in groups.items():
        by: dict[str, dict[str, Any]] = {}
        for p in PROTOCOLS:
            for d in DECODINGS:
                res = evaluate(rec, sets, protocol=p, decoding=d, batch_size=64, max_samples=max_samples)  # type: ignore[arg-type]
                t = res.total
                by.setdefault(p, {})[d] = {"accuracy": round(100 * t.accuracy, 2),
                                           "one_minus_ned": round(100 * t.one_minus_ned, 2), "count": t.count}
                print(f"{key:7s} protocol {p} {d:9s} {100 * t.accuracy:6.2f} % (1-NED {100 * t.one_minus_ned:.2f}, "
                      f"n={t.count})", flush=True)
        head = by["36"]["attention"]
        command = f"str-distill eval --model {name} {data_args} --protocol {{36,94}} --decoding {{attention,ctc}}"
        out[key] = {**head, "protocol": "36", "decoding": "attention", "by_protocol": by,
                    "command": command + (f" --max-samples {max_samples}" if max_samples else "")}
    return out


def training_summary(work: Path) -> dict[str, Any]:
    rep = work / "report.json"
    if not rep.is_file():  # a start.sh run: one arm, its metrics at the top level
        return {"plan": "single run", "arm": None}
    r = json.loads(rep.read_text())
    arm = r["choice"]["arm"]
    a = r["arms"][arm]
    bench = r.get("benchmark") or {}
    return {
        "plan": r["plan"], "arm": arm, "choice": r["choice"], "device": bench.get("device_name"),
        "arm_minutes": r.get("arm_minutes"), "pretrain_minutes": r.get("pretrain_minutes"),
        "steps": a["steps"], "images_seen": a["images_seen"], "batch_size": a["batch_size"],
        "median_images_per_s": a["median_images_per_s"], "init": a.get("init"), "argv": a.get("argv"),
        "benchmark": {k: bench.get(k) for k in ("data_images_per_s", "train_images_per_s", "model_images_per_s",
                                                "gpu_util_percent", "compile", "batch_size")} if bench else None,
    }


def describe(summary: dict[str, Any]) -> str:
    base = ("ViT-Small recognizer: 384-d, 12-block, 6-head ViT encoder on 4x8 patches of 32x128 crops, a 3-layer "
            "two-stream attention decoder and a CTC head trained jointly; 94-character charset, labels up to 25 "
            "characters. The name is this project's; it is not an official SIGA release. ")
    arm = summary.get("arm")
    if arm == "ccd":
        how = ("Encoder pretrained with CCD-style character-to-character self-distillation, then trained on "
               "synthetic words mixed with the real training splits (CCD won the equal-GPU-time ablation).")
    elif arm == "continue":
        how = "Continued from the previously shipped weights on synthetic words mixed with the real training splits."
    elif "ccd" in ((summary.get("choice") or {}).get("scores") or {}):
        how = ("Trained from random initialization on synthetic words mixed with the real training splits; CCD "
               "pretraining + fine-tuning did not beat it at equal GPU time (docs/experiments.md).")
    else:
        how = ("Trained from random initialization on synthetic words mixed with the real training splits "
               "(no CCD arm ran in this session).")
    return base + how


def golden(name: str, examples: Path, out: Path) -> dict[str, Any]:
    from str_distill.predictor import Recognizer

    rec = Recognizer.from_pretrained(name, device="cpu", dtype="float32")
    images = sorted(p for p in examples.iterdir() if p.suffix.lower() == ".png")
    res: dict[str, Any] = {"model": name, "images": {}}
    for decoding in DECODINGS:
        for path, pred in zip(images, rec.predict([str(p) for p in images], decoding=decoding)):
            res["images"].setdefault(path.name, {})[decoding] = {"text": pred.text,
                                                                 "confidence": round(float(pred.confidence), 5)}
    record = mf.get_record(name) or {}
    res["weights_sha256"] = [f["sha256"] for f in record.get("files", [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res


def run_log(work: Path, name: str, metrics: dict[str, Any], img_dir: Path) -> str:
    """The ``docs/experiments.md`` entry of this session (markdown); copies each arm's curves into ``img_dir``."""
    rep = work / "report.json"
    if not rep.is_file():
        return ""
    r = json.loads(rep.read_text())
    bench = r.get("benchmark") or {}
    day = dt.date.today().isoformat()
    lines = [f"### {day}: {r['plan']} session on {bench.get('device_name') or 'an unknown device'}", ""]
    if bench:
        util = bench.get("gpu_util_percent")
        lines += [f"Benchmark (batch {bench.get('batch_size')}, compile {bench.get('compile')}): data alone "
                  f"{bench['data_images_per_s']:.0f} img/s, training with data {bench['train_images_per_s']:.0f} "
                  f"img/s, on a resident batch {bench['model_images_per_s']:.0f} img/s, GPU utilization "
                  + (f"{util:.0f} %." if isinstance(util, (int, float)) else "n/a."), ""]
    lines += ["| arm | training min | steps | images seen | median img/s | reuse | val acc (36, attn) | "
              "IIIT5K packed (36, attn) |", "|---|---|---|---|---|---|---|---|"]
    img_dir.mkdir(parents=True, exist_ok=True)
    pictures = []
    for arm, a in r["arms"].items():
        ev = a["evals"].get("36_attention", {})
        val, iiit = ev.get("val", {}), ev.get("IIIT5K", {})
        minutes = f"{(a.get('train_seconds') or 0) / 60:.1f}"
        if "pretrain" in a and r.get("pretrain_minutes"):
            minutes = f"{r['pretrain_minutes']:g} CCD + {minutes}"
        acc = [f"{100 * m['accuracy']:.2f}" if m else "-" for m in (val, iiit)]
        lines.append(f"| {arm} | {minutes} | {a['steps']} | {a['images_seen']:,} | "
                     f"{a['median_images_per_s'] or 0:.0f} | {a.get('reuse')} | {acc[0]} | {acc[1]} |")
        curves = work / arm / "curves.png"
        if curves.is_file():
            dst = img_dir / f"run-{day}-{arm}.png"
            shutil.copyfile(curves, dst)
            pictures.append(f"![{arm} curves](img/{dst.name})")
    chosen = r["choice"]["arm"]
    lines += ["", f"Shipped as `{name}`: arm `{chosen}` ({r['choice']['by']}). On the original images, measured here "
              f"with `{(metrics.get('IIIT5K') or {}).get('command', 'str-distill eval')}`:", "",
              readme_table(name, metrics), "", *pictures]
    return "\n".join(lines) + "\n"


def readme_table(name: str, metrics: dict[str, Any]) -> str:
    rows = ["| set | protocol | attention acc | attention 1-NED | CTC acc | CTC 1-NED |", "|---|---|---|---|---|---|"]
    for key, m in metrics.items():
        for p in PROTOCOLS:
            a, c = m["by_protocol"][p]["attention"], m["by_protocol"][p]["ctc"]
            rows.append(f"| {key} ({a['count']}) | {p} | {a['accuracy']:.2f} | {a['one_minus_ned']:.2f} | "
                        f"{c['accuracy']:.2f} | {c['one_minus_ned']:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", type=Path, help="the folder collect.sh filled (shards + bundle.tar.gz)")
    ap.add_argument("--name", default="siga-vit-s")
    ap.add_argument("--data", type=Path, default=DATA, help="shared/data (IIIT5K and the training sets)")
    ap.add_argument("--max-samples", type=int, help="evaluate only the first N samples of each set (tests)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", type=Path, help="unpack here (default runs/shipped/<name>-<date>)")
    ap.add_argument("--manifest", type=Path, help="manifest to update (default: the repository's)")
    ap.add_argument("--bundle-dir", type=Path, help="bundled weights folder (default: str_distill/weights)")
    ap.add_argument("--golden", type=Path, help="golden outputs file (default tests/golden/<name>.json)")
    ap.add_argument("--examples", type=Path, default=REPO / "examples")
    ap.add_argument("--allow-any-arch", action="store_true", help="skip the architecture check (tests only)")
    ap.add_argument("--allow-missing-data", action="store_true",
                    help="ship even if IIIT5K or a training set is missing under --data (device simulations only): "
                         "the record then lacks those metrics")
    ap.add_argument("--docs-img", type=Path, default=REPO / "docs" / "img",
                    help="where the arms' curves are copied for docs/experiments.md")
    args = ap.parse_args(argv)

    wanted = [args.data / s / "labels.tsv" for s in ("IIIT5K", *TRAIN_SETS)]
    missing = [str(p) for p in wanted if not p.is_file()]
    if missing and not args.allow_missing_data:
        raise SystemExit("ship.py: weights are never shipped unmeasured, and these evaluation sets are missing: "
                         + ", ".join(missing) + " (point --data at shared/data)")
    for m in missing:
        print(f"WARNING: {m} is missing: the record will lack its metrics (--allow-missing-data)", file=sys.stderr)
    if args.manifest is not None:
        mf.MANIFEST_PATH = args.manifest
    if args.bundle_dir is not None:
        mf.BUNDLED_DIR = args.bundle_dir
    work = args.work or REPO / "runs" / "shipped" / f"{args.name}-{dt.date.today().isoformat()}"
    final = unpack(args.files, work)
    if not args.allow_any_arch:
        check_arch(args.name, final)
    from str_distill.hub.loading import load_model

    model = load_model(final)  # strict: every tensor present, with its shape
    print(f"loaded {final}: {model.num_parameters():,} parameters")
    bench = [args.data / "IIIT5K"] if (args.data / "IIIT5K" / "labels.tsv").is_file() else []
    val = [args.data / s for s in TRAIN_SETS if (args.data / s / "labels.tsv").is_file()]
    metrics = evaluate_all(args.name, final, bench, val, args.max_samples, args.device)
    summary = training_summary(work)
    record = mf.make_record(args.name, final, bundle=True, metrics=metrics, description=describe(summary),
                            hf_repo_id=f"str-distill/{args.name}")
    record["training"] = summary
    path = mf.update_record(args.name, record)
    problems = mf.validate_manifest(path)
    if problems:
        raise SystemExit("manifest problems:\n" + "\n".join(problems))
    print(f"bundled {len(record['files'])} files ({record['size_bytes'] / 2**20:.1f} MiB) in {mf.bundled_dir()}; "
          f"record written to {path}")
    gold = args.golden or REPO / "tests" / "golden" / f"{args.name}.json"
    res = golden(args.name, args.examples, gold)
    print(f"golden outputs of {len(res['images'])} images -> {gold}")
    print(readme_table(args.name, metrics))
    log = run_log(work, args.name, metrics, args.docs_img)
    if log:
        (work / "run_log.md").write_text(log)
        print(f"\ndocs/experiments.md entry (also in {work / 'run_log.md'}):\n\n{log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
