"""``str-distill read``: read whole images (photos, screenshots, scans): find the text lines, read each one.

Output, in input order, on stdout (or appended to ``--output FILE`` as it goes):

* default: one line per text line found, ``path<TAB>text<TAB>confidence<TAB>x0,y0 x1,y1 x2,y2 x3,y3`` (the box's
  corners from the top-left, clockwise); an image with no text gets one line ``path<TAB><TAB><TAB>``;
* ``--tsv``: the same rows with a header ``path index text confidence polygon error`` (``\\t``, ``\\n``, ``\\\\``
  escaped; ``index`` empty for an image without text);
* ``--json``: one object per image: ``{"path", "results": [{"polygon", "text", "confidence", "char_probs",
  "box_score"}, ...], "error"}``.

An input that cannot be read gets an ``error: input <i> (<path>): <reason>`` line on stderr and, in the JSON and TSV
outputs, a row whose ``error`` field holds the reason; the others are still read. ``--draw DIR`` also writes
``DIR/<name>.png``: the image with each box outlined and its text on a label. ``--resume`` (with ``--output``)
skips the inputs whose path already has a row in the file.

Exit status: 0 when every input was read, 1 when at least one failed, 2 for bad arguments or unloadable weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .predict import _escape, _format_for, expand_inputs, read_done

__all__ = ["TSV_HEADER", "register", "run"]

TSV_HEADER = "path\tindex\ttext\tconfidence\tpolygon\terror"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "read",
        help="read whole images: find the text lines and read them",
        description="Find the text lines in whole images (photos, screenshots, scans) and read each one: prints "
        "path, text, confidence and the line's 4-point box, in input order.",
        epilog="Inputs: image files, glob patterns (quoted), directories (their image files, sorted; --recursive for "
        "subfolders) and '-' for a list of paths on stdin. Exit status: 0 all read, 1 some inputs could not be "
        "read (see stderr), 2 bad arguments or weights that could not be loaded.",
    )
    p.add_argument("inputs", nargs="+", help="image files, globs, directories, or '-' (paths on stdin)")
    p.add_argument("--detector", default=None,
                   help="detector weights: name (ppocrv6-det-small, ppocrv6-det-tiny), directory or .safetensors "
                   "file (default: ppocrv6-det-small)")
    p.add_argument("--model", default=None,
                   help="recognizer weights: name, directory or .safetensors file (default: ppocrv6-small, which "
                   "keeps the spaces inside a line)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                   help="inference precision of both networks (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--min-confidence", type=float, default=0.5,
                   help="drop lines read with a lower confidence (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="crops per recognizer pass (default: %(default)s)")
    p.add_argument("--max-side", type=int, default=None, metavar="PX",
                   help="downscale images whose long side is larger, for detection only (default: the detector's, "
                   "2000)")
    p.add_argument("--local-files-only", action="store_true", help="never use the network (like HF_HUB_OFFLINE=1)")
    p.add_argument("-r", "--recursive", action="store_true", help="also read images in subdirectories")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_const", const="json", dest="format", help="one JSON object per image")
    fmt.add_argument("--tsv", action="store_const", const="tsv", dest="format", help="TSV with header, escaped")
    p.add_argument("--draw", metavar="DIR",
                   help="also write each image with its boxes and text drawn, as DIR/<name>.png")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="append the rows to FILE as they come instead of printing them; the format follows "
                   "--json/--tsv, else the extension (.jsonl: JSON lines, .tsv: TSV); an existing FILE needs --resume")
    p.add_argument("--resume", action="store_true",
                   help="with --output: skip the inputs whose path already has a row in FILE and append the others")
    p.set_defaults(func=run, format="plain")


def _done(path: Path, fmt: str) -> tuple[set[str], int]:
    """Paths with a row in an output file and how many of them failed; a cut-short last line is removed."""
    return read_done(path, fmt, TSV_HEADER, error_column=5)


def _poly(r: Any) -> str:
    return " ".join(f"{x:g},{y:g}" for x, y in r.polygon.tolist())


def _rows(path: str, res: Any, fmt: str) -> list[str]:
    if isinstance(res, Exception):
        reason = getattr(res, "reason", str(res))
        if fmt == "json":
            return [json.dumps({"path": path, "results": None, "error": reason}, ensure_ascii=False)]
        return [f"{_escape(path)}\t\t\t\t\t{_escape(reason)}"] if fmt == "tsv" else []
    if fmt == "json":
        return [json.dumps({"path": path, "results": [r.to_dict() for r in res], "error": None}, ensure_ascii=False)]
    if fmt == "tsv":
        if not res:
            return [f"{_escape(path)}\t\t\t\t\t"]
        return [f"{_escape(path)}\t{i}\t{_escape(r.text)}\t{r.confidence:.4f}\t{_poly(r)}\t" for i, r in enumerate(res)]
    if not res:
        return [f"{path}\t\t\t"]
    return [f"{path}\t{r.text}\t{r.confidence:.4f}\t{_poly(r)}" for r in res]


def _draw(path: str, res: list[Any], folder: Path, used: set[str]) -> None:
    from ..ocr.draw import draw_results
    from ..preprocess import load_image

    stem = Path(path).stem or "image"
    name, k = f"{stem}.png", 1
    while name in used:  # two inputs with the same file name from different folders
        name, k = f"{stem}-{k}.png", k + 1
    used.add(name)
    draw_results(load_image(path, path, max_pixels=None), res).save(folder / name)


def run(args: argparse.Namespace) -> int:
    try:
        from ..ocr import OCR
        from ..ocr.pipeline import TextDetector
    except ImportError as e:  # OpenCV missing: one line saying what to install
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    if not 0.0 <= args.min_confidence <= 1.0:
        print("error: --min-confidence must be in [0, 1]", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return 2
    output = Path(args.output) if args.output else None
    fmt = _format_for(output, args.format) if output is not None else args.format
    if args.resume and output is None:
        print("error: --resume needs --output FILE (the rows to continue)", file=sys.stderr)
        return 2
    done: set[str] = set()
    old_errors = 0
    if output is not None and output.exists() and output.stat().st_size > 0:
        if not args.resume:
            print(f"error: {output} exists: pass --resume to skip the paths it has and append the others, or remove "
                  "it", file=sys.stderr)
            return 2
        done, old_errors = _done(output, fmt)
        print(f"resume: {len(done)} paths already in {output} ({old_errors} with an error) are skipped",
              file=sys.stderr)
    draw_dir = Path(args.draw) if args.draw else None
    if draw_dir is not None:
        draw_dir.mkdir(parents=True, exist_ok=True)
    try:
        det = TextDetector.from_pretrained(args.detector, device=args.device, dtype=args.dtype,
                                           local_files_only=args.local_files_only, max_side_len=args.max_side)
        ocr = OCR.from_pretrained(det, args.model, device=args.device, dtype=args.dtype, threads=args.threads,
                                  local_files_only=args.local_files_only, min_confidence=args.min_confidence,
                                  batch_size=args.batch_size)
    except (OSError, ValueError, RuntimeError, TypeError, ImportError) as e:
        print(f"error: cannot load the models: {e}", file=sys.stderr)
        return 2
    spec_errors: list[str] = []
    paths: deque[str] = deque()

    def feed() -> Iterator[str]:
        for p in expand_inputs(args.inputs, args.recursive, sys.stdin, spec_errors):
            if p in done:
                continue
            paths.append(p)
            yield p

    fresh = output is None or not output.exists() or output.stat().st_size == 0
    out = open(output, "a", encoding="utf-8", buffering=1) if output is not None else sys.stdout
    failed = 0
    used: set[str] = set()
    try:
        if fmt == "tsv" and fresh:
            out.write(TSV_HEADER + "\n")
        for res in ocr.iter_read(feed(), errors="return"):
            path = paths.popleft()
            if isinstance(res, Exception):
                failed += 1
                print(f"error: {res}", file=sys.stderr)
            elif draw_dir is not None:
                _draw(path, res, draw_dir, used)
            for line in _rows(path, res, fmt):
                out.write(line + "\n")
        out.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if out is not sys.stdout:
            out.close()
    return 1 if failed or old_errors or spec_errors else 0
