"""Reading rotated words: accuracy and cost of ``Recognizer(orientation=...)`` on IIIT5K turned 0, 90, 180, 270
degrees (counter-clockwise), one torch thread::

    python benchmarks/rotated_words.py --data path/to/IIIT5K --limit 1000

For each orientation mode (``upright``: as given; ``tall``: tall crops read turned both ways; ``auto``: also
unsure crops read upside down) and each rotation it prints the word accuracy (standard 36-character protocol), the
images read per second and how many readings the model made per image. ``--upside-down-below`` tries other
thresholds for the upside-down re-read of ``auto`` (1.01: always).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a set folder (labels.tsv + images), e.g. IIIT5K")
    ap.add_argument("--limit", type=int, default=1000, help="the first N images (default: %(default)s)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--modes", default="upright,tall,auto")
    ap.add_argument("--rotations", default="0,90,180,270")
    ap.add_argument("--upside-down-below", default=None, help="comma-separated thresholds for mode auto")
    args = ap.parse_args()

    import torch
    from PIL import Image

    torch.set_num_threads(1)
    from str_distill import Recognizer, predictor
    from str_distill.training.metrics import normalize_protocol

    rows = [line.split("\t") for line in (args.data / "labels.tsv").read_text(encoding="utf-8").splitlines() if line]
    rows = [(args.data / p, label) for p, label in rows if normalize_protocol(label, "36")][: args.limit]
    images = [Image.open(p).convert("RGB") for p, _ in rows]
    labels = [normalize_protocol(label, "36") for _, label in rows]
    base = Recognizer.from_pretrained(args.model, device="cpu")
    print(f"{base!r}, {len(images)} images of {args.data.name}, 1 thread")
    calls = [0]
    base.model.register_forward_pre_hook(lambda m, inp: calls.__setitem__(0, calls[0] + inp[0].shape[0]))
    thresholds = [float(x) for x in args.upside_down_below.split(",")] if args.upside_down_below else [None]
    print(f"{'mode':>22s} {'rotation':>8s} {'accuracy %':>10s} {'img/s':>7s} {'reads/img':>9s}")
    for mode in args.modes.split(","):
        for thr in thresholds if mode == "auto" else [None]:
            if thr is not None:
                predictor.UPSIDE_DOWN_BELOW = thr
            rec = Recognizer(base.model, device="cpu", dtype=base.dtype, orientation=mode)  # type: ignore[arg-type]
            name = mode if thr is None else f"{mode} (below {thr:g})"
            for rot in (int(r) for r in args.rotations.split(",")):
                turned = [im.rotate(rot, expand=True) if rot else im for im in images]
                calls[0] = 0
                t0 = time.perf_counter()
                preds = rec.predict(turned, batch_size=32)
                dt = time.perf_counter() - t0
                acc = sum(normalize_protocol(p.text, "36") == y for p, y in zip(preds, labels)) / len(labels)
                print(f"{name:>22s} {rot:8d} {100 * acc:10.2f} {len(images) / dt:7.1f} {calls[0] / len(images):9.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
