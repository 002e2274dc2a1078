"""Memory under load: a long ``iter_predict`` run with resident memory sampled, and the peak memory of huge inputs.

    python benchmarks/memory_soak.py [--images 100000] [--model tiny|NAME|PATH] [--batch-size 64] [--huge]

**Soak.** ``--images`` small images (a mix of uint8 arrays, PNG and JPEG bytes, PIL images, float tensors and, one
in a hundred, unreadable bytes, which come back as ``InputError`` with ``errors="return"``) stream through one
``Recognizer.iter_predict`` call. Resident memory (RSS) is sampled every ``--sample-every`` images; the figures are
RSS after a warm-up, at the end, the largest sample, and the growth after the warm-up. ``--model tiny`` (default) is a
small random network of the default model's family and preprocessing, so that 100,000 images take minutes on one
CPU thread; the network's size does not change what is measured (whether memory grows with the number of images).
The exit status is 1 when the growth after the warm-up exceeds ``--max-growth-mb``.

**Huge inputs** (``--huge``): each case is read in a fresh process, which reports its peak RSS growth while
reading it: a 100-megapixel PNG of ~100 kB (refused from its header), a file whose header claims 10 gigapixels,
a 100-megapixel JPEG (decoded at half scale, within the limit), a 24-megapixel PNG (within the limit) and a
20000x1 strip.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from str_distill import Recognizer  # noqa: E402
from str_distill.models import create_model  # noqa: E402
from str_distill.preprocess import InputError  # noqa: E402

#: ``--model tiny``: the ``ppocrv6-small`` family shrunk to ~30k parameters (same preprocessing and batching path).
TINY = dict(stem_channels=[8, 4], channels=[16, 24, 32], depths=[2, 2, 2], se_blocks=[[0], [1], [0]], neck_dim=16,
            neck_heads=2, neck_depth=1, charset="94", max_label_length=40, min_width=64, max_width=256)


def rss_mb() -> float:
    """Current resident memory of this process in MB (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_mb()


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def reset_peak() -> bool:
    """Reset the kernel's record of peak RSS (Linux ``/proc/self/clear_refs``); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float:
    """Peak RSS since the last :func:`reset_peak` (Linux ``VmHWM``), else the process' peak, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return peak_mb()


def load(model: str) -> Recognizer:
    if model == "tiny":
        torch.manual_seed(0)
        return Recognizer(create_model("ppocrv6-small", **TINY), device="cpu")
    return Recognizer.from_pretrained(model, device="cpu")


def image_stream(n: int, seed: int = 0) -> Iterator[Any]:
    """``n`` fresh small inputs of mixed types; every 100th is unreadable bytes."""
    rng = np.random.default_rng(seed)
    pool = [rng.integers(0, 256, (int(rng.integers(16, 48)), int(rng.integers(40, 200)), 3), dtype=np.uint8)
            for _ in range(64)]
    encoded = []
    for i, a in enumerate(pool):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "PNG" if i % 2 else "JPEG")
        encoded.append(buf.getvalue())
    for i in range(n):
        a = pool[i % len(pool)]
        kind = i % 5
        if i % 100 == 99:
            yield b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 64, dtype=np.uint8))  # unreadable
        elif kind == 0:
            yield a.copy()
        elif kind == 1:
            yield bytes(bytearray(encoded[i % len(encoded)]))
        elif kind == 2:
            yield Image.fromarray(a)
        elif kind == 3:
            yield torch.from_numpy(a).permute(2, 0, 1).float() / 255
        else:
            yield a[:, ::-1]  # a negative-stride view


