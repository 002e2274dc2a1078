"""``str-distill predict``: read word images (files, globs, directories, or a list of paths on stdin).

Output, one line per image on stdout, in input order: ``path<TAB>text<TAB>confidence`` (default), ``--tsv`` (the same
with a header row and ``\\t``, ``\\n``, ``\\\\`` escaped) or ``--json`` (one object per line: path, text, confidence).
An input that cannot be read gets an ``error: input <i> (<path>): <reason>`` line on stderr (``<i>`` counts the
image files read, from 0) and the others are still read.

Exit status: 0 when every input was read, 1 when at least one failed, 2 for bad arguments or unloadable weights.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = ["IMAGE_EXTENSIONS", "expand_inputs", "register", "run"]

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="read cropped word images",
        description="Read cropped word images and print path, text and confidence for each, in input order.",
        epilog="Inputs: image files, glob patterns (quote them: 'crops/**/*.png'), directories (their image files, "
        "sorted; --recursive for subfolders) and '-' for a list of paths on stdin, one per line. Exit status: 0 all "
        "read, 1 some inputs could not be read (see stderr), 2 bad arguments or weights that could not be loaded.",
    )
    p.add_argument("inputs", nargs="+", help="image files, globs, directories, or '-' (paths on stdin)")
    p.add_argument("--model", default=None,
                   help="weights name, directory, .safetensors file or hf-hub:org/repo[@rev] (default: the bundled "
                   "default model, see `str-distill models`)")
    p.add_argument("--revision", help="revision of an hf-hub: model (a 40-hex commit is best)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="inference precision; float16 needs CUDA (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: %(default)s)")
    p.add_argument("--decoding", default=None, choices=("attention", "ctc", "greedy"),
                   help="attention decoder or CTC head ('greedy' = 'ctc'; default: the model's first: attention "
                   "for ViT recognizers, ctc for CTC-only models)")
    p.add_argument("--mode", default="autoregressive", choices=("autoregressive", "parallel"),
                   help="attention decoding mode (default: %(default)s)")
    p.add_argument("--refine-iters", type=int, default=1, help="refinement passes of --mode parallel (default: 1)")
    p.add_argument("--keep-aspect-ratio", action="store_true", help="resize without distortion and pad")
    p.add_argument("--rotate-tall", action="store_true", help="rotate crops at least 1.5x taller than wide by 90 deg")
    p.add_argument("--local-files-only", action="store_true", help="never use the network (like HF_HUB_OFFLINE=1)")
    p.add_argument("-r", "--recursive", action="store_true", help="also read images in subdirectories")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_const", const="json", dest="format", help="one JSON object per line")
    fmt.add_argument("--tsv", action="store_const", const="tsv", dest="format", help="TSV with header, escaped")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.set_defaults(func=run, format="plain")


def expand_inputs(specs: Iterable[str], recursive: bool = False, stdin: TextIO | None = None,
                  errors: list[str] | None = None) -> Iterator[str]:
    """Paths to read, lazily: files as given, glob matches and directory contents sorted, ``-`` read from stdin.

    A spec that yields nothing (empty directory, glob without match) is appended to ``errors`` as a message.
    Paths that do not exist are passed on (reading them reports the error in order).
    """
    errors = errors if errors is not None else []
    for spec in specs:
        if spec == "-":
            lines = (line.rstrip("\r\n") for line in (stdin or sys.stdin))
            yield from expand_inputs((x for x in lines if x.strip()), recursive, None, errors)
            continue
        path = Path(spec)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not files:
                errors.append(f"{spec}: directory has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
                              + ("" if recursive else "; use --recursive for subdirectories"))
                print(f"error: {errors[-1]}", file=sys.stderr)
            yield from (str(p) for p in files)
        elif not path.exists() and glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                errors.append(f"{spec}: no file matches this pattern")
                print(f"error: {errors[-1]}", file=sys.stderr)
            for m in matches:
                yield from expand_inputs([m], recursive, None, errors) if Path(m).is_dir() else [m]
        else:
            yield spec


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def run(args: argparse.Namespace) -> int:
    from ..predictor import Recognizer

    if args.batch_size < 1:
        print("error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        rec = Recognizer.from_pretrained(
            args.model, device=args.device, dtype=args.dtype, revision=args.revision,
            local_files_only=args.local_files_only, keep_aspect_ratio=args.keep_aspect_ratio,
            rotate_tall=args.rotate_tall,
        )
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: cannot load model {args.model!r}: {e}", file=sys.stderr)
        return 2
    spec_errors: list[str] = []
    paths: deque[str] = deque()  # paths pulled by the predictor, popped as their results come back

    def feed() -> Iterator[str]:
        for p in expand_inputs(args.inputs, args.recursive, sys.stdin, spec_errors):
            paths.append(p)
            yield p

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    out = sys.stdout
    if args.format == "tsv":
        out.write("path\ttext\tconfidence\n")
    failed = 0
    results = rec.iter_predict(feed(), batch_size=args.batch_size, decoding=args.decoding, mode=args.mode,
                               refine_iters=args.refine_iters, progress=progress, errors="return")
    try:
        for res in results:
            path = paths.popleft()
            if isinstance(res, Exception):
                failed += 1
                print(f"error: {res}", file=sys.stderr)
                continue
            if args.format == "json":
                line = json.dumps({"path": path, "text": res.text, "confidence": round(res.confidence, 6)})
            elif args.format == "tsv":
                line = f"{_escape(path)}\t{_escape(res.text)}\t{res.confidence:.4f}"
            else:
                line = f"{path}\t{res.text}\t{res.confidence:.4f}"
            out.write(line + "\n")
        out.flush()
    except BrokenPipeError:  # e.g. `| head`: stop quietly, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 1 if failed or spec_errors else 0
