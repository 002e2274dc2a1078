"""``str-distill predict``: read word images (files, globs, directories, or a list of paths on stdin).

Output, one line per image on stdout (or appended to ``--output FILE`` as it goes), in input order:
``path<TAB>text<TAB>confidence`` (default), ``--tsv`` (a header row ``path text confidence error`` and ``\\t``,
``\\n``, ``\\\\`` escaped) or ``--json`` (one object per line: path, text, confidence). An input that cannot be read
gets an ``error: input <i> (<path>): <reason>`` line on stderr (``<i>`` counts the image files read, from 0) and the
others are still read; in the JSON and TSV outputs it also gets a row, whose ``error`` field holds the reason (text
and confidence empty: ``null`` in JSON).

An input that was read but does not look like a word crop (a whole photo, or a tall crop read upright with little
confidence) gets a ``warning: input <i> (<path>): <what to do>`` line on stderr (and a ``warning`` field in JSON).
``--orientation tall|auto`` reads turned words (JSON rows then say the ``rotation`` kept). Progress goes to stderr:
a bar on a terminal, otherwise a line every 30 seconds.

``--decode-workers N`` decodes and resizes the next batch's images in ``N`` threads while the model runs.
``--resume`` (with ``--output``) skips the inputs whose path already has a row in the file, so an interrupted job
continues where it stopped.

Exit status: 0 when every input was read, 1 when at least one failed (with ``--resume``: or has an error row in the
file), 2 for bad arguments or unloadable weights.
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

__all__ = ["DEFAULT_DECODE_WORKERS", "IMAGE_EXTENSIONS", "expand_inputs", "read_done", "register", "run"]

#: Threads of ``--decode-workers`` when not given: enough to keep a CPU model fed without taking its cores.
DEFAULT_DECODE_WORKERS = 2
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
    p.add_argument("--decoding", default=None, choices=("attention", "ctc", "greedy", "joint"),
                   help="attention decoder or CTC head ('greedy' = 'ctc'; default: the model's first: attention "
                   "for ViT recognizers, ctc for CTC-only models)")
    p.add_argument("--mode", default="autoregressive", choices=("autoregressive", "parallel"),
                   help="attention decoding mode (default: %(default)s)")
    p.add_argument("--refine-iters", type=int, default=1, help="refinement passes of --mode parallel (default: 1)")
    p.add_argument("--keep-aspect-ratio", action="store_true", help="resize without distortion and pad")
    p.add_argument("--min-width", type=int, default=None, metavar="PX",
                   help="variable-width models: pad narrower images to this width (default: the weights' own; "
                        "smaller is faster on short words)")
    p.add_argument("--orientation", choices=("upright", "tall", "auto"), default=None,
                   help="upright: read as given (default); tall: read crops at least 1.5x taller than wide turned 90 "
                   "deg both ways and keep the more confident reading; auto: also read unsure crops upside down")
    p.add_argument("--rotate-tall", action="store_true", help="the same as --orientation tall")
    p.add_argument("--local-files-only", action="store_true", help="never use the network (like HF_HUB_OFFLINE=1)")
    p.add_argument("-r", "--recursive", action="store_true", help="also read images in subdirectories")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_const", const="json", dest="format", help="one JSON object per line")
    fmt.add_argument("--tsv", action="store_const", const="tsv", dest="format", help="TSV with header, escaped")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress on stderr (default: a bar on a terminal, otherwise a line every 30 s; "
                   "--progress: always a bar; --no-progress: nothing)")
    p.add_argument("--decode-workers", type=int, default=None, metavar="N",
                   help="threads decoding and resizing the next batch's images while the model runs (0: none; "
                   f"default: {DEFAULT_DECODE_WORKERS})")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="append the rows to FILE as they come (flushed line by line) instead of printing them; the "
                   "format follows --json/--tsv, else the extension (.jsonl/.json: JSON lines, .tsv: TSV); an "
                   "existing FILE needs --resume")
    p.add_argument("--resume", action="store_true",
                   help="with --output: skip the inputs whose path already has a row in FILE and append the others")
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


_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def _unescape(s: str) -> str:
    """Inverse of :func:`_escape`."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in _UNESCAPE:
            out.append(_UNESCAPE[s[i + 1]])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


TSV_HEADER = "path\ttext\tconfidence\terror"


def _format_for(path: Path, flag: str) -> str:
    """The output format: the ``--json``/``--tsv`` flag, else the file extension, else plain."""
    if flag != "plain":
        return flag
    return {".jsonl": "json", ".json": "json", ".ndjson": "json", ".tsv": "tsv"}.get(path.suffix.lower(), "plain")


