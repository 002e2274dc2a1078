"""Bundle the PP-OCRv6 small port: convert the published ONNX file, measure, record, pin the golden outputs.

    pip install -e ".[test]"          # onnx, onnxruntime, rapidocr==3.10.0
    python recipes/ppocrv6/bundle.py --data path/to/IIIT5K [--default ppocrv6-small.en]

For each name (``ppocrv6-small``: the full multilingual head; ``ppocrv6-small.en``: pruned to the 94 printable
ASCII characters):

1. ``str-distill convert ppocr --charset ... --dtype float16`` into a work folder;
2. evaluate those float16 weights (loaded as float32, as every user loads them) on IIIT5K under the 36- and
   94-character protocols, in float32 and bfloat16 inference, with the library's evaluation (the numbers
   ``str-distill eval`` prints);
3. copy the files into ``str_distill/weights/`` and write the manifest record: architecture and config, charset,
   preprocessing, sha256 and size, the source wheel and file with its sha256, license and attribution, the metrics
   with their command, and the CPU inference dtype (bfloat16 only when it reads the same text as float32 on every
   image);
4. write ``tests/golden/<name>.json``, the texts and confidences of ``examples/`` that ``tests/test_golden.py`` pins.

``--default`` names the manifest's default model; the README should name the one that reads better under both
protocols.
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

from str_distill.hub import manifest as mf  # noqa: E402
from str_distill.hub.convert_ppocr import PPOCRV6_SMALL_SHA256, convert_ppocr  # noqa: E402

NAMES = {"ppocrv6-small": "ppocrv6", "ppocrv6-small.en": "ppocrv6-en"}
DESCRIPTIONS = {
    "ppocrv6-small": (
        "PP-OCRv6 small text recognizer (PaddleOCR), ported to native PyTorch: PPLCNetV4-style convolutional "
        "backbone in its deployed form, LightSVTR neck (2 transformer blocks, width 120), CTC head over the full "
        "multilingual dictionary (18,708 characters + space; Chinese, Japanese, Latin and more). Input: BGR, height "
        "48, width from the aspect ratio (at least 320, at most 1600). Weights converted from the published ONNX "
        "file without retraining."
    ),
    "ppocrv6-small.en": (
        "PP-OCRv6 small text recognizer (PaddleOCR), ported to native PyTorch, with its CTC head pruned to the "
        "blank and the 94 printable ASCII characters (English and other Latin-script text without accents). Same "
        "backbone, neck and weights as ppocrv6-small; input BGR, height 48, width from the aspect ratio (at least "
        "320, at most 1600). Converted from the published ONNX file without retraining."
    ),
}
LICENSE = "Apache-2.0"
ATTRIBUTION = (
    "PP-OCRv6_small_rec by the PaddleOCR authors (https://github.com/PaddlePaddle/PaddleOCR); upstream weights "
    "copyright Baidu and/or the applicable PaddleOCR rights holders, Apache-2.0. ONNX packaging by the RapidOCR "
    "Authors (rapidocr==3.10.0, Apache-2.0). Converted to PyTorch/safetensors by str-distill (float16; a .en "
    "record keeps only the CTC head's ASCII rows). See NOTICE."
)


def measure(weights: Path, data: Path) -> tuple[dict[str, Any], str]:
    """IIIT5K metrics under both protocols in float32 and bfloat16, and the CPU dtype to default to.

    One pass per dtype through ``Recognizer.predict`` (batch 64), scored as ``str-distill eval`` scores it.
    """
    import time

    import torch

    from str_distill import Recognizer
    from str_distill.training.evaluate import open_eval_sets
    from str_distill.training.metrics import WordMetrics, normalize_protocol

    torch.set_num_threads(2)
    ds = open_eval_sets([str(data)])[0][1]
    samples = [ds[i] for i in range(len(ds))]
    by: dict[str, Any] = {}
    texts: dict[str, list[str]] = {}
    for dtype in ("float32", "bfloat16"):
        rec = Recognizer.from_pretrained(weights, device="cpu", dtype=dtype)
        t0 = time.perf_counter()
        texts[dtype] = [p.text for p in rec.predict([s.image for s in samples], batch_size=64)]
        seconds = round(time.perf_counter() - t0, 1)
        for protocol in ("36", "94"):
            m = WordMetrics(protocol)  # type: ignore[arg-type]
            for s, text in zip(samples, texts[dtype]):
                if normalize_protocol(s.label, protocol):  # type: ignore[arg-type]
                    m.update(text, s.label)
            by.setdefault(dtype, {})[protocol] = {"accuracy": round(100 * m.accuracy, 2),
                                                  "one_minus_ned": round(100 * m.one_minus_ned, 2), "count": m.count}
            print(f"  {dtype:8s} protocol {protocol}: {100 * m.accuracy:.2f} % (1-NED {100 * m.one_minus_ned:.2f})",
                  flush=True)
        by[dtype]["seconds"] = seconds
    same = sum(a == b for a, b in zip(texts["float32"], texts["bfloat16"]))
    cpu_dtype = "bfloat16" if same == len(samples) else "float32"
    print(f"  bfloat16 reads the same text as float32 on {same} of {len(samples)} images -> CPU default {cpu_dtype}")
    metrics = {
        "IIIT5K": {**by["float32"]["36"], "protocol": "36", "decoding": "ctc", "dtype": "float32",
                   "by_protocol": {p: by["float32"][p] for p in ("36", "94")},
                   "bfloat16": {p: by["bfloat16"][p] for p in ("36", "94")},
                   "bfloat16_same_text": f"{same}/{len(samples)}",
                   "command": "str-distill eval --model {name} --data IIIT5K --protocol {36,94} --dtype "
                              "{float32,bfloat16}"},
    }
    return metrics, cpu_dtype


def golden(name: str, examples: Path, out: Path) -> None:
    from str_distill import Recognizer

    rec = Recognizer.from_pretrained(name, device="cpu", dtype="float32")
    images = sorted(p for p in examples.iterdir() if p.suffix.lower() == ".png")
    res: dict[str, Any] = {"model": name, "images": {}}
    for path, pred in zip(images, rec.predict([str(p) for p in images], decoding="ctc")):
        res["images"][path.name] = {"ctc": {"text": pred.text, "confidence": round(float(pred.confidence), 5)}}
    res["weights_sha256"] = [f["sha256"] for f in (mf.get_record(name) or {}).get("files", [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the IIIT5K labels.tsv folder")
    ap.add_argument("--onnx", type=Path, help="PP-OCRv6_rec_small.onnx (default: inside the installed rapidocr)")
    ap.add_argument("--names", nargs="+", default=list(NAMES), choices=list(NAMES))
    ap.add_argument("--default", choices=list(NAMES), help="make this name the manifest's default model")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            out = Path(tmp) / name
            import torch

            info = convert_ppocr(args.onnx, out, charset=NAMES[name], dtype=torch.float16)
            if info["sha256"] != PPOCRV6_SMALL_SHA256:
                print(f"warning: source sha256 {info['sha256']} is not rapidocr 3.10.0's file", file=sys.stderr)
            print(f"{name}: converted ({info['num_parameters']:,} parameters); measuring on {args.data}", flush=True)
            metrics, cpu_dtype = measure(out, args.data)
            for m in metrics.values():
                m["command"] = m["command"].replace("{name}", name)
            rec = mf.make_record(name, out, bundle=True, license=LICENSE, metrics=metrics,
                                 description=DESCRIPTIONS[name])
            rec["source"] = {"package": "rapidocr==3.10.0", "file": "rapidocr/models/PP-OCRv6_rec_small.onnx",
                             "sha256": info["sha256"], "bytes": info["bytes"], "opset": info["opset"],
                             "upstream": "PP-OCRv6_small_rec (PaddleOCR)",
                             "converted_with": f"str-distill convert ppocr --charset {NAMES[name]} --dtype float16"}
            rec["attribution"] = ATTRIBUTION
            rec["inference"] = {"cpu_dtype": cpu_dtype}
            rec["training"] = None
            mf.update_record(name, rec, default=name == args.default)
            golden(name, REPO / "examples", REPO / "tests" / "golden" / f"{name}.json")
            print(f"{name}: bundled ({rec['size_bytes']:,} bytes), record and golden outputs written", flush=True)
    problems = mf.validate_manifest()
    if problems:
        print("manifest problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