def soak(args: argparse.Namespace) -> int:
    rec = load(args.model)
    print(f"model {args.model} ({rec!r}), {args.images} images, batch {args.batch_size}, "
          f"{torch.get_num_threads()} thread(s)")
    samples: list[tuple[int, float, float]] = []
    start, read, failed = time.perf_counter(), 0, 0
    print(f"{'images':>8} {'RSS MB':>8} {'seconds':>8}")
    for out in rec.iter_predict(image_stream(args.images), batch_size=args.batch_size, errors="return"):
        read += 1
        failed += isinstance(out, InputError)
        if read % args.sample_every == 0 or read == args.images:
            samples.append((read, rss_mb(), time.perf_counter() - start))
            print(f"{read:>8} {samples[-1][1]:>8.1f} {samples[-1][2]:>8.1f}", flush=True)
    after_warmup = [s for s in samples if s[0] >= args.warmup] or samples
    base, end = after_warmup[0][1], samples[-1][1]
    top = max(s[1] for s in after_warmup)
    elapsed = samples[-1][2]
    growth = top - base
    slope = np.polyfit([s[0] for s in after_warmup], [s[1] for s in after_warmup], 1)[0] * 10_000 \
        if len(after_warmup) > 2 else float("nan")
    print(f"\n{read} images ({failed} unreadable, returned as InputError) in {elapsed:.0f} s "
          f"({read / elapsed:.0f} images/s)")
    print(f"RSS after {after_warmup[0][0]} images (warm-up): {base:.1f} MB; at the end: {end:.1f} MB; "
          f"largest sample after the warm-up: {top:.1f} MB; peak of the process: {peak_mb():.1f} MB")
    print(f"growth after the warm-up: {growth:+.1f} MB (trend {slope:+.2f} MB per 10,000 images); "
          f"bound {args.max_growth_mb} MB: {'OK' if growth <= args.max_growth_mb else 'EXCEEDED'}")
    return 0 if growth <= args.max_growth_mb and read == args.images else 1


# ------------------------------------------------------------------------------------------------------ huge inputs
def measure_one(path: str, model: str) -> None:
    """Child process: read one file; print the result and how far peak RSS rose above the RSS before reading."""
    rec = load(model)
    rec.predict([torch.zeros(3, 48, 200)])  # warm up the network
    reset_peak()
    before = rss_mb()
    start = time.perf_counter()
    [out] = rec.predict([path], errors="return")
    print(f"{max(0.0, hwm_mb() - before):.0f}|{time.perf_counter() - start:.2f}|{str(out)[:90]}")


def huge_cases(d: Path) -> dict[str, Path]:
    """Write the huge-input files; returns ``{description: path}``."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def png(w: int, h: int, idat: bytes) -> bytes:
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")

    comp = zlib.compressobj(9)
    rows = b"\x00" * 10_001 * 1000  # 1000 rows of 10000 black pixels, each after its filter byte
    gradient = np.tile(np.arange(10_000, dtype=np.uint16) % 256, (10_000, 1)).astype(np.uint8)
    files = {name: d / name for name in ("bomb.png", "claims.png", "big.jpg", "24mp.png", "strip.png")}
    files["bomb.png"].write_bytes(png(10_000, 10_000, b"".join(comp.compress(rows) for _ in range(10)) + comp.flush()))
    files["claims.png"].write_bytes(png(100_000, 100_000, zlib.compress(b"\x00" * 9)))
    Image.fromarray(gradient).save(files["big.jpg"], quality=80)
    Image.fromarray(gradient[:4000, :6000]).convert("RGB").save(files["24mp.png"])
    Image.fromarray(gradient[:1, :10_000].repeat(2, axis=1)).save(files["strip.png"])
    cases = {
        "100 MP PNG bomb (10000x10000 black)": files["bomb.png"],
        "PNG header claiming 100000x100000": files["claims.png"],
        "100 MP JPEG (10000x10000)": files["big.jpg"],
        "24 MP RGB PNG (6000x4000, within the limit)": files["24mp.png"],
        "20000x1 strip": files["strip.png"],
    }
    return cases


def huge(args: argparse.Namespace) -> None:
    print(f"\nhuge inputs, model {args.model}, one fresh process each (peak RSS above the RSS before reading)")
    with tempfile.TemporaryDirectory() as tmp:
        cases = huge_cases(Path(tmp))
        for name, path in cases.items():
            out = subprocess.run([sys.executable, __file__, "--model", args.model, "--measure", str(path)],
                                 capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            line = out.stdout.strip().splitlines()[-1] if out.returncode == 0 else f"?|?|failed: {out.stderr[-300:]}"
            grow, secs, result = line.split("|", 2)
            size = path.stat().st_size
            print(f"- {name}: file {size / 1e6:.2f} MB; peak RSS +{grow} MB; {secs} s; {result}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--model", default="tiny", help="'tiny' (default), a weights name or a path")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--sample-every", type=int, default=5_000)
    ap.add_argument("--warmup", type=int, default=10_000, help="images read before the RSS baseline")
    ap.add_argument("--max-growth-mb", type=float, default=50.0)
    ap.add_argument("--huge", action="store_true", help="also measure the huge-input cases")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: child process of --huge
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.measure:
        measure_one(args.measure, args.model)
        return 0
    status = soak(args) if args.images else 0
    if args.huge:
        huge(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
