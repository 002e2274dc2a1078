"""Training data pipeline throughput, single process: samples per CPU-second (= per DataLoader worker core).

    python benchmarks/data_pipeline.py [--data "synth:0.9 .carry/real/train:0.1"] [--batch-size 256] [--batches 8]

Builds batches exactly as ``str-distill train`` does (:class:`~str_distill.data.mix.MixedBatchStream`: render or
decode, label checks, augmentation of real sources, the inference ``Preprocessor``, stacking, target encoding)
for ``siga-vit-s``'s charset and input size. The renderer's font and background caches are filled first (a
long-running worker fills them within its first few thousand samples), so the figure is the steady state.
Multiply by the number of workers for a machine's data rate (if it has that many free cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from str_distill.data.augment import Augmenter  # noqa: E402
from str_distill.data.collate import SampleProcessor  # noqa: E402
from str_distill.data.mix import MixedBatchStream, build_sources  # noqa: E402
from str_distill.data.spec import parse_specs  # noqa: E402
from str_distill.models.registry import get_config  # noqa: E402
from str_distill.preprocess import Preprocessor  # noqa: E402
from str_distill.tokenizer import Tokenizer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="synth", help="space-separated --data specs (default: %(default)s)")
    ap.add_argument("--model", default="siga-vit-s")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=8, help="timed batches")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds; the median is reported")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = get_config(args.model)
    tok = Tokenizer(cfg.charset, cfg.max_label_length)
    sources, _ = build_sources(parse_specs(args.data.split()), tok.charset, tok.max_length, seed=0)
    stream = MixedBatchStream(sources, SampleProcessor(tok, Preprocessor(cfg), Augmenter()), args.batch_size, seed=0)
    t0 = time.perf_counter()
    for s in sources:
        if hasattr(s.dataset, "preload"):
            s.dataset.preload()
        renderer = getattr(getattr(s.dataset, "dataset", None), "renderer", None)
        if renderer is not None:
            renderer.warm_up()
    stream.make_batch(0)
    print(f"data {args.data!r}, batch {args.batch_size}: set-up and cache warm-up {time.perf_counter() - t0:.1f} s")
    rates = []
    b = 1
    for _ in range(args.repeats):
        c0 = time.process_time()
        for _ in range(args.batches):
            stream.make_batch(b)
            b += 1
        rates.append(args.batches * args.batch_size / (time.process_time() - c0))
        print(f"  {rates[-1]:.0f} samples per CPU-second")
    rates.sort()
    print(f"median {rates[len(rates) // 2]:.0f} samples per CPU-second (one core; x workers for a machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
