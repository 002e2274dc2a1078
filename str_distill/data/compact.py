"""Pack labelled sets into a small ``labels.tsv`` folder: images shrunk to a maximum height and re-encoded as JPEG.

Meant for moving real training data to a machine that receives only a few MiB (``recipes/gpu/``): the three
training sets of IIIT5K, SVT and IC15 (6,725 PNG crops, 77 MiB) become a 9 MiB folder at the defaults (height <= 48,
JPEG quality 90) that the ordinary folder reader (:class:`~str_distill.data.folder.FolderDataset`) reads.

Output layout (``--val-split 0`` writes the ``train`` content directly into ``OUT``)::

    OUT/
        pack.json             settings, per-set counts and bytes
        skipped.tsv           every sample that was not written: set, index, key, reason, detail
        train/labels.tsv      images/<set>/<n>.jpg<TAB>label   (n: the sample's 0-based index in its source)
        train/images/<set>/<n>.jpg
        val/labels.tsv, val/images/<set>/<n>.jpg

Images are decoded exactly as training and inference decode them (:func:`~str_distill.data.collate.decode_image`:
EXIF orientation, alpha on white), shrunk with Lanczos filtering to at most ``max_height`` pixels high (aspect
ratio kept, never enlarged) and saved as JPEG (single-channel when the image is grey). Labels are copied exactly
as annotated. The validation split is carved per set (stratified by set) by
:func:`~str_distill.data.mix.split_validation` over the source indices, i.e. exactly the samples that
``str-distill train --val-split F --seed S`` would carve out of that set alone; it does not depend on which
samples turn out to be bad.

Samples that cannot be packed are never dropped silently: a missing or undecodable image, an empty label, or a
label with a line break (it cannot be written to ``labels.tsv``) is counted per set and listed in ``skipped.tsv``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = ["PACK_REASONS", "PackResult", "PackedSet", "SkippedSample", "pack_sets"]

#: Why a sample was not packed, with the text used in reports.
PACK_REASONS: dict[str, str] = {
    "missing_image": "image file does not exist",
    "undecodable_image": "image cannot be decoded",
    "empty_label": "label is empty or only whitespace",
    "unwritable_label": "label contains a line break (cannot be written to labels.tsv)",
}

# Every character str.splitlines() breaks on: a label holding one would split its labels.tsv line.
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


@dataclass(frozen=True)
class SkippedSample:
    """A sample that was not written.

    Attributes:
        set: name of its set in the pack.
        index: its 0-based index in the source set.
        key: its path (folders) or ``lmdb_path#i`` (LMDBs).
        reason: one of :data:`PACK_REASONS`.
        detail: the decoder's message or the offending label.
    """

    set: str
    index: int
    key: str
    reason: str
    detail: str = ""


@dataclass
class PackedSet:
    """Per-set counts.

    Attributes:
        name: folder name under ``images/`` (the source folder's name, made unique and file-name safe).
        source: the set's path as found.
        samples: samples in the source.
        written: samples written per split (``{"train": n, "val": m}``, or ``{"all": n}`` without a split).
        skipped: samples not written, per reason.
        source_bytes: encoded image bytes read (written samples only).
        image_bytes: JPEG bytes written.
        resized: written samples that were shrunk (the others were only re-encoded).
    """

    name: str
    source: str
    samples: int
    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    source_bytes: int = 0
    image_bytes: int = 0
    resized: int = 0


@dataclass
class PackResult:
    """What :func:`pack_sets` wrote.

    Attributes:
        out: the output folder.
        splits: folders written, by split name (``{"train": OUT/train, "val": OUT/val}`` or ``{"all": OUT}``).
        sets: per-set counts.
        skipped: every sample not written, in source order.
        bytes: apparent size of everything written (sum of file sizes).
        disk_bytes: space allocated on this file system (blocks; small files round up to 4 KiB each).
        files: number of files written.
        settings: the options used.
    """

    out: Path
    splits: dict[str, Path]
    sets: list[PackedSet]
    skipped: list[SkippedSample]
    bytes: int
    disk_bytes: int
    files: int
    settings: dict[str, Any]

    @property
    def written(self) -> int:
        """Samples written in all splits."""
        return sum(sum(s.written.values()) for s in self.sets)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the content of ``pack.json``, without the file sizes of ``pack.json`` itself)."""
        return {
            "format": "str-distill-data-pack",
            "version": 1,
            "settings": self.settings,
            "splits": {k: str(v.relative_to(self.out)) if v != self.out else "." for k, v in self.splits.items()},
            "sets": [vars(s) | {"written": dict(s.written), "skipped": dict(s.skipped)} for s in self.sets],
            "written": self.written,
            "skipped": len(self.skipped),
            "bytes": self.bytes,
            "disk_bytes": self.disk_bytes,
            "files": self.files,
        }

    def format(self, max_listed: int = 20) -> str:
        """A human-readable summary: per-set table, totals, and the first ``max_listed`` skipped samples."""
        split_names = list(self.splits)
        head = f"{'set':<16}{'samples':>9}" + "".join(f"{k:>8}" for k in split_names)
        head += f"{'skipped':>9}{'resized':>9}{'MiB in':>9}{'MiB out':>9}"
        lines = [head, "-" * len(head)]
        for s in self.sets:
            row = f"{s.name:<16}{s.samples:>9}" + "".join(f"{s.written.get(k, 0):>8}" for k in split_names)
            row += f"{sum(s.skipped.values()):>9}{s.resized:>9}"
            lines.append(row + f"{s.source_bytes / 2**20:>9.2f}{s.image_bytes / 2**20:>9.2f}")
        lines.append(
            f"wrote {self.written} samples ({', '.join(f'{k} {self._count(k)}' for k in split_names)}) to {self.out}: "
            f"{self.files} files, {self.bytes:,} bytes ({self.bytes / 2**20:.2f} MiB; "
            f"{self.disk_bytes / 2**20:.2f} MiB on disk)"
        )
        if not self.skipped:
            lines.append("skipped samples: none")
        else:
            lines.append(f"skipped samples: {len(self.skipped)} (all listed in {self.out / 'skipped.tsv'})")
            for sk in self.skipped[:max_listed]:
                lines.append(f"  {sk.set}: {sk.reason} ({PACK_REASONS[sk.reason]})  {sk.key}"
                             + (f"  {sk.detail}" if sk.detail else ""))
            if len(self.skipped) > max_listed:
                lines.append(f"  ... and {len(self.skipped) - max_listed} more")
        return "\n".join(lines)

    def _count(self, split: str) -> int:
        return sum(s.written.get(split, 0) for s in self.sets)


def pack_sets(
    sources: Sequence[str | Path],
    out: str | Path,
    max_height: int = 48,
    quality: int = 90,
    grayscale: bool = False,
    val_split: float = 0.0,
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> PackResult:
    """Pack labelled sets (``labels.tsv`` folders, LMDBs, or folders of such sets) into one ``labels.tsv`` folder.

    Everything is written to a temporary sibling folder first and moved into place at the end, so an interrupted
    run leaves no half-written pack (and ``force`` replaces an old pack only once the new one is complete).

    Args:
        sources: the sets; a folder of sets contributes each of its sets (each packed and split on its own).
        out: the output folder; must not exist or be empty unless ``force``.
        max_height: images taller than this are shrunk to this height (aspect ratio kept; never enlarged).
        quality: JPEG quality (1-100).
        grayscale: store every image as single-channel JPEG (about 20 % smaller; default: only grey images).
        val_split: carve this fraction of every set into ``OUT/val`` (``OUT/train`` gets the rest); 0: no split.
        seed: seed of the split.
        force: replace a non-empty ``out``.
        progress: show a progress bar.

    Returns:
        The :class:`PackResult` (also saved as ``OUT/pack.json``; skipped samples in ``OUT/skipped.tsv``).

    Raises:
        FileNotFoundError: a source does not exist or holds no set.
        FileExistsError: ``out`` is not empty and ``force`` is false, or ``out`` is a file.
        ValueError: bad options, ``out`` overlapping a source or the working directory, or too few samples to split.
        ImportError: an LMDB source without the ``lmdb`` package.
    """
    from .mix import open_set, split_validation
    from .spec import find_sets

    if max_height < 1:
        raise ValueError(f"max_height must be >= 1, got {max_height}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if not 0 <= val_split < 1:
        raise ValueError(f"val_split must be in [0, 1), got {val_split}")
    if not sources:
        raise ValueError("no source sets given")
    out = Path(out)
    set_paths = [p for src in sources for p in find_sets(src)]
    _check_output(out, set_paths, force)

    names: list[str] = []
    for p in set_paths:
        base = _safe_name(p.name if not p.is_file() else p.stem)
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}_{k}"
        names.append(name)
    datasets = [open_set(p) for p in set_paths]

    split_of: list[dict[int, str]] = []  # per set: index -> split, for the val samples only (the rest: train/all)
    for ds in datasets:
        if val_split > 0 and len(ds) >= 2:
            _, v = split_validation(range(len(ds)), val_split, seed)
            split_of.append(dict.fromkeys(v.indices, "val"))
        else:
            split_of.append({})
    if val_split > 0 and not any(split_of):
        raise ValueError(f"val_split {val_split}: every set has fewer than 2 samples, nothing to split")
    split_names = ("train", "val") if val_split > 0 else ("all",)

    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        dirs = {"all": tmp} if val_split == 0 else {"train": tmp / "train", "val": tmp / "val"}
        tsv: dict[str, list[str]] = {k: [] for k in split_names}
        packed: list[PackedSet] = []
        skipped: list[SkippedSample] = []
        bar = _progress(sum(len(d) for d in datasets), progress)
        for path, name, ds, val_idx in zip(set_paths, names, datasets, split_of):
            ps = PackedSet(name, str(path), len(ds), written=dict.fromkeys(split_names, 0))
            made: set[Path] = set()
            for i in range(len(ds)):
                split = val_idx.get(i, "train") if val_split > 0 else "all"
                result = _pack_one(ds[i], name, i, max_height, quality, grayscale)
                if isinstance(result, SkippedSample):
                    skipped.append(result)
                    ps.skipped[result.reason] = ps.skipped.get(result.reason, 0) + 1
                else:
                    data, label, n_in, resized = result
                    folder = dirs[split] / "images" / name
                    if folder not in made:
                        folder.mkdir(parents=True, exist_ok=True)
                        made.add(folder)
                    rel = f"images/{name}/{i}.jpg"
                    (dirs[split] / rel).write_bytes(data)
                    tsv[split].append(f"{rel}\t{label}\n")
                    ps.written[split] += 1
                    ps.source_bytes += n_in
                    ps.image_bytes += len(data)
                    ps.resized += resized
                if bar is not None:
                    bar.update(1)
            packed.append(ps)
        if bar is not None:
            bar.close()
        for split, lines in tsv.items():
            dirs[split].mkdir(parents=True, exist_ok=True)
            (dirs[split] / "labels.tsv").write_text("".join(lines), encoding="utf-8")
        _write_skipped(tmp / "skipped.tsv", skipped)
        settings = {
            "sources": [str(s) for s in sources],
            "max_height": max_height,
            "quality": quality,
            "grayscale": grayscale,
            "val_split": val_split,
            "seed": seed,
        }
        result = PackResult(out, {k: out if v == tmp else out / v.name for k, v in dirs.items()}, packed, skipped,
                            0, 0, 0, settings)
        manifest = tmp / "pack.json"
        text = ""
        for _ in range(5):  # the manifest states the totals, which include the manifest itself: iterate until stable
            manifest.write_text(text)
            result.bytes, result.disk_bytes, result.files = _tree_size(tmp)
            new_text = json.dumps(result.to_dict(), indent=1) + "\n"
            if new_text == text:
                break
            text = new_text
        if out.exists():
            if any(out.iterdir()):  # only with force (checked above)
                shutil.rmtree(out)
            else:
                out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _pack_one(
    raw: Any, set_name: str, index: int, max_height: int, quality: int, grayscale: bool
) -> tuple[bytes, str, int, bool] | SkippedSample:
    """``(jpeg bytes, label, source bytes, resized)`` for a good sample, else the :class:`SkippedSample`."""
    from .collate import decode_image

    label = raw.label
    if raw.image is None:
        return SkippedSample(set_name, index, raw.key, "missing_image")
    if not label.strip():
        return SkippedSample(set_name, index, raw.key, "empty_label", repr(label) if label else "")
    if any(c in _LINE_BREAKS for c in label):
        return SkippedSample(set_name, index, raw.key, "unwritable_label", repr(label))
    try:
        img = decode_image(raw.image, raw.key)
    except ValueError as e:
        return SkippedSample(set_name, index, raw.key, "undecodable_image", str(e))
    n_in = len(raw.image) if isinstance(raw.image, (bytes, bytearray, memoryview)) else 0
    img, resized = shrink_to_height(img, max_height)
    return encode_jpeg(img, quality, grayscale), label, n_in, resized


def shrink_to_height(img: Image.Image, max_height: int) -> tuple[Image.Image, bool]:
    """Shrink ``img`` to ``max_height`` pixels high (Lanczos, aspect ratio kept) if it is taller; never enlarge.

    Returns:
        ``(image, whether it was resized)``.
    """
    w, h = img.size
    if h <= max_height:
        return img, False
    new_w = max(1, round(w * max_height / h))
    return img.resize((new_w, max_height), Image.Resampling.LANCZOS), True


def encode_jpeg(img: Image.Image, quality: int, grayscale: bool = False) -> bytes:
    """JPEG bytes of an RGB image; single-channel when ``grayscale`` or when the three channels are identical."""
    if grayscale or _is_grey(img):
        img = img.convert("L")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _is_grey(img: Image.Image) -> bool:
    if img.mode in ("L", "1", "I", "F", "I;16"):
        return True
    if img.mode != "RGB":
        return False
    r, g, b = img.split()
    return r.tobytes() == g.tobytes() == b.tobytes()


def _safe_name(name: str) -> str:
    """A file-name-safe set name: letters, digits, '.', '_' and '-' (anything else becomes '_')."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name).strip(".")
    return safe or "set"


def _check_output(out: Path, set_paths: Iterable[Path], force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {str(out)!r} exists and is not a folder")
    o = out.resolve()
    for p in set_paths:
        s = p.resolve()
        if o == s or o in s.parents or s in o.parents:
            raise ValueError(f"output {str(out)!r} overlaps the source set {str(p)!r}: choose another folder")
    cwd = Path.cwd().resolve()
    if o == cwd or o in cwd.parents or o == Path.home().resolve():
        raise ValueError(f"output {str(out)!r} is the working directory, a parent of it or the home folder: "
                         "choose a dedicated folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"output {str(out)!r} is not empty: pass --force (force=True) to replace it")


def _write_skipped(path: Path, skipped: list[SkippedSample]) -> None:
    def clean(s: str) -> str:
        return "".join(" " if c == "\t" or c in _LINE_BREAKS else c for c in s)

    lines = ["set\tindex\tkey\treason\tdetail\n"]
    lines += [f"{clean(s.set)}\t{s.index}\t{clean(s.key)}\t{s.reason}\t{clean(s.detail)}\n" for s in skipped]
    path.write_text("".join(lines), encoding="utf-8")


def _tree_size(root: Path) -> tuple[int, int, int]:
    """``(sum of file sizes, allocated bytes, number of files)`` under ``root``."""
    size = disk = files = 0
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            st = os.stat(os.path.join(dirpath, f))
            size += st.st_size
            disk += getattr(st, "st_blocks", 0) * 512 or st.st_size
            files += 1
    return size, disk, files


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="pack", unit="img")
