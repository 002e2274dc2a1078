"""Images per second of ``Recognizer.predict`` (end to end: decoding PNG bytes, preprocessing, model, text).

    python benchmarks/predict_speed.py                                  # random siga-vit-s, CPU, batch 64
    python benchmarks/predict_speed.py --model path/to/model_dir --device cuda --dtype float16

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="siga-vit-s", help="architecture name (random weights) or weights to load")
    p.add_argument("--images", type=int, default=256, help="images per measurement")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=2, help="measurements per setting; the best is reported")
    args = p.parse_args()
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
        rec.predict(images[: args.batch_size], batch_size=args.batch_size, decoding=decoding, mode=mode)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            if rec.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            rec.predict(images, batch_size=args.batch_size, decoding=decoding, mode=mode)
            if rec.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        label = decoding if decoding == "ctc" else f"{decoding} ({mode})"
        print(f"  {label:26s} {args.images / best:8.1f} images/s  ({1000 * best / args.images:.2f} ms/image)")


if __name__ == "__main__":
    main()
