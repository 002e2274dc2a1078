"""Bundle the PP-OCRv6 small port: convert the published ONNX file, measure, record, pin the golden outputs.

    pip install -e ".[test]"          # onnx, onnxruntime, rapidocr==3.10.0
    python recipes/ppocrv6/bundle.py --data path/to/IIIT5K [--default ppocrv6-small]

For ``ppocrv6-small`` (the full multilingual head; a head pruned to the 94 printable ASCII characters is not a
published name: ``str-distill export ppocrv6-small --charset ppocrv6-en`` writes one):

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
import sys
import tempfile
from pathlib import Path

from str_distill.hub import manifest as mf
from str_distill.hub.convert_ppocr import PPOCRV6_SMALL_SHA256, convert_ppocr
from str_distill.training.publish import check_manifest, measure, publish

NAMES = {"ppocrv6-small": "ppocrv6"}
DESCRIPTIONS = {
    "ppocrv6-small": (
        "PP-OCRv6 small text recognizer (PaddleOCR), ported to native PyTorch: PPLCNetV4-style convolutional "
        "backbone in its deployed form, LightSVTR neck (2 transformer blocks, width 120), CTC head over the full "
        "multilingual dictionary (18,708 characters + space; Chinese, Japanese, Latin and more). Input: BGR, height "
        "48, width from the aspect ratio (at least 320, at most 1600). Weights converted from the published ONNX "
        "file without retraining."
    ),
}
LICENSE = "Apache-2.0"
ATTRIBUTION = (
    "PP-OCRv6_small_rec by the PaddleOCR authors (https://github.com/PaddlePaddle/PaddleOCR); upstream weights "
    "copyright Baidu and/or the applicable PaddleOCR rights holders, Apache-2.0. ONNX packaging by the RapidOCR "
    "Authors (rapidocr==3.10.0, Apache-2.0). Converted to PyTorch/safetensors by str-distill (float16; a .en "
    "record keeps only the CTC head's ASCII rows). See NOTICE."
)


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
            metrics, cpu_dtype = measure(out, args.data, name)
            rec = mf.make_record(name, out, bundle=True, license=LICENSE, metrics=metrics,
                                 description=DESCRIPTIONS[name])
            rec["source"] = {"package": "rapidocr==3.10.0", "file": "rapidocr/models/PP-OCRv6_rec_small.onnx",
                             "sha256": info["sha256"], "bytes": info["bytes"], "opset": info["opset"],
                             "upstream": "PP-OCRv6_small_rec (PaddleOCR)",
                             "converted_with": f"str-distill convert ppocr --charset {NAMES[name]} --dtype float16"}
            rec["attribution"] = ATTRIBUTION
            rec["inference"] = {"cpu_dtype": cpu_dtype}
            rec["training"] = None
            publish(name, rec, default=name == args.default)
    return check_manifest()


if __name__ == "__main__":
    raise SystemExit(main())
