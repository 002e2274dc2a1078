"""``str-distill data``: convert folders to LMDB, check sets for bad samples, preview training batches.

* ``data convert FOLDER -o out.lmdb [--layout standard|packed]``: a ``labels.tsv`` folder to an STR LMDB.
* ``data check SPEC... [--charset 94]``: read every sample as training would and report the bad ones.
* ``data preview SPEC... -o preview.png``: a contact sheet of a training batch (after augmentation) with labels.
* ``data pack SET... -o OUT [--max-height 48] [--quality 90] [--val-split 0.05]``: shrink and re-encode sets into a
  small labels.tsv folder (e.g. to carry real data to a GPU machine).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("data", help="convert, check and preview training data")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    c = sub.add_parser("convert", help="convert a labels.tsv folder to an LMDB",
                       description="Convert a folder with labels.tsv to an LMDB (image bytes copied unchanged).")
    c.add_argument("folder", help="folder with labels.tsv")
    c.add_argument("-o", "--output", required=True, help="LMDB directory to create")
    c.add_argument("--layout", choices=("standard", "packed"), default="standard",
                   help="standard: image-/label- keys (every STR toolkit reads it); packed: one key per sample")
    c.add_argument("--no-verify", action="store_true", help="do not decode images to check them")
    c.set_defaults(func=cmd_convert)

    k = sub.add_parser("check", help="report bad samples of labelled sets for a charset",
                       description="Read every sample of the sets as training would (label checks + decoding) and "
                       "report undecodable images, empty or too long labels and characters outside the charset.")
    k.add_argument("data", nargs="+", metavar="SPEC", help="sets (folders, LMDBs); weights are ignored")
    k.add_argument("--charset", default="94", help="36, 62, 94 or literal characters (default: 94)")
    k.add_argument("--max-length", type=int, default=25)
    k.add_argument("--unknown-chars", choices=("skip", "strip"), default="skip")
    k.add_argument("--report", help="also write the report as JSON")
    k.set_defaults(func=cmd_check)

    v = sub.add_parser("preview", help="contact sheet of a training batch as the model sees it")
    v.add_argument("data", nargs="+", metavar="SPEC", help="SOURCE[:WEIGHT] as for train")
    v.add_argument("-o", "--output", default="preview.png")
    v.add_argument("--n", type=int, default=48, help="samples (default: 48)")
    v.add_argument("--charset", default="94")
    v.add_argument("--augment", choices=("real", "all", "none"), default="real")
    v.add_argument("--augment-strength", type=float, default=1.0)
    v.add_argument("--synth-pack")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--batch", type=int, default=0, help="which batch of the stream (default: 0)")
    v.set_defaults(func=cmd_preview)

    pl = sub.add_parser("pseudo-label", help="label unlabeled word images with a teacher model",
                        description="Read unlabeled word images with a recognizer and write a labels.tsv folder of "
                        "those read with at least --min-confidence (paths relative to OUT, pointing at the original "
                        "files), for training a student on the teacher's readings. Unreadable files are reported and "
                        "counted, never dropped silently.")
    pl.add_argument("inputs", nargs="+", help="image files, directories (their images, sorted) or globs")
    pl.add_argument("-o", "--output", required=True, help="folder to write labels.tsv (and report.json) into")
    pl.add_argument("--model", default=None, help="the teacher (default: the bundled default model)")
    pl.add_argument("--min-confidence", type=float, default=0.9, help="keep readings at least this sure (0.9)")
    pl.add_argument("--max-length", type=int, default=25, help="drop readings longer than this (25)")
    pl.add_argument("-r", "--recursive", action="store_true")
    pl.add_argument("--batch-size", type=int, default=64)
    pl.set_defaults(func=cmd_pseudo_label)

    pk = sub.add_parser("pack", help="shrink + re-encode labelled sets into a small labels.tsv folder",
                        description="Pack labelled sets (labels.tsv folders, LMDBs, folders of sets) into one "
                        "labels.tsv folder OUT with images/<set>/<n>.jpg: images taller than --max-height are shrunk "
                        "(aspect ratio kept, never enlarged) and every image is re-encoded as JPEG. With --val-split "
                        "F, OUT/train and OUT/val (F of every set, deterministic for --seed). Skipped samples "
                        "(missing or undecodable images, empty labels) are counted and listed in OUT/skipped.tsv; "
                        "settings and sizes in OUT/pack.json.")
    pk.add_argument("data", nargs="+", metavar="SET", help="labels.tsv folders, LMDBs or folders of sets")
    pk.add_argument("-o", "--output", required=True, help="output folder (must be empty or absent unless --force)")
    pk.add_argument("--max-height", type=int, default=48, help="shrink taller images to this height (default: 48)")
    pk.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100 (default: 90)")
    pk.add_argument("--grayscale", action="store_true",
                    help="store every image as grey JPEG (about 20%% smaller; default: only grey images)")
    pk.add_argument("--val-split", type=float, default=0.0, metavar="F",
                    help="carve F of every set into OUT/val, the rest into OUT/train (default: 0, no split)")
    pk.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    pk.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    pk.set_defaults(func=cmd_pack)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..data.lmdb import convert_folder

    try:
        n, report = convert_folder(args.folder, args.output, args.layout, verify=not args.no_verify,
                                   progress=sys.stderr.isatty())
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} samples to {args.output} ({args.layout} layout)")
    print(report.format("skipped samples"))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ..data.collate import SampleProcessor
    from ..data.report import BadSampleReport
    from ..tokenizer import Tokenizer
    from ..training.evaluate import open_eval_sets

    try:
        tok = Tokenizer(args.charset, args.max_length)
        paths = [s.rpartition(":")[0] if _has_weight(s) else s for s in args.data]
        sets = open_eval_sets(paths)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    proc = SampleProcessor(tok, lambda img: img, None, unknown=args.unknown_chars)  # type: ignore[arg-type,return-value]
    report = BadSampleReport()
    for name, ds in sets:
        for i in range(len(ds)):
            proc(ds[i], name, report)
    print(report.format(f"bad samples for charset {args.charset!r}, max length {args.max_length}"))
    if args.report:
        report.save(args.report)
    return 1 if report.total else 0


def _has_weight(spec: str) -> bool:
    head, sep, tail = spec.rpartition(":")
    if not sep or not head:
        return False
    try:
        float(tail)
    except ValueError:
        return False
    return True


def cmd_preview(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from ..data.augment import Augmenter
    from ..data.collate import SampleProcessor
    from ..data.mix import MixedBatchStream, build_sources
    from ..data.spec import parse_specs
    from ..models.registry import get_config
    from ..preprocess import Preprocessor
    from ..tokenizer import Tokenizer

    try:
        cfg = get_config("siga-vit-s", charset=args.charset)
        tok = Tokenizer(args.charset, cfg.max_label_length)
        sources, _ = build_sources(parse_specs(args.data), tok.charset, tok.max_length, seed=args.seed,
                                   synth_pack=args.synth_pack, augment_real=args.augment in ("real", "all"),
                                   augment_synth=args.augment == "all")
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    proc = SampleProcessor(tok, Preprocessor(cfg), Augmenter(strength=args.augment_strength))
    batch = MixedBatchStream(sources, proc, args.n, seed=args.seed).make_batch(args.batch)
    mean = np.array(cfg.mean, dtype=np.float32)[:, None, None]
    std = np.array(cfg.std, dtype=np.float32)[:, None, None]
    h, w = cfg.img_size
    cols = 4
    rows = (len(batch) + cols - 1) // cols
    cell_w, cell_h = w * 2 + 20, h * 2 + 22
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (img, label) in enumerate(zip(batch.images.numpy(), batch.labels)):
        arr = np.clip((img * std + mean) * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        tile = Image.fromarray(arr).resize((w * 2, h * 2), Image.Resampling.NEAREST)
        x, y = (i % cols) * cell_w + 10, (i // cols) * cell_h + 2
        sheet.paste(tile, (x, y))
        draw.text((x, y + h * 2 + 2), label, fill=(0, 0, 0), font=font)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output)
    print(f"wrote {args.output}: batch {args.batch}, {batch.sources}")
    print(batch.bad.format())
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from ..data.compact import pack_sets

    try:
        result = pack_sets(args.data, args.output, max_height=args.max_height, quality=args.quality,
                           grayscale=args.grayscale, val_split=args.val_split, seed=args.seed, force=args.force,
                           progress=sys.stderr.isatty())
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.format())
    if result.written == 0:
        print("error: no sample could be packed", file=sys.stderr)
        return 1
    return 0


def cmd_pseudo_label(args: argparse.Namespace) -> int:
    """Write ``OUT/labels.tsv`` with the teacher's confident readings and ``OUT/report.json`` with the counts."""
    import json
    import os

    from ..predictor import Recognizer
    from .predict import expand_inputs

    if not 0.0 <= args.min_confidence <= 1.0:
        print("error: --min-confidence must be in [0, 1]", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    try:
        rec = Recognizer.from_pretrained(args.model)
    except (OSError, ValueError, RuntimeError, ImportError) as e:  # ImportError: a missing extra (onnxruntime)
        print(f"error: cannot load model {args.model!r}: {e}", file=sys.stderr)
        return 2
    from .progress import Progress
    errors: list[str] = []
    paths = list(expand_inputs(args.inputs, args.recursive, None, errors))
    counts = {"images": len(paths), "kept": 0, "low_confidence": 0, "empty": 0, "too_long": 0, "unreadable": 0}
    lines = []
    bar = Progress("data pseudo-label", total=len(paths), unit="img")  # a bar on a terminal, else a line every 30 s
    for path, pred in zip(paths, rec.iter_predict(paths, batch_size=args.batch_size, errors="return")):
        bar.update()
        if isinstance(pred, Exception):
            counts["unreadable"] += 1
            print(f"error: {pred}", file=sys.stderr)
            continue
        text = pred.text.strip()
        if not text or any(c in text for c in "\t\n\r"):
            counts["empty"] += 1
        elif len(text) > args.max_length:
            counts["too_long"] += 1
        elif pred.confidence < args.min_confidence:
            counts["low_confidence"] += 1
        else:
            rel = os.path.relpath(Path(path).resolve(), out.resolve())
            lines.append(f"{rel}\t{text}")
            counts["kept"] += 1
    bar.close()
    (out / "labels.tsv").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    report = {"model": args.model or "default", "min_confidence": args.min_confidence, **counts,
              "input_errors": errors}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"kept {counts['kept']} of {counts['images']} images (confidence >= {args.min_confidence}); "
          f"{counts['low_confidence']} below it, {counts['empty']} empty, {counts['too_long']} too long, "
          f"{counts['unreadable']} unreadable -> {out / 'labels.tsv'}")
    return 1 if counts["unreadable"] or errors else 0
