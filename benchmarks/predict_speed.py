"""Images per second of ``Recognizer.predict`` (end to end: decoding PNG bytes, preprocessing, model, text).

    python benchmarks/predict_speed.py                                  # random siga-vit-s, CPU, batch 64
    python benchmarks/predict_speed.py --model path/to/model_dir --device cuda --dtype float16
    python benchmarks/predict_speed.py --model ppocrv6-small --matrix --onnx-reference   # CPU table + peer

``--matrix`` measures 1 and 2 threads x batch 1 and 64 x float32 and bfloat16 (and float32 in NCHW memory format for
convolutional models). ``--onnx-reference`` adds, in the same run, onnxruntime on the original PP-OCRv6 small ONNX
file (inside an installed ``rapidocr``) with RapidOCR's preprocessing, end to end from the same PNG bytes.

A registered architecture name (``siga-vit-s``) is benchmarked with *random* weights: that measures speed only,
and is the worst case for autoregressive decoding (an untrained decoder rarely emits end-of-sequence, so every
batch runs all 26 steps). Trained weights stop as soon as every word in the batch has ended.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

try:
    import str_distill  # noqa: F401
except ImportError:  # running from a source checkout that was not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from str_distill import Recognizer, create_model, list_models  # noqa: E402


def word_images(n: int, seed: int = 0) -> list[bytes]:
    """``n`` PNG-encoded word crops of varied size and colour."""
    rng = np.random.default_rng(seed)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 28)
    except OSError:
        font = ImageFont.load_default()
    words = ["open", "Station", "EXIT", "coffee", "2024", "parking", "Hotel", "sale"]
    out = []
    for i in range(n):
        w, h = int(rng.integers(80, 220)), int(rng.integers(28, 60))
        img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(150, 256, 3)))
        ink = tuple(int(v) for v in rng.integers(0, 90, 3))
        ImageDraw.Draw(img).text((5, 2), words[i % len(words)], font=font, fill=ink)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def onnx_reference(images: list[bytes], threads: int, batch_size: int, repeats: int) -> float:
    """Best images/s of onnxruntime on the original ONNX: cv2 decode, RapidOCR's resize and normalization, each
    batch padded to its widest image (RapidOCR's batching), greedy CTC argmax."""
    import math

    import cv2
    import onnxruntime as ort

    from str_distill.hub.convert_ppocr import find_rapidocr_model

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(find_rapidocr_model()), so, providers=["CPUExecutionProvider"])

    def run() -> None:
        for lo in range(0, len(images), batch_size):
            imgs = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in images[lo : lo + batch_size]]
            ratio = max([320 / 48] + [im.shape[1] / im.shape[0] for im in imgs])
            width = int(48 * ratio)
            batch = np.zeros((len(imgs), 3, 48, width), dtype=np.float32)
            for i, im in enumerate(imgs):
                w = min(width, int(math.ceil(48 * im.shape[1] / im.shape[0])))
                x = cv2.resize(im, (w, 48)).astype(np.float32).transpose(2, 0, 1) / 255
                batch[i, :, :, :w] = (x - 0.5) / 0.5
            sess.run(None, {"x": batch})[0].argmax(-1)

    run()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return len(images) / best


def timed(rec: Recognizer, images: list[bytes], batch_size: int, decoding: str, mode: str, repeats: int) -> float:
    rec.predict(images[:batch_size], batch_size=batch_size, decoding=decoding, mode=mode)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if rec.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        rec.predict(images, batch_size=batch_size, decoding=decoding, mode=mode)
        if rec.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return len(images) / best


def matrix(args: argparse.Namespace, images: list[bytes]) -> None:
    """The CPU table: threads x batch x dtype (x memory format), and the onnxruntime reference."""
    load = (lambda: Recognizer(create_model(args.model), device="cpu")) if args.model in list_models() else (
        lambda: Recognizer.from_pretrained(args.model, device="cpu"))
    rec = load()
    decoding = rec.model.decodings[-1] if "ctc" in rec.model.decodings else rec.model.decodings[0]
    conv = bool(getattr(rec.model, "channels_last", False))
    print(f"{args.model}: {rec.model.num_parameters() / 1e6:.2f}M params, decoding {decoding}, {args.images} PNG "
          f"word images, best of {args.repeats}")
    print("| threads | batch | " + ("onnxruntime fp32 | " if args.onnx_reference else "")
          + ("torch fp32 NCHW | " if conv else "") + "torch fp32 | torch bf16 |")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for batch in (1, 64):
            row = []
            if args.onnx_reference:
                row.append(onnx_reference(images, threads, batch, args.repeats))
            if conv:
                rec.to(dtype="float32")
                rec.model.to(memory_format=torch.contiguous_format)
                rec.model.channels_last = False
                row.append(timed(rec, images, batch, decoding, "autoregressive", args.repeats))
                del rec.model.channels_last  # back to the class default
            for dtype in ("float32", "bfloat16"):
                rec.to(dtype=dtype)
                row.append(timed(rec, images, batch, decoding, "autoregressive", args.repeats))
            print(f"| {threads} | {batch} | " + " | ".join(f"{v:.1f}" for v in row) + " |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="siga-vit-s", help="architecture name (random weights) or weights to load")
    p.add_argument("--images", type=int, default=256, help="images per measurement")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=2, help="measurements per setting; the best is reported")
    p.add_argument("--matrix", action="store_true", help="CPU table: 1/2 threads x batch 1/64 x float32/bfloat16")
    p.add_argument("--onnx-reference", action="store_true",
                   help="with --matrix: also onnxruntime on the original PP-OCRv6 small ONNX (needs rapidocr, "
                   "onnxruntime, opencv)")
    args = p.parse_args()
    if args.matrix:
        matrix(args, word_images(args.images))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model in list_models():
        torch.manual_seed(0)
        rec = Recognizer(create_model(args.model), device=args.device, dtype=args.dtype)
        weights = "random weights (speed only)"
    else:
        rec = Recognizer.from_pretrained(args.model, device=args.device, dtype=args.dtype)
        weights = "trained weights"
    images = word_images(args.images)
    print(f"{args.model} ({weights}, {rec.model.num_parameters() / 1e6:.1f}M params) on {rec.device} {rec.dtype}, "
          f"{torch.get_num_threads()} threads, batch {args.batch_size}, {args.images} PNG images")
    settings = [("ctc", "autoregressive"), ("attention", "autoregressive"), ("attention", "parallel")]
    for decoding, mode in settings:
        if decoding not in rec.model.decodings:
            continue
        rate = timed(rec, images, args.batch_size, decoding, mode, args.repeats)
        label = decoding if decoding == "ctc" else f"{decoding} ({mode})"
        print(f"  {label:26s} {rate:8.1f} images/s  ({1000 / rate:.2f} ms/image)")


if __name__ == "__main__":
    main()
