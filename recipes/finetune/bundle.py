"""Bundle a fine-tuned PP-OCRv6 small that passed the ship rule of ``recipes/finetune/compare.py``.

    python recipes/finetune/bundle.py WEIGHTS --results runs/ft-compare/results.json --arm lwf \
        --data-root path/to/sets [--name ppocrv6-small.scene-ft] [--default]

``WEIGHTS`` is the candidate (``compare.py`` writes ``OUT/<arm>-avg``: the arm's best weights averaged with the
original). The script refuses a candidate whose ``results.json`` entry does not pass the ship rule, then:

1. saves the weights in float16 and checks that the float16 weights still pass the rule on the validation split
   and IIIT5K (the numbers must not come from float32 weights that nobody will load);
2. measures IIIT5K under both protocols in float32 and bfloat16 (as ``recipes/ppocrv6/bundle.py`` does for the port)
   and writes the manifest record: config, charset, preprocessing, sha256 and size, license and attribution (those
   of the port: the weights derive from it), how it was trained (base, data, command, steps, averaging) and the
   metrics with their commands;
3. writes ``tests/golden/<name>.json``, the texts and confidences of ``examples/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "recipes" / "finetune"))

from compare import SEED, TRAIN_SETS, VAL_SPLIT, evaluate, ship_decision  # noqa: E402

from str_distill.hub import manifest as mf  # noqa: E402


def _port_recipe() -> Any:
    """``recipes/ppocrv6/bundle.py`` (its ``measure`` and ``golden``), loaded under its own module name."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ppocrv6_bundle", REPO / "recipes" / "ppocrv6" / "bundle.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

ATTRIBUTION = (
    "Fine-tuned by str-distill from ppocrv6-small, itself converted from PP-OCRv6_small_rec by the PaddleOCR authors "
    "(https://github.com/PaddlePaddle/PaddleOCR); upstream weights copyright Baidu and/or the applicable PaddleOCR "
    "rights holders, Apache-2.0. ONNX packaging by the RapidOCR Authors (rapidocr==3.10.0, Apache-2.0). See NOTICE."
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, help="the candidate's save_pretrained folder")
    ap.add_argument("--results", type=Path, required=True, help="compare.py's results.json")
    ap.add_argument("--arm", required=True, help="the arm the candidate comes from (its averaged weights)")
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--name", default="ppocrv6-small.scene-ft")
    ap.add_argument("--default", action="store_true", help="make it the manifest's default model")
    args = ap.parse_args()

    import torch

    from str_distill.hub.loading import load_model
    from str_distill.hub.serialization import save_pretrained

    results: dict[str, Any] = json.loads(args.results.read_text())
    original, arm = results["original"]["eval"], results[args.arm]
    ships, why = ship_decision(arm["eval_avg"], original)
    if not ships:
        print("refused: " + "; ".join(why), file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        out = save_pretrained(load_model(args.weights), Path(tmp) / args.name, dtype=torch.float16)
        check = evaluate(out, args.data_root)
        ships, why = ship_decision(check, original)
        print(f"float16 weights: {check} -> {'ships' if ships else 'refused'}", flush=True)
        if not ships:
            print("refused after float16 rounding: " + "; ".join(why), file=sys.stderr)
            return 1
        port = _port_recipe()
        metrics, cpu_dtype = port.measure(out, args.data_root / "IIIT5K")
        for m in metrics.values():
            m["command"] = m["command"].replace("{name}", args.name)
        metrics["validation"] = {
            "accuracy": check["val/36"], "protocol": "36", "count": check["val/36/count"],
            "by_protocol": {"36": check["val/36"], "94": check["val/94"]},
            "original": {"36": original["val/36"], "94": original["val/94"]},
            "what": f"{int(VAL_SPLIT * 100)} % of every real training set held out (seed {SEED}): "
                    + ", ".join(TRAIN_SETS),
            "command": "python recipes/finetune/compare.py --data-root DATA -o OUT",
        }
        rec = mf.make_record(args.name, out, bundle=True, license="Apache-2.0", metrics=metrics, description=(
            "PP-OCRv6 small (ppocrv6-small, the PyTorch port) fine-tuned by str-distill on real scene-text word "
            "crops with distillation from the frozen original on every batch (learning without forgetting), then "
            "averaged 0.5/0.5 with the original weights. Same architecture, charset and preprocessing as "
            "ppocrv6-small."))
        rec["attribution"] = ATTRIBUTION
        rec["inference"] = {"cpu_dtype": cpu_dtype}
        rec["training"] = {
            "base": "ppocrv6-small", "arm": args.arm, "steps": arm["steps"],
            # the command without this machine's folders
            "command": arm["command"].replace(f"{args.data_root.resolve()}/", "DATA/").replace(
                f"{args.results.parent.resolve()}/", "OUT/"),
            "data": {s: w for s, w in TRAIN_SETS.items()}, "validation_split": VAL_SPLIT, "seed": SEED,
            "weights": "the arm's best validation weights, averaged 0.5 with ppocrv6-small (weight-space ensemble)",
            "recipe": "recipes/finetune/compare.py",
        }
        mf.update_record(args.name, rec, default=args.default)
        port.golden(args.name, REPO / "examples", REPO / "tests" / "golden" / f"{args.name}.json")
        print(f"{args.name}: bundled ({rec['size_bytes']:,} bytes), record and golden outputs written")
    problems = mf.validate_manifest()
    if problems:
        print("manifest problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
