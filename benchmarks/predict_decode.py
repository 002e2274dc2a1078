"""Images/s of ``Recognizer.predict`` (what ``str-distill predict`` runs) with image decoding in 0..N worker threads.

Writes ``--count`` word crops to a temporary folder (rendered words on a noisy background, saved as JPEG or PNG at
``--size``), then reads them from their paths with ``decode_workers`` = each of ``--workers``, best of ``--repeats``
runs each. Also measured: decoding + preprocessing alone with the same worker counts (how fast the images can be
fed to a model, e.g. a GPU) and the model alone on preprocessed batches; ``serial_estimate_img_s`` is what one
thread doing both in turn can reach. Hiding the decoding behind the
model can at most reach the model's own rate; on a machine shared with other programs, more busy threads also win a
larger share of the cores, which inflates the gain.

    python benchmarks/predict_decode.py                      # the bundled default model, 512 JPEG crops 96x384
    python benchmarks/predict_decode.py --threads 2 --size 48 192 --format png
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from str_distill import Recognizer
from str_distill.predictor import resolve_decoding
from str_distill.prefetch import prepared_chunks
from str_distill.preprocess import iter_inputs, load_image

WORDS = ["invoice", "total", "street", "welcome", "parking", "exit", "coffee", "station", "2024", "open"]


def make_crops(root: Path, count: int, size: tuple[int, int], fmt: str, seed: int = 0) -> list[str]:
    """``count`` word crops of ``size`` (H, W): a dark word on a light, noisy background (JPEG or PNG)."""
    rng = np.random.default_rng(seed)
    h, w = size
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", int(h * 0.6))
    except OSError:
        font = ImageFont.load_default()
    paths = []
    for i in range(count):
        bg = rng.integers(150, 256, 3)
        arr = np.clip(bg + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        ImageDraw.Draw(img).text((w // 20, h // 6), str(rng.choice(WORDS)), fill=tuple(int(v) for v in
                                                                                       rng.integers(0, 80, 3)),
                                 font=font)
        p = root / f"{i:05d}.{fmt}"
        img.save(p, quality=90) if fmt == "jpg" else img.save(p)
        paths.append(str(p))
    return paths


def best_rate(fn: object, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return n / min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="weights (default: the bundled default model)")
    ap.add_argument("--count", type=int, default=512)
    ap.add_argument("--size", type=int, nargs=2, default=(96, 384), metavar=("H", "W"))
    ap.add_argument("--format", choices=("jpg", "png"), default="jpg")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rec = Recognizer.from_pretrained(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_crops(Path(tmp), args.count, tuple(args.size), args.format)
        rec.predict(paths[: args.batch_size], batch_size=args.batch_size)  # warm-up
        n = len(paths)
        prepared: list[torch.Tensor] = []

        def decode() -> None:
            prepared[:] = [rec.preprocessor(load_image(p, p)) for p in paths]

        decode_rate = best_rate(decode, n, args.repeats)
        feed_rates = {}
        for w in args.workers:
            def feed(w: int = w) -> None:
                prep = lambda x, name: rec.preprocessor(load_image(x, name))  # noqa: E731
                for _ in prepared_chunks(iter_inputs(paths), prep, args.batch_size, w):
                    pass

            feed_rates[w] = best_rate(feed, n, args.repeats)

        decoding = resolve_decoding(rec.model, None)

        def model() -> None:
            batch = args.batch_size
            for i in range(0, n, batch):
                for _, x in rec.preprocessor.batches(prepared[i:i + batch]):
                    rec._run(x, decoding, "autoregressive", 1, False)

        model_rate = best_rate(model, n, args.repeats)
        rates = {}
        for w in args.workers:
            rates[w] = best_rate(lambda w=w: rec.predict(paths, batch_size=args.batch_size, decode_workers=w), n,
                                 args.repeats)
    res = {
        "model": rec.model.config.arch, "images": n, "size": list(args.size), "format": args.format,
        "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
        "decode_preprocess_only_img_s": round(decode_rate, 1),
        "decode_preprocess_only_img_s_by_workers": {f"decode_workers={w}": round(r, 1) for w, r in feed_rates.items()},
        "model_only_img_s": round(model_rate, 1),
        "serial_estimate_img_s": round(1 / (1 / decode_rate + 1 / model_rate), 1),
        "predict_img_s": {f"decode_workers={w}": round(r, 1) for w, r in rates.items()},
        "gain_vs_0": {f"decode_workers={w}": f"{100 * (r / rates[args.workers[0]] - 1):+.1f} %"
                      for w, r in rates.items()},
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
