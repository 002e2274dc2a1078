"""``--data`` specifications: ``synth:0.7 /path/IIIT5K_train:0.3 foo.lmdb``.

A spec is ``SOURCE[:WEIGHT]``. ``SOURCE`` is ``synth`` (the on-the-fly renderer), a folder with ``labels.tsv``
(``relative/path<TAB>label``), an LMDB (a directory holding ``data.mdb``, or the ``.mdb`` file itself), or a
folder whose sub-folders are such sets (they are combined into one source). ``WEIGHT`` is a relative sampling
weight (default 1); weights are normalized over all specs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DataSpec", "find_sets", "is_folder_set", "is_lmdb", "parse_spec", "parse_specs"]

SYNTH = "synth"


@dataclass(frozen=True)
class DataSpec:
    """One parsed ``--data`` entry.

    Attributes:
        kind: ``"synth"``, ``"folder"`` (a ``labels.tsv`` set), ``"lmdb"`` or ``"sets"`` (a folder of sets).
        path: the set's location (``None`` for synth).
        weight: relative sampling weight, or ``None`` when not given (treated as 1).
        text: the spec as written, for messages.
    """

    kind: Literal["synth", "folder", "lmdb", "sets"]
    path: Path | None
    weight: float | None
    text: str

    @property
    def name(self) -> str:
        """Short name used in logs and bad-sample reports."""
        return SYNTH if self.path is None else (self.path.name or str(self.path))


def is_lmdb(path: Path) -> bool:
    """True for an LMDB environment directory (``data.mdb`` inside) or an ``.mdb``/``.lmdb`` file."""
    return (path.is_dir() and (path / "data.mdb").is_file()) or (path.is_file() and path.suffix in (".mdb", ".lmdb"))


def is_folder_set(path: Path) -> bool:
    """True for a folder holding ``labels.tsv``."""
    return path.is_dir() and (path / "labels.tsv").is_file()


def find_sets(path: str | Path) -> list[Path]:
    """The labelled sets at ``path``: itself if it is a set, else its immediate sub-folders that are sets (sorted).

    Raises:
        FileNotFoundError: if ``path`` does not exist or holds no set.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data path {str(path)!r} does not exist")
    if is_lmdb(p) or is_folder_set(p):
        return [p]
    subs = sorted(c for c in p.iterdir() if is_lmdb(c) or is_folder_set(c)) if p.is_dir() else []
    if not subs:
        raise FileNotFoundError(
            f"data path {str(path)!r} is neither a folder with labels.tsv, nor an LMDB (data.mdb), "
            "nor a folder of such sets"
        )
    return subs


def parse_spec(text: str) -> DataSpec:
    """Parse one ``SOURCE[:WEIGHT]`` entry.

    Raises:
        ValueError: for a negative or non-finite weight, or an empty spec.
        FileNotFoundError: for a path that is not a set (see :func:`find_sets`).
    """
    raw = text.strip()
    if not raw:
        raise ValueError("empty --data spec")
    source, weight = raw, None
    head, sep, tail = raw.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
        except ValueError:
            weight = None  # a ':' that is part of the path
        else:
            source = head
    if weight is not None and (not math.isfinite(weight) or weight < 0):
        raise ValueError(f"--data {text!r}: weight must be a finite number >= 0, got {tail!r}")
    if source == SYNTH:
        return DataSpec("synth", None, weight, raw)
    p = Path(source).expanduser()
    sets = find_sets(p)
    if sets == [p]:
        return DataSpec("lmdb" if is_lmdb(p) else "folder", p, weight, raw)
    return DataSpec("sets", p, weight, raw)


def parse_specs(texts: list[str]) -> list[DataSpec]:
    """Parse several specs; raises ``ValueError`` if all weights are zero."""
    specs = [parse_spec(t) for t in texts]
    if specs and all(s.weight == 0 for s in specs):
        raise ValueError("all --data weights are 0")
    return specs
