"""Whole-image reading on a CPU: str-distill's OCR pipeline against RapidOCR 3.10.0's, in the same run.

    pip install -e ".[bench]"
    python benchmarks/ocr_vs_peers.py [--data ../shared/data] [--threads 1 2] [--limit N]

On the 100 street photos of ``SVT_train_scenes`` (257 annotated words): images per second (after one warm-up
image), peak resident memory of the process (each engine runs in a fresh subprocess), and end-to-end word recall:
a ground-truth word is found when a result's axis-aligned rectangle overlaps its box with IoU >= 0.5 and the
result's text equals the word (lower-cased, ``[0-9a-z]`` only), or when the result is a line that contains the word
as a token and covers at least half of the word's box (:mod:`str_distill.ocr.evaluate`).

Engines (``--engines``):

* ``ours``: ``OCR.from_pretrained()`` (ppocrv6-det-small + ppocrv6-small), float32;
* ``ours-words``: the same detector with the default word recognizer ``ppocrv6-small.scene-ft-neck``;
* ``ours-tiny``: ppocrv6-det-tiny + ppocrv6-small;
* ``ours-bf16``: the default pipeline in bfloat16;
* ``rapidocr``: ``RapidOCR()`` with its defaults (PP-OCRv6 small det + cls + rec), onnxruntime.

Threads: ``torch.set_num_threads`` for ours, onnxruntime's intra-op threads for RapidOCR.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENGINES = ("ours", "ours-words", "ours-tiny", "ours-bf16", "rapidocr")


def _scenes(data: Path, limit: int | None) -> list[dict[str, Any]]:
    base = data / "SVT_train_scenes"
    rows = [json.loads(line) for line in (base / "scenes.jsonl").read_text().splitlines() if line.strip()]
    for r in rows:
        r["image"] = str(base / r["image"])
    return rows[:limit] if limit else rows


def _ours(engine: str, threads: int) -> Any:
    import torch

    from str_distill.ocr import OCR

    torch.set_num_threads(threads)
    det = "ppocrv6-det-tiny" if engine == "ours-tiny" else "ppocrv6-det-small"
    rec = "ppocrv6-small.scene-ft-neck" if engine == "ours-words" else "ppocrv6-small"
    ocr = OCR.from_pretrained(det, rec, device="cpu", dtype="bfloat16" if engine == "ours-bf16" else "float32")

    def run(path: str) -> list[tuple[tuple[float, float, float, float], str]]:
        return [(r.bbox, r.text) for r in ocr([path])[0]]

    return run


def _rapidocr(threads: int) -> Any:
    import numpy as np
    from rapidocr import RapidOCR

    eng = RapidOCR(params={"Global.log_level": "critical", "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                           "EngineConfig.onnxruntime.inter_op_num_threads": 1})

    def run(path: str) -> list[tuple[tuple[float, float, float, float], str]]:
        out = eng(path)
        if out.boxes is None or out.txts is None:
            return []
        res = []
        for box, text in zip(out.boxes, out.txts):
            b = np.asarray(box, np.float32)
            res.append(((float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 0].max()), float(b[:, 1].max())),
                        str(text)))
        return res

    return run


def child(engine: str, threads: int, data: Path, limit: int | None) -> dict[str, Any]:
    """Run one engine over the photos in this process; return its figures."""
    from str_distill.ocr.evaluate import word_recall

    scenes = _scenes(data, limit)
    run = _rapidocr(threads) if engine == "rapidocr" else _ours(engine, threads)
    run(scenes[0]["image"])  # warm-up (first-call allocations, lazy model loading)
    samples = []
    t0 = time.perf_counter()
    for s in scenes:
        results = run(s["image"])
        samples.append(([(w["box"], w["text"]) for w in s["words"]], results))
    seconds = time.perf_counter() - t0
    found, total = word_recall(samples)
    return {"engine": engine, "threads": threads, "images": len(scenes), "seconds": round(seconds, 1),
            "images_per_s": round(len(scenes) / seconds, 3), "recall": round(100 * found / total, 1),
            "found": found, "words": total, "results": sum(len(r) for _, r in samples),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("STR_DISTILL_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--engines", nargs="+", default=["ours", "rapidocr"], choices=ENGINES)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos")
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.data, args.limit)))
        return 0
    rows = []
    for threads in args.threads:
        for engine in args.engines:
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            cmd = [sys.executable, __file__, "--child", engine, str(threads), "--data", str(args.data)]
            if args.limit:
                cmd += ["--limit", str(args.limit)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            if out.returncode != 0:
                print(f"{engine} ({threads} thread(s)) failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print("| engine | threads | images/s | peak RSS (MiB) | word recall (%) | words found | results |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['threads']} | {r['images_per_s']:.2f} | {r['peak_rss_mib']:.0f} | "
              f"{r['recall']:.1f} | {r['found']}/{r['words']} | {r['results']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
