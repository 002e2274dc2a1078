"""Measure a decoder trained by ``recipes/decoder/train.py`` against the default model and bundle it if it passes.

    python recipes/decoder/bundle.py --run OUT --arm l2r-synth --weights checkpoint.pt --data-root DATA \
        [--name ppocrv6-small-attn.scene-ft-neck] [--joint-weight 5] [--default-decoding joint] [--dry-run]

1. The decoder model (``ppocrv6-small-attn``: the default model's encoder and CTC head, plus the arm's decoder) is
   saved in float16 and read back through ``Recognizer`` in float32, exactly as a user loads it.
2. The validation split and IIIT5K are read with every decoding (joint, attention autoregressive, CTC) and, in the
   same run, with the current default model; word accuracy under the 36- and 94-character protocols.
3. Ship rule: the decoder model's default decoding must beat the current default model on the validation split
   and on IIIT5K under both protocols. If it does (and not ``--dry-run``), the weights are bundled with a manifest
   record (every decoding's figures, their commands, license and attribution) and golden outputs of every
   decoding. The table goes to ``OUT/bundle_<arm>.json`` either way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import BASE, CHARSET, SEED, TRAIN_SETS, VAL_SPLIT, load_splits  # noqa: E402

from str_distill import Recognizer  # noqa: E402
from str_distill.data.folder import FolderDataset  # noqa: E402
from str_distill.hub import manifest as mf  # noqa: E402
from str_distill.hub.loading import load_model  # noqa: E402
from str_distill.hub.serialization import save_pretrained  # noqa: E402
from str_distill.models import build_model, get_config  # noqa: E402
from str_distill.training.decoder_fit import decoder_model_from  # noqa: E402
from str_distill.training.metrics import WordMetrics, normalize_protocol  # noqa: E402

READINGS = {"joint": ("joint", "autoregressive"), "attention": ("attention", "autoregressive"),
            "ctc": ("ctc", "autoregressive")}
ATTRIBUTION = (
    "Encoder and CTC head (unchanged) from ppocrv6-small.scene-ft-neck (fine-tuned by str-distill from "
    "ppocrv6-small, itself converted from PP-OCRv6_small_rec by the PaddleOCR authors, "
    "https://github.com/PaddlePaddle/PaddleOCR; upstream weights copyright Baidu and/or the applicable PaddleOCR "
    "rights holders, Apache-2.0; ONNX packaging by the RapidOCR Authors, rapidocr==3.10.0, Apache-2.0); attention "
    "decoder trained by str-distill. See NOTICE."
)


def score(rec: Recognizer, samples: list[tuple[Any, str]], decoding: str, mode: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    texts = [p.text for p in rec.predict([img for img, _ in samples], batch_size=64, decoding=decoding, mode=mode)]
    out: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 1)}
    for protocol in ("36", "94"):
        m = WordMetrics(protocol)  # type: ignore[arg-type]
        for (_, label), text in zip(samples, texts):
            if normalize_protocol(label, protocol):  # type: ignore[arg-type]
                m.update(text, label)
        out[protocol] = round(100 * m.accuracy, 2)
        out[f"ned{protocol}"] = round(100 * m.one_minus_ned, 2)
        out[f"count{protocol}"] = m.count
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--arm", required=True)
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--name", default="ppocrv6-small-attn.scene-ft-neck")
    ap.add_argument("--joint-weight", type=float, default=5.0, help="joint_ctc_weight of the record")
    ap.add_argument("--default-decoding", default="joint", choices=("ctc", "attention", "joint"))
    ap.add_argument("--weights", default="best.pt", help="best.pt or checkpoint.pt (the last)")
    ap.add_argument("--dry-run", action="store_true", help="measure only")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    base = load_model(BASE)
    trained = decoder_model_from(base, CHARSET, keep_ctc_charset=True)
    saved = torch.load(args.run / args.arm / args.weights, weights_only=False)
    saved = saved.get("model", saved)
    missing, unexpected = trained.load_state_dict(saved, strict=False)
    if unexpected or any(k.startswith("decoder.") or k == "pos_scale" for k in missing):
        raise SystemExit(f"{args.arm}/best.pt does not fit: missing {missing[:4]}, unexpected {unexpected[:4]}")
    cfg = get_config("ppocrv6-small-attn", min_width=base.config.min_width, joint_ctc_weight=args.joint_weight,
                     default_decoding=args.default_decoding)
    model = build_model(cfg)
    model.load_state_dict(trained.state_dict(), strict=True)
    result = json.loads((args.run / args.arm / "result.json").read_text())

    _, val = load_splits(args.data_root)
    iiit = FolderDataset(args.data_root / "IIIT5K")
    sets = {"val": val, "IIIT5K": [(iiit[i].image, iiit[i].label) for i in range(len(iiit))]}
    table: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = save_pretrained(model, Path(tmp) / args.name, dtype=torch.float16)
        readers = {"default": (Recognizer.from_pretrained(BASE, device="cpu", dtype="float32"), {"ctc": ("ctc", "")}),
                   "candidate": (Recognizer.from_pretrained(out, device="cpu", dtype="float32"), READINGS)}
        for who, (rec, readings) in readers.items():
            for reading, (decoding, mode) in readings.items():
                for set_name, samples in sets.items():
                    r = score(rec, samples, decoding, mode or "autoregressive")
                    table.setdefault(f"{who}/{reading}", {})[set_name] = r
                    print(f"{who:9s} {reading:18s} {set_name:7s} {r['36']:6.2f} {r['94']:6.2f} ({r['seconds']} s)",
                          flush=True)
        ref = table["default/ctc"]
        keys = [("val", "36"), ("val", "94"), ("IIIT5K", "36"), ("IIIT5K", "94")]
        passing = [r for r in READINGS if all(table[f"candidate/{r}"][s][p] > ref[s][p] for s, p in keys)]
        if args.default_decoding not in passing:
            print(f"refused: the default decoding {args.default_decoding!r} does not beat the default model on the "
                  "validation split and IIIT5K under both protocols")
            (args.run / f"bundle_{args.arm}.json").write_text(json.dumps({"table": table, "passing": passing},
                                                                         indent=1))
            return 1
        (args.run / f"bundle_{args.arm}.json").write_text(json.dumps({"table": table, "passing": passing}, indent=1))
        if not passing:
            print("refused: no decoding beats the default on the validation split and IIIT5K under both protocols")
            return 1
        print(f"passing decodings: {passing}")
        if args.dry_run:
            return 0
        metrics: dict[str, Any] = {}
        for reading, (decoding, mode) in READINGS.items():
            cmd_mode = " --mode parallel" if mode == "parallel" else ""
            r_iiit, r_val = table[f"candidate/{reading}"]["IIIT5K"], table[f"candidate/{reading}"]["val"]
            key = "IIIT5K" if reading == args.default_decoding else f"IIIT5K/{reading}"
            metrics[key] = {"accuracy": r_iiit["36"], "protocol": "36", "count": r_iiit["count36"],
                            "decoding": decoding, **({"mode": mode} if decoding == "attention" else {}),
                            "dtype": "float32", "by_protocol": {"36": r_iiit["36"], "94": r_iiit["94"]},
                            "command": f"str-distill eval --model {args.name} --data IIIT5K --protocol {{36,94}} "
                                       f"--decoding {decoding}{cmd_mode} --dtype float32"}
            vkey = "validation" if reading == args.default_decoding else f"validation/{reading}"
            metrics[vkey] = {
                "accuracy": r_val["36"], "protocol": "36", "count": r_val["count36"], "decoding": decoding,
                "by_protocol": {"36": r_val["36"], "94": r_val["94"]},
                "original": {"36": ref["val"]["36"], "94": ref["val"]["94"]},
                "what": f"{int(VAL_SPLIT * 100)} % of every real training set held out (seed {SEED}): "
                        + ", ".join(TRAIN_SETS),
                "command": f"str-distill eval --model {args.name} --data " + " ".join(f"DATA/{s}" for s in TRAIN_SETS)
                           + f" --val-split {VAL_SPLIT} --seed {SEED} --protocol {{36,94}} --decoding {decoding}"
                           + cmd_mode}
        desc = ("PP-OCRv6 small with an attention decoder: the encoder and CTC head of ppocrv6-small.scene-ft-neck "
                "(frozen: its CTC reading is the default model's, over the full dictionary) and a one-layer "
                "PARSeq-style attention decoder over the encoder's frames, trained by str-distill on cached features "
                "of real scene-text crops and synthetic words, reading PP-OCRv6's 94 printable ASCII characters. "
                "Reads with joint (default: the CTC and the attention reading, the better by log p_attention + "
                f"{args.joint_weight:g} log p_ctc; a CTC reading with other characters is kept), attention "
                "(autoregressive or parallel) or ctc.")
        record = mf.make_record(args.name, out, bundle=True, license="Apache-2.0", metrics=metrics, description=desc)
        record["attribution"] = ATTRIBUTION
        record["inference"] = {"cpu_dtype": "float32"}
        record["training"] = {
            "base": BASE, "arm": args.arm, "objective": args.arm.split("-")[0], "steps": result["steps"],
            "samples": result["samples"], "minutes": round(result["seconds"] / 60, 1),
            "best_step": result["best_step"], "frozen": "encoder and CTC head (only the decoder trained)",
            "data": list(TRAIN_SETS), "validation_split": VAL_SPLIT, "seed": SEED, "config": result["config"],
            "command": f"python recipes/decoder/train.py --data-root DATA -o OUT --views {result['config']['views']} "
                       f"--minutes {result['config']['minutes']} --arms {args.arm.split('-')[0]} --threads 1"
                       + (f" --synth {result['config']['synth']} --with-synth --tag=-synth"
                          if result["config"].get("synth") else ""),
            "recipe": "recipes/decoder/train.py",
        }
        mf.update_record(args.name, record, default=False)
        golden(args.name, REPO / "examples", REPO / "tests" / "golden" / f"{args.name}.json")
    problems = mf.validate_manifest()
    if problems:
        print("manifest problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"{args.name}: bundled, record and golden outputs written")
    return 0


def golden(name: str, examples: Path, out: Path) -> None:
    """Pin the texts and confidences of every decoding on ``examples/`` (``tests/test_golden.py``)."""
    rec = Recognizer.from_pretrained(name, device="cpu", dtype="float32")
    images = sorted(p for p in examples.iterdir() if p.suffix.lower() == ".png")
    res: dict[str, Any] = {"model": name, "images": {p.name: {} for p in images}}
    for decoding in ("ctc", "attention", "joint"):
        for path, pred in zip(images, rec.predict([str(p) for p in images], decoding=decoding)):
            res["images"][path.name][decoding] = {"text": pred.text, "confidence": round(float(pred.confidence), 5)}
    res["weights_sha256"] = [f["sha256"] for f in (mf.get_record(name) or {}).get("files", [])]
    out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
