"""LMDB datasets: the de-facto STR layout and a one-key-per-sample ("packed") layout, read and write.

Standard layout (as written by the CRNN/ASTER/PARSeq tools)::

    num-samples      -> b"N"
    image-000000001  -> encoded image bytes        (1-based indices)
    label-000000001  -> UTF-8 label

Packed layout (ours; one read per sample and about half the size on disk for small crops)::

    num-samples            -> b"N"
    __str_distill_layout__ -> b"packed-v1"
    s-000000001            -> uint32 little-endian label byte length | UTF-8 label | encoded image bytes

The ``lmdb`` package is only needed here (``pip install str-distill[train]``); it is imported on first use.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset

from .collate import RawSample
from .report import BadSampleReport

__all__ = ["LAYOUT_KEY", "LmdbDataset", "LmdbWriter", "convert_folder", "write_lmdb"]

LAYOUT_KEY = b"__str_distill_layout__"
PACKED = b"packed-v1"
Layout = Literal["standard", "packed"]


def _lmdb() -> Any:
    try:
        import lmdb
    except ImportError:
        raise ImportError(
            "reading or writing LMDB datasets needs the 'lmdb' package: pip install 'str-distill[train]' "
            "(or convert the LMDB to a labels.tsv folder on a machine that has it)"
        ) from None
    return lmdb


_ENVS: dict[str, Any] = {}


def _open_readonly(path: Path) -> Any:
    """One read-only environment per path and process (LMDB refuses to open an environment twice in a process)."""
    key = str(path.resolve())
    env = _ENVS.get(key)
    if env is None:
        env = _lmdb().open(
            str(path), readonly=True, lock=False, readahead=False, meminit=False, max_readers=256,
            subdir=path.is_dir(),
        )
        _ENVS[key] = env
    return env


def close_all() -> None:
    """Close every environment this process opened for reading (they are reopened on the next read).

    Runs before every ``fork()`` (DataLoader workers): an LMDB environment must not cross a fork, and a child that
    inherited py-lmdb's record of an open environment could not open it again.
    """
    for env in _ENVS.values():
        try:
            env.close()
        except Exception:  # already closed
            pass
    _ENVS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=close_all)


class LmdbDataset(Dataset):
    """Map-style dataset over an STR LMDB (either layout); ``dataset[i]`` is a :class:`RawSample` (image bytes).

    The environment is opened read-only and without locks, once per process (DataLoader workers included; open
    environments are closed before a fork and reopened on demand).

    Args:
        path: the environment directory (with ``data.mdb``) or the ``.mdb`` file.
        name: name used in reports (default: the folder name).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if it has no valid ``num-samples`` key.
    """

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"LMDB {str(path)!r} does not exist")
        self.name = name or self.path.name
        with _open_readonly(self.path).begin() as txn:
            n = txn.get(b"num-samples")
            layout = txn.get(LAYOUT_KEY)
        try:
            self.num_samples = int(n)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"LMDB {str(path)!r} has no valid 'num-samples' key (got {n!r})") from None
        self.layout: Layout = "packed" if layout == PACKED else "standard"
        if layout is not None and layout != PACKED:
            raise ValueError(f"LMDB {str(path)!r}: unknown layout {layout!r}")

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> RawSample:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        i = index + 1
        key = f"{self.path}#{i}"
        with _open_readonly(self.path).begin() as txn:  # a dict lookup: environments are cached per process
            if self.layout == "packed":
                value = txn.get(b"s-%09d" % i)
                if value is None or len(value) < 4:
                    return RawSample(None, "", key) if value is None else RawSample(b"", "", key)
                (n,) = struct.unpack_from("<I", value)
                label = bytes(value[4 : 4 + n]).decode("utf-8", errors="replace")
                return RawSample(bytes(value[4 + n :]), label, key)
            img = txn.get(b"image-%09d" % i)
            lab = txn.get(b"label-%09d" % i)
        label = lab.decode("utf-8", errors="replace") if lab is not None else ""
        return RawSample(bytes(img) if img is not None else None, label, key)

    def __repr__(self) -> str:
        return f"LmdbDataset({str(self.path)!r}, n={self.num_samples}, layout={self.layout!r})"


class LmdbWriter:
    """Append samples to a new LMDB; the map grows as needed. Use as a context manager.

    Args:
        path: the environment directory to create (must not hold a ``data.mdb`` already).
        layout: ``"standard"`` (``image-``/``label-`` keys, readable by every STR toolkit) or ``"packed"``.
        commit_every: samples per write transaction.
    """

    def __init__(self, path: str | Path, layout: Layout = "standard", commit_every: int = 1000) -> None:
        if layout not in ("standard", "packed"):
            raise ValueError(f"layout must be 'standard' or 'packed', got {layout!r}")
        self.path = Path(path)
        if (self.path / "data.mdb").exists():
            raise FileExistsError(f"{self.path} already holds an LMDB; choose another output")
        self.path.mkdir(parents=True, exist_ok=True)
        self.layout = layout
        self.commit_every = commit_every
        self._map_size = 64 << 20
        self._env = _lmdb().open(str(self.path), map_size=self._map_size, subdir=True, meminit=False)
        self._pending: list[tuple[bytes, bytes]] = []
        self.count = 0

    def add(self, image: bytes, label: str) -> None:
        """Queue one sample (encoded image bytes and its label)."""
        i = self.count + 1
        lab = label.encode("utf-8")
        if self.layout == "packed":
            self._pending.append((b"s-%09d" % i, struct.pack("<I", len(lab)) + lab + image))
        else:
            self._pending += [(b"image-%09d" % i, image), (b"label-%09d" % i, lab)]
        self.count = i
        if self.count % self.commit_every == 0:
            self._flush()

    def _flush(self, final: bool = False) -> None:
        items = list(self._pending)
        extra = [(b"num-samples", str(self.count).encode())]
        if self.layout == "packed":
            extra.append((LAYOUT_KEY, PACKED))
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for k, v in items + extra:
                        txn.put(k, v)
                break
            except _lmdb().MapFullError:
                self._map_size *= 2
                self._env.set_mapsize(self._map_size)
        self._pending.clear()

    def close(self) -> None:
        if self._env is not None:
            self._flush(final=True)
            self._env.sync()
            self._env.close()
            self._env = None

    def __enter__(self) -> LmdbWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_lmdb(samples: Iterable[tuple[bytes, str]], path: str | Path, layout: Layout = "standard") -> int:
    """Write ``(encoded image bytes, label)`` pairs to a new LMDB; returns the number written."""
    with LmdbWriter(path, layout) as w:
        for image, label in samples:
            w.add(image, label)
        return w.count


def convert_folder(
    folder: str | Path,
    out: str | Path,
    layout: Layout = "standard",
    verify: bool = True,
    report: BadSampleReport | None = None,
    progress: bool = False,
) -> tuple[int, BadSampleReport]:
    """Convert a ``labels.tsv`` folder to an LMDB, copying the encoded image bytes unchanged.

    Samples whose image is missing (or, with ``verify``, cannot be decoded) are not written and are recorded in
    the report; labels are stored exactly as annotated (charset checks happen at training time).

    Returns:
        ``(samples written, report of the skipped ones)``.
    """
    from .collate import decode_image
    from .folder import FolderDataset

    ds = FolderDataset(folder)
    report = report if report is not None else BadSampleReport()
    it: Iterable[int] = range(len(ds))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"convert {ds.name}", unit="img")
    with LmdbWriter(out, layout) as w:
        for i in it:
            raw = ds[i]
            report.add_seen(ds.name)
            if raw.image is None:
                report.add(ds.name, "missing_image", raw.key)
                continue
            if verify:
                try:
                    decode_image(raw.image)
                except ValueError as e:
                    report.add(ds.name, "undecodable_image", raw.key, str(e))
                    continue
            w.add(raw.image, raw.label)
        return w.count, report
