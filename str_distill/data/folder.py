"""Folders of word crops described by ``labels.tsv`` (``relative/path<TAB>label`` per line, UTF-8).

This is the simplest way to bring your own words::

    my_words/
        labels.tsv        # images/0001.png<TAB>Hello
        images/0001.png
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from .collate import RawSample

__all__ = ["LABELS_NAME", "FolderDataset", "read_labels_tsv"]

LABELS_NAME = "labels.tsv"


def read_labels_tsv(path: str | Path) -> list[tuple[str, str]]:
    """Read ``(relative_path, label)`` pairs.

    Blank lines are skipped; a line without a TAB yields an empty label (reported later as ``empty_label``,
    never dropped here). A leading UTF-8 BOM is ignored.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file is not UTF-8, naming the file and line.
    """
    p = Path(path)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{p}: line {line} is not UTF-8") from None
    pairs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        rel, _, label = line.partition("\t")
        pairs.append((rel.strip(), label))
    return pairs


class FolderDataset(Dataset):
    """Map-style dataset over a ``labels.tsv`` folder; ``dataset[i]`` is a :class:`RawSample` (image bytes).

    Images are read lazily, as bytes; a missing file gives ``RawSample.image = None`` so that the caller can
    report it (:class:`~str_distill.data.collate.SampleProcessor` counts it as ``missing_image``).

    Args:
        root: the folder holding ``labels.tsv``.
        name: name used in reports (default: the folder name).
    """

    def __init__(self, root: str | Path, name: str | None = None) -> None:
        self.root = Path(root)
        labels = self.root / LABELS_NAME
        if not labels.is_file():
            raise FileNotFoundError(f"{self.root}: no {LABELS_NAME} (expected 'relative/path<TAB>label' lines)")
        self.samples = read_labels_tsv(labels)
        if not self.samples:
            raise ValueError(f"{labels}: no samples")
        self.name = name or self.root.name

    def __len__(self) -> int:
        return len(self.samples)

    def path(self, index: int) -> Path:
        return self.root / self.samples[index][0]

    def __getitem__(self, index: int) -> RawSample:
        rel, label = self.samples[index]
        try:
            data: bytes | None = (self.root / rel).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            data = None
        return RawSample(data, label, str(self.root / rel))

    def __repr__(self) -> str:
        return f"FolderDataset({str(self.root)!r}, n={len(self)})"
