"""``str-distill export [MODEL] --format onnx -o FILE``: one self-contained ONNX file for deployment.

The file carries the charset and the preprocessing in its metadata; ``Recognizer.from_pretrained(FILE)`` reads it
with onnxruntime, and so does the torch-free ``str_distill.backends.onnx_reader.ONNXReader``. After writing, the
export is checked against torch on a few rendered words (largest logits difference and whether the texts agree)
unless ``--no-check``.

Exit status: 0 written (and checked), 1 the check found a difference beyond the tolerance, 2 bad arguments,
unloadable weights or a missing package.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]

#: float32 export vs torch: the largest logits difference the check accepts, relative to the largest |logit|
#: (float32 rounding differs between any two implementations, torch's own memory formats included)
TOLERANCE = 1e-4


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX (onnxruntime backend, deployment without torch)",
        description="Export a recognizer to one ONNX file (opset 17+, dynamic batch; dynamic width for PP-OCR "
        "models) that carries its charset and preprocessing. Read it with "
        "Recognizer.from_pretrained(FILE), `str-distill predict --model FILE`, or onnxruntime alone. "
        'Needs the onnx extra: pip install "str-distill[onnx]".',
    )
    p.add_argument("model", nargs="?", default=None,
                   help="weights name, directory, .safetensors file or hf-hub:org/repo[@rev] (default: the default "
                   "model, see `str-distill models`)")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--revision", help="revision of an hf-hub: model")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or later (default: %(default)s)")
    p.add_argument("--refine-iters", type=int, default=1,
                   help="ViT models: refinement passes of parallel attention decoding (default: %(default)s)")
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="dynamic int8 quantization of the weights (see the export docs for its accuracy cost)")
    p.add_argument("--charset", default=None,
                   help="PP-OCR models: keep only these classes of the CTC head, e.g. ppocrv6-en (the 94 printable "
                   "ASCII characters: a faster head for English text; see the export docs)")
    p.add_argument("--min-width", type=int, default=None,
                   help="PP-OCR models: pad narrow images to at least this width instead of the weights' own "
                   "(fewer pixels to compute; see the export docs)")
    p.add_argument("--local-files-only", action="store_true", help="never use the network (like HF_HUB_OFFLINE=1)")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare the file with torch on a few rendered words (default: on; needs onnxruntime)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export.onnx_export import export_onnx
    from ..hub.loading import WeightsIntegrityError, WeightsNotFoundError, load_model
    from ..hub.manifest import default_model

    source = args.model or default_model()
    out = Path(args.output)
    if out.suffix != ".onnx":
        print(f"error: the output file must end with .onnx, got {out}", file=sys.stderr)
        return 2
    try:
        model = load_model(source, revision=args.revision, local_files_only=args.local_files_only)
    except (WeightsNotFoundError, WeightsIntegrityError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.charset is not None:
        from ..hub.convert_ppocr import prune_charset
        from ..models.ppocr import PPOCRRecognizer

        if not isinstance(model, PPOCRRecognizer):
            print(f"error: --charset applies to PP-OCR models only, not {model.config.arch}", file=sys.stderr)
            return 2
        try:
            model = prune_charset(model, args.charset)
        except ValueError as e:
            print(f"error: --charset {args.charset}: {e}", file=sys.stderr)
            return 2
    overrides = {} if args.min_width is None else {"min_width": args.min_width}
    t0 = time.perf_counter()
    print(f"exporting {source} to {out} ...", file=sys.stderr, flush=True)  # progress: the steps, as they start
    try:
        export_onnx(model, out, opset=args.opset, refine_iters=args.refine_iters, quantize=args.quantize,
                    preprocessing=overrides, source=str(source))
    except (ImportError, TypeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = out.stat().st_size
    print(f"wrote {out} ({size / 2**20:.1f} MiB, opset {args.opset}, {args.quantize or 'float32'}, "
          f"{time.perf_counter() - t0:.1f} s) from {source}")
    if not args.check:
        return 0
    print(f"checking {out} against torch ...", file=sys.stderr, flush=True)
    try:
        report = check_against_torch(model, out, overrides)
    except ImportError as e:
        print(f"check skipped: {e}", file=sys.stderr)
        return 0
    print(report["line"])
    return 0 if report["ok"] or args.quantize else 1


def check_against_torch(model: Any, path: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Run the export and torch on a few rendered words with every decoding; report the largest logits difference
    and whether the texts agree (``ok``: within :data:`TOLERANCE` and the same texts)."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from ..backends.ort_model import ONNXRuntimeBackend
    from ..export.onnx_export import _config_with
    from ..predictor import Recognizer

    onnx_model = ONNXRuntimeBackend.from_file(path)
    torch_model = model
    if overrides:  # read the same preprocessing as the file
        torch_model.config = _config_with(model.config, overrides)
    images = []
    for i, word in enumerate(("Hello", "EXIT", "2024", "station", "Caf3")):
        img = Image.new("RGB", (40 + 24 * len(word), 32 + 4 * i), (235, 230, 220))
        ImageDraw.Draw(img).text((6, 8), word, fill=(20, 20, 30))
        images.append(np.asarray(img))
    ours, ref = Recognizer(onnx_model), Recognizer(torch_model, device="cpu", dtype="float32")
    worst, scale, same = 0.0, 1.0, True
    refine = onnx_model.info.refine_iters
    settings = [("ctc", "autoregressive")] if "attention" not in onnx_model.decodings else [
        ("ctc", "autoregressive"), ("attention", "parallel"), ("attention", "autoregressive")]
    for decoding, mode in settings:
        for _, batch in ref.preprocessor.batches([ref.preprocessor(Image.fromarray(a)) for a in images]):
            with torch.inference_mode():
                a = ref.model(batch, decoding, mode, refine).logits
            b = onnx_model.forward(batch, decoding, mode, refine).logits
            steps = min(a.shape[1], b.shape[1])
            worst = max(worst, float((a[:, :steps] - b[:, :steps]).abs().max()))
            scale = max(scale, float(a.abs().max()))
        texts_a = [p.text for p in ref.predict(images, decoding=decoding, mode=mode,
                                               refine_iters=refine)]
        texts_b = [p.text for p in ours.predict(images, decoding=decoding, mode=mode,
                                                refine_iters=refine)]
        same &= texts_a == texts_b
    ok = worst <= TOLERANCE * scale and same
    names = ", ".join(d if d == "ctc" else m for d, m in settings)
    line = (f"check vs torch on {len(images)} rendered words ({names}): max |logits difference| {worst:.2e} "
            f"(largest |logit| {scale:.1f}), texts "
            f"{'identical' if same else 'DIFFER'}"
            + ("" if ok else f"; beyond the float32 tolerance {TOLERANCE:g} x largest |logit|"
               + (" (expected with int8 weights)" if onnx_model.info.quantization != "none" else "")))
    return {"ok": ok, "max_abs_diff": worst, "scale": scale, "same_text": same, "line": line}
