"""``str-distill convert ppocr [FILE.onnx] -o DIR``: a published PP-OCR recognizer as native str-distill weights."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert third-party recognizer weights (PP-OCRv6 ONNX) to str-distill weights",
        description="Convert the PP-OCRv6 small recognizer's ONNX file into a save_pretrained folder "
        "(config.json + model.safetensors) that Recognizer.from_pretrained(DIR) and every command read. "
        "The ONNX tensors are mapped one by one onto the native PyTorch model and checked strictly. "
        'Needs the onnx package: pip install "str-distill[convert]".',
    )
    p.add_argument("family", choices=("ppocr",), help="the source family (ppocr: PP-OCRv6 small rec)")
    p.add_argument("onnx", nargs="?", default=None,
                   help="the .onnx file (default: PP-OCRv6_rec_small.onnx inside an installed rapidocr==3.10.0)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--charset", default="ppocrv6",
                   help="ppocrv6: the full multilingual head (18,710 classes); ppocrv6-en: pruned to the 94 "
                   "printable ASCII characters (default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                   help="storage dtype of the weights (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..hub.convert_ppocr import ConversionError, convert_ppocr

    try:
        info = convert_ppocr(args.onnx, args.output, charset=args.charset,
                             dtype=torch.float16 if args.dtype == "float16" else None)
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ConversionError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"converted {info['file']} (sha256 {info['sha256']}, {info['bytes']} bytes, opset {info['opset']}): "
          f"{info['tensors_mapped']} tensors, {info['num_parameters']:,} parameters, charset {info['charset']!r} "
          f"-> {info['output']}")
    return 0
