"""Synthetic word renderer throughput, single process (images per CPU-second = per core).

    python benchmarks/synth_throughput.py [--pack DIR] [--n 2000] [--warmup 300] [--seed 0]

Without ``--pack`` the pack resolves like ``ResourcePack.load()``: $STR_DISTILL_SYNTH_PACK, the repository's
``.synth_pack/``, else the fallback (system fonts, procedural backgrounds). Warm-up images fill the font and
background caches and are reported separately (cold caches cost ~1 ms per font open).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from str_distill.data.synth.render import SynthConfig, measure_throughput  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pack", default=None, help="pack folder (default: auto, see module doc)")
    ap.add_argument("--n", type=int, default=2000, help="timed images")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fixed-height", type=int, default=None, help="render at one output height (e.g. 32)")
    args = ap.parse_args(argv)
    cfg = SynthConfig() if args.fixed_height is None else SynthConfig(height_range=(args.fixed_height,) * 2)
    res = measure_throughput(pack=args.pack, n=args.n, warmup=args.warmup, seed=args.seed, config=cfg)
    print(json.dumps(res, indent=1))
    print(f"{res['images_per_cpu_second']:.0f} images/s per core (single process, warm caches)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
