"""LMDB datasets: write/read round trip in both layouts, the standard key names, folder conversion, bad samples."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
from PIL import Image

from str_distill.data.lmdb import LmdbDataset, LmdbWriter, convert_folder, write_lmdb

lmdb = pytest.importorskip("lmdb")

LABELS = ["hello", "World", "café", "a b", "12:30"]


def png_bytes(seed: int) -> bytes:
    img = Image.new("RGB", (20 + seed, 8), (seed * 40 % 256, 100, 200))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("layout", ["standard", "packed"])
def test_round_trip(tmp_path: Path, layout: str) -> None:
    samples = [(png_bytes(i), label) for i, label in enumerate(LABELS)]
    n = write_lmdb(samples, tmp_path / "db", layout=layout)  # type: ignore[arg-type]
    assert n == len(LABELS)
    ds = LmdbDataset(tmp_path / "db")
    assert len(ds) == len(LABELS) and ds.layout == layout
    for i, (img, label) in enumerate(samples):
        raw = ds[i]
        assert raw.label == label
        assert raw.image == img
        assert raw.key.endswith(f"#{i + 1}")
    with pytest.raises(IndexError):
        ds[len(LABELS)]
    # a dataset sent to a DataLoader worker re-opens its environment there
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[1].label == "World"


def test_standard_layout_uses_the_de_facto_keys(tmp_path: Path) -> None:
    write_lmdb([(png_bytes(0), "abc"), (png_bytes(1), "de")], tmp_path / "db")
    env = lmdb.open(str(tmp_path / "db"), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(b"num-samples") == b"2"
        assert txn.get(b"label-000000001") == b"abc"
        assert txn.get(b"image-000000002") == png_bytes(1)
        assert txn.get(b"image-000000000") is None  # 1-based
    env.close()


def test_map_grows_beyond_initial_size(tmp_path: Path) -> None:
    big = b"\x00" * (3 << 20)  # 3 MiB payloads: 30 of them exceed the initial 64 MiB map
    with LmdbWriter(tmp_path / "db", layout="packed", commit_every=7) as w:
        for i in range(30):
            w.add(big, f"w{i}")
    ds = LmdbDataset(tmp_path / "db")
    assert len(ds) == 30 and ds[29].label == "w29" and len(ds[29].image) == len(big)


def test_writer_refuses_existing_and_reader_needs_num_samples(tmp_path: Path) -> None:
    write_lmdb([(png_bytes(0), "x")], tmp_path / "db")
    with pytest.raises(FileExistsError):
        LmdbWriter(tmp_path / "db")
    env = lmdb.open(str(tmp_path / "empty"))
    env.close()
    with pytest.raises(ValueError, match="num-samples"):
        LmdbDataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        LmdbDataset(tmp_path / "nope")


def test_convert_folder_reports_missing_and_corrupt_images(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    for i in range(3):
        (folder / "images" / f"{i}.png").write_bytes(png_bytes(i))
    (folder / "images" / "bad.png").write_bytes(b"not an image")
    lines = [f"images/{i}.png\tword{i}" for i in range(3)] + ["images/bad.png\tbad", "images/gone.png\tgone"]
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n")
    n, report = convert_folder(folder, tmp_path / "out", layout="packed")
    assert n == 3
    assert report.count("undecodable_image") == 1 and report.count("missing_image") == 1
    ds = LmdbDataset(tmp_path / "out")
    assert [ds[i].label for i in range(3)] == ["word0", "word1", "word2"]
    assert ds[2].image == png_bytes(2)  # bytes copied unchanged


def test_data_convert_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from str_distill.cli import data as data_cli

    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(3))
    (folder / "labels.tsv").write_text("a.png\tHi\n")
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers())
    args = parser.parse_args(["data", "convert", str(folder), "-o", str(tmp_path / "o.lmdb")])
    assert args.func(args) == 0
    assert "wrote 1 samples" in capsys.readouterr().out
    assert LmdbDataset(tmp_path / "o.lmdb")[0].label == "Hi"
    assert args.func(args) == 2  # the output exists now: a clear error, not an overwrite


def test_lmdb_read_in_forked_workers_after_the_parent_read(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    write_lmdb([(png_bytes(i), f"w{i}") for i in range(6)], tmp_path / "db", layout="packed")
    ds = LmdbDataset(tmp_path / "db")
    assert ds[0].label == "w0"  # the parent holds an open environment when the workers fork
    for _ in range(2):
        got = sorted(r.label for r in DataLoader(ds, batch_size=None, num_workers=2, collate_fn=lambda x: x))
        assert got == [f"w{i}" for i in range(6)]
    assert ds[5].label == "w5"
