"""``str-distill data pack``: shrunk + re-encoded labels.tsv folders, deterministic split, bad-sample listing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import render_word
from PIL import Image

from str_distill.cli import data as data_cli
from str_distill.data.collate import decode_image
from str_distill.data.compact import pack_sets
from str_distill.data.folder import FolderDataset, read_labels_tsv
from str_distill.data.mix import split_validation


def make_set(root: Path, items: list[tuple[str, tuple[int, int]]]) -> Path:
    """A labels.tsv folder: one rendered word image of size (h, w) per item, labels written verbatim."""
    (root / "images").mkdir(parents=True)
    lines = []
    for i, (label, size) in enumerate(items):
        Image.fromarray(render_word(label.strip() or "x", size=size, seed=i)).save(root / "images" / f"w{i}.png")
        lines.append(f"images/w{i}.png\t{label}")
    (root / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="str-distill")
    data_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_sizes_capped_labels_preserved_and_readable(tmp_path: Path) -> None:
    items = [("Hello", (100, 300)), ("tab\there", (24, 90)), ("Straße é", (60, 60)), (" spaced ", (49, 100)),
             ("tall", (200, 40))]
    src = make_set(tmp_path / "words", items)
    grey = np.array(Image.open(src / "images/w0.png").convert("L"))
    Image.fromarray(grey).save(src / "images/w0.png")  # a grey image is stored single-channel
    res = pack_sets([src], tmp_path / "out", max_height=48, quality=90)

    assert res.written == len(items) and res.skipped == [] and list(res.splits) == ["all"]
    ds = FolderDataset(tmp_path / "out")  # the ordinary folder reader
    assert [label for _, label in ds.samples] == [label for label, _ in items]
    assert [rel for rel, _ in ds.samples] == [f"images/words/{i}.jpg" for i in range(len(items))]
    for i, (_, (h, w)) in enumerate(items):
        img = decode_image(ds[i].image, ds[i].key)
        if h <= 48:
            assert img.size == (w, h)  # never enlarged
        else:
            assert img.height == 48 and abs(img.width - w * 48 / h) <= 1  # aspect ratio kept
        ref = Image.open(src / f"images/w{i}.png").convert("RGB").resize(img.size, Image.Resampling.LANCZOS)
        err = np.abs(np.asarray(img, np.float32) - np.asarray(ref, np.float32)).mean()
        assert err < 6, f"sample {i}: mean abs error {err:.1f} after re-encoding"
    assert Image.open(ds.path(0)).mode == "L" and Image.open(ds.path(1)).mode == "RGB"
    assert res.sets[0].resized == 4 and res.sets[0].written == {"all": 5}
    manifest = json.loads((tmp_path / "out/pack.json").read_text())
    assert manifest["written"] == 5 and manifest["settings"]["max_height"] == 48
    assert manifest["bytes"] == sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert res.bytes == manifest["bytes"] and res.files == 8  # 5 images, labels.tsv, skipped.tsv, pack.json


def test_split_deterministic_disjoint_and_stratified(tmp_path: Path) -> None:
    a = make_set(tmp_path / "a", [(f"a{i}", (20, 50)) for i in range(20)])
    b = make_set(tmp_path / "b", [(f"b{i}", (20, 50)) for i in range(7)])
    r1 = pack_sets([a, b], tmp_path / "p1", val_split=0.25, seed=3)
    pack_sets([a, b], tmp_path / "p2", val_split=0.25, seed=3)
    pack_sets([a, b], tmp_path / "p3", val_split=0.25, seed=4)

    def split(root: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return read_labels_tsv(root / "train/labels.tsv"), read_labels_tsv(root / "val/labels.tsv")

    train, val = split(tmp_path / "p1")
    assert not set(train) & set(val)
    assert sorted(lab for _, lab in train + val) == sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(7)])
    assert sum(lab.startswith("a") for _, lab in val) == 5 and sum(lab.startswith("b") for _, lab in val) == 2
    assert r1.sets[0].written == {"train": 15, "val": 5} and r1.sets[1].written == {"train": 5, "val": 2}
    # the same samples `train --val-split 0.25 --seed 3` carves out of each set
    expect = split_validation(range(20), 0.25, 3)[1].indices
    assert sorted(int(Path(p).stem) for p, lab in val if lab.startswith("a")) == sorted(expect)
    assert split(tmp_path / "p2") == (train, val)
    for f in (tmp_path / "p1").rglob("*.jpg"):  # byte-identical output
        assert f.read_bytes() == (tmp_path / "p2" / f.relative_to(tmp_path / "p1")).read_bytes()
    assert split(tmp_path / "p3")[1] != val
    for part in ("train", "val"):
        ds = FolderDataset(tmp_path / "p1" / part)
        assert all(ds[i].image is not None for i in range(len(ds)))


def test_bad_samples_counted_and_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_set(tmp_path / "s", [("ok", (30, 80)), ("gone", (30, 80)), ("broken", (30, 80)), ("", (30, 80)),
                                    ("   ", (30, 80)), ("fine", (30, 80))])
    (src / "images/w1.png").unlink()
    (src / "images/w2.png").write_bytes(b"not an image at all")
    assert run_cli(["data", "pack", str(src), "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out

    assert [lab for _, lab in read_labels_tsv(tmp_path / "out/labels.tsv")] == ["ok", "fine"]
    rows = [line.split("\t") for line in (tmp_path / "out/skipped.tsv").read_text().splitlines()[1:]]
    assert [(r[1], r[3]) for r in rows] == [("1", "missing_image"), ("2", "undecodable_image"),
                                            ("3", "empty_label"), ("4", "empty_label")]
    assert rows[0][2].endswith("w1.png")
    manifest = json.loads((tmp_path / "out/pack.json").read_text())
    assert manifest["skipped"] == 4 and manifest["sets"][0]["skipped"] == {
        "missing_image": 1, "undecodable_image": 1, "empty_label": 2}
    assert "skipped samples: 4" in printed and "w2.png" in printed and "wrote 2 samples" in printed


def test_refuses_overwrite_and_overlap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_set(tmp_path / "s", [("one", (30, 80)), ("two", (30, 80))])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        pack_sets([src], out)
    assert run_cli(["data", "pack", str(src), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "keep.txt").exists()
    pack_sets([src], out, force=True)
    assert not (out / "keep.txt").exists() and len(FolderDataset(out)) == 2
    assert not list(tmp_path.glob(".out.partial-*"))
    with pytest.raises(ValueError, match="overlaps"):
        pack_sets([src], src / "packed")
    with pytest.raises(ValueError, match="overlaps"):
        pack_sets([src], tmp_path, force=True)  # would delete the source
    with pytest.raises(ValueError, match="val_split"):
        pack_sets([src], tmp_path / "o2", val_split=1.0)
    pack_sets([src], tmp_path / "empty_ok")  # an existing empty folder is fine too
    (tmp_path / "e").mkdir()
    assert pack_sets([src], tmp_path / "e").written == 2


def test_lmdb_source(tmp_path: Path) -> None:
    pytest.importorskip("lmdb")
    from str_distill.data.lmdb import write_lmdb

    imgs = []
    for i, size in enumerate([(80, 200), (20, 60)]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(render_word("lm", size=size, seed=i)).save(p)
        imgs.append((p.read_bytes(), f"lm{i}"))
    write_lmdb(imgs, tmp_path / "set.lmdb")
    res = pack_sets([tmp_path / "set.lmdb"], tmp_path / "out", max_height=32)
    ds = FolderDataset(tmp_path / "out")
    assert [lab for _, lab in ds.samples] == ["lm0", "lm1"] and res.sets[0].name == "set.lmdb"
    assert decode_image(ds[0].image).size == (80, 32) and decode_image(ds[1].image).size == (60, 20)
