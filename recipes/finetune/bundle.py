"""Bundle a fine-tuned PP-OCRv6 small that passed the ship rule of ``recipes/finetune/compare.py``.

    python recipes/finetune/bundle.py WEIGHTS --results runs/ft-compare/results.json --arm lwf \
        --data-root path/to/sets [--name ppocrv6-small.scene-ft] [--default] [--min-width 240]

``WEIGHTS`` is the candidate: ``OUT/<arm>-avg`` (the arm's best weights averaged with the original, which
``compare.py`` writes) or, with ``--no-averaged``, the arm's best weights ``OUT/<arm>/best``. The script refuses a
candidate whose ``results.json`` entry does not pass the ship rule, then:

1. saves the weights in float16 and checks that the float16 weights still pass the rule on the validation split
   and IIIT5K (the numbers must not come from float32 weights that nobody will load);
2. measures IIIT5K under both protocols in float32 and bfloat16 (as ``recipes/ppocrv6/bundle.py`` does for the port)
   and writes the manifest record: config, charset, preprocessing, sha256 and size, license and attribution (those
   of the port: the weights derive from it), how it was trained (base, data, command, steps, averaging) and the
   metrics with their commands;
3. writes ``tests/golden/<name>.json``, the texts and confidences of ``examples/``.

``--min-width N`` ships the weights with narrower images padded to ``N`` pixels instead of the base's own (320 for
PP-OCRv6): every number above is then measured at that width.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from compare import ship_decision  # this folder's recipe (the script's folder is on sys.path)

from str_distill.hub import manifest as mf
from str_distill.training import publish as pub

ATTRIBUTION = (
    "Fine-tuned by str-distill from ppocrv6-small, itself converted from PP-OCRv6_small_rec by the PaddleOCR authors "
    "(https://github.com/PaddlePaddle/PaddleOCR); upstream weights copyright Baidu and/or the applicable PaddleOCR "
    "rights holders, Apache-2.0. ONNX packaging by the RapidOCR Authors (rapidocr==3.10.0, Apache-2.0). See NOTICE."
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, help="the candidate's save_pretrained folder")
    ap.add_argument("--results", type=Path, required=True, help="compare.py's results.json")
    ap.add_argument("--arm", required=True, help="the arm the candidate comes from")
    ap.add_argument("--averaged", action=argparse.BooleanOptionalAction, default=True,
                    help="WEIGHTS are the arm's best weights averaged with the original (OUT/<arm>-avg, the default) "
                         "or, with --no-averaged, the arm's best weights themselves (OUT/<arm>/best)")
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--name", default="ppocrv6-small.scene-ft")
    ap.add_argument("--default", action="store_true", help="make it the manifest's default model")
    ap.add_argument("--min-width", type=int, help="pad narrower images to this width (default: the base's own)")
    args = ap.parse_args()

    from str_distill.hub.loading import load_model

    results: dict[str, Any] = json.loads(args.results.read_text())
    original, arm = results["original"]["eval"], results[args.arm]
    ships, why = ship_decision(arm["eval_avg" if args.averaged else "eval"], original)
    if not ships:
        print("refused: " + "; ".join(why), file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(args.weights)
        base_width = model.config.min_width
        if args.min_width is not None:
            model.config.min_width = args.min_width
        shipped = pub.float16_candidate(model, Path(tmp) / args.name, args.data_root,
                                    lambda c: ship_decision(c, original), "refused after float16 rounding")
        if shipped is None:
            return 1
        out, check = shipped
        metrics, cpu_dtype = pub.measure(out, args.data_root / "IIIT5K", args.name)
        metrics["validation"] = pub.validation_metric(
            check,
            f"{int(pub.VAL_SPLIT * 100)} % of every real training set held out (seed {pub.SEED}): "
            + ", ".join(pub.SCENE_TEXT_SETS),
            f"str-distill eval --model {args.name} --data " + " ".join(f"DATA/{s}" for s in pub.SCENE_TEXT_SETS)
            + f" --val-split {pub.VAL_SPLIT} --seed {pub.SEED} --protocol {{36,94}}", original)
        command = arm["command"].split()
        synth = [float(t.split(":")[1]) for t in command if t.startswith("synth:")]
        frozen = "backbone" in command[command.index("--freeze") + 1:] if "--freeze" in command else False
        distilled = "--teacher" in command
        desc = ("PP-OCRv6 small (ppocrv6-small, the PyTorch port) fine-tuned by str-distill on real scene-text word "
                "crops" + (" mixed with synthetic words" if synth else "")
                + (" with distillation from the frozen original on every batch (learning without forgetting)"
                   if distilled else "")
                + (", backbone frozen (neck and head trained)" if frozen else "")
                + (", then averaged 0.5/0.5 with the original weights" if args.averaged else "")
                + ". Same architecture, charset and preprocessing as ppocrv6-small"
                + ("." if model.config.min_width == base_width else
                   f", except that narrower images are padded to {model.config.min_width} pixels instead of "
                   f"{base_width} (faster; measured on the validation split and IIIT5K)."))
        rec = mf.make_record(args.name, out, bundle=True, license="Apache-2.0", metrics=metrics, description=desc)
        rec["attribution"] = ATTRIBUTION
        rec["inference"] = {"cpu_dtype": cpu_dtype}
        rec["training"] = {
            "base": "ppocrv6-small", "arm": args.arm, "steps": arm["steps"],
            # the command without this machine's folders
            "command": arm["command"].replace(f"{args.data_root.resolve()}/", "DATA/").replace(
                f"{args.results.parent.resolve()}/", "OUT/"),
            "data": {**({"synth": synth[0]} if synth else {}), **pub.SCENE_TEXT_SETS},
            "validation_split": pub.VAL_SPLIT, "seed": pub.SEED, "weights": "the arm's best validation weights" + (
                ", averaged 0.5 with ppocrv6-small (weight-space ensemble)" if args.averaged else ""),
            "recipe": "recipes/finetune/compare.py",
        }
        pub.publish(args.name, rec, default=args.default)
    return pub.check_manifest()


if __name__ == "__main__":
    raise SystemExit(main())