def read_done(path: Path, fmt: str, tsv_header: str = TSV_HEADER, error_column: int = 3
              ) -> tuple[set[str], int]:
    """The paths that already have a row in an output file and how many of those rows are errors.

    A last line cut short (the previous run was killed while writing it) is removed from the file, so that the rows
    appended next start on a line of their own; unparseable lines are ignored. ``tsv_header`` and ``error_column``
    describe the TSV rows (``str-distill read`` writes other columns).
    """
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    done: set[str] = set()
    errors = 0
    for line in data[:end].decode("utf-8", errors="replace").splitlines():
        if not line or (fmt == "tsv" and line == tsv_header):
            continue
        if fmt == "json":
            try:
                row = json.loads(line)
                p, err = row["path"], row.get("error")
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        else:
            fields = line.split("\t")
            p = _unescape(fields[0]) if fmt == "tsv" else fields[0]
            err = fields[error_column] if fmt == "tsv" and len(fields) > error_column else ""
        if p not in done and err:
            errors += 1
        done.add(p)
    return done, errors


def run(args: argparse.Namespace) -> int:
    from ..predictor import Recognizer

    if args.batch_size < 1:
        print("error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    workers = DEFAULT_DECODE_WORKERS if args.decode_workers is None else args.decode_workers
    if workers < 0:
        print("error: --decode-workers must be >= 0", file=sys.stderr)
        return 2
    output = Path(args.output) if args.output else None
    fmt = _format_for(output, args.format) if output is not None else args.format
    done: set[str] = set()
    old_errors = 0
    if args.resume and output is None:
        print("error: --resume needs --output FILE (the rows to continue)", file=sys.stderr)
        return 2
    if output is not None and output.exists() and output.stat().st_size > 0:
        if not args.resume:
            print(f"error: {output} exists: pass --resume to skip the paths it has and append the others, or remove "
                  "it", file=sys.stderr)
            return 2
        done, old_errors = read_done(output, fmt)
        print(f"resume: {len(done)} paths already in {output} ({old_errors} with an error) are skipped",
              file=sys.stderr)
    try:
        rec = Recognizer.from_pretrained(
            args.model, device=args.device, dtype=args.dtype, revision=args.revision,
            local_files_only=args.local_files_only, keep_aspect_ratio=args.keep_aspect_ratio,
            rotate_tall=args.rotate_tall, min_width=args.min_width, orientation=args.orientation,
        )
    except (OSError, ValueError, RuntimeError, ImportError) as e:  # ImportError: a missing extra (onnxruntime)
        print(f"error: cannot load model {args.model!r}: {e}", file=sys.stderr)
        return 2
    spec_errors: list[str] = []
    paths: deque[str] = deque()  # paths pulled by the predictor, popped as their results come back

    def feed() -> Iterator[str]:
        for p in expand_inputs(args.inputs, args.recursive, sys.stdin, spec_errors):
            if p in done:
                continue
            paths.append(p)
            yield p

    from .progress import Progress

    # a file gets every row as soon as it is known (line buffered): a killed job loses at most the current batch
    fresh = output is None or not output.exists() or output.stat().st_size == 0
    out = open(output, "a", encoding="utf-8", buffering=1) if output is not None else sys.stdout
    failed = 0
    try:
        if fmt == "tsv" and fresh:
            out.write(TSV_HEADER + "\n")
        results = rec.iter_predict(feed(), batch_size=args.batch_size, decoding=args.decoding, mode=args.mode,
                                   refine_iters=args.refine_iters, errors="return", decode_workers=workers)
        with Progress("predict", unit="img", mode=args.progress) as bar:
            for index, res in enumerate(results):
                path = paths.popleft()
                line = _row(path, res, fmt)
                if isinstance(res, Exception):
                    failed += 1
                    print(f"error: {res}", file=sys.stderr)
                elif res.warning is not None:  # read, but probably not a word crop: say so, and what to do
                    print(f"warning: input {index} ({path}): {res.warning}", file=sys.stderr)
                if line is not None:
                    out.write(line + "\n")
                bar.update()
        out.flush()
    except BrokenPipeError:  # e.g. `| head`: stop quietly, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if out is not sys.stdout:
            out.close()
    return 1 if failed or old_errors or spec_errors else 0


def _row(path: str, res: Any, fmt: str) -> str | None:
    """The output line of one result (``None``: a failure in the plain format, which reports it on stderr only)."""
    if isinstance(res, Exception):
        reason = getattr(res, "reason", str(res))
        if fmt == "json":
            return json.dumps({"path": path, "text": None, "confidence": None, "error": reason})
        return f"{_escape(path)}\t\t\t{_escape(reason)}" if fmt == "tsv" else None
    if fmt == "json":
        row = {"path": path, "text": res.text, "confidence": round(res.confidence, 6)}
        if res.rotation:
            row["rotation"] = res.rotation
        if res.warning is not None:
            row["warning"] = res.warning
        return json.dumps(row)
    if fmt == "tsv":
        return f"{_escape(path)}\t{_escape(res.text)}\t{res.confidence:.4f}\t"
    return f"{path}\t{res.text}\t{res.confidence:.4f}"
