"""`str-distill data pseudo-label`: a teacher's confident readings become a labels.tsv folder training can read."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import render_word
from PIL import Image

from str_distill.cli import main
from str_distill.data import FolderDataset


def test_pseudo_label_keeps_confident_readings_and_counts_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "unlabeled"
    src.mkdir()
    for i, w in enumerate(["HELLO", "World", "station"]):
        Image.fromarray(render_word(w, size=(48, 40 * len(w)), seed=i)).save(src / f"{i}.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "pseudo"
    # the port, whose weights never change (it reads these three words at 0.60 to 0.99)
    rc = main(["data", "pseudo-label", str(src), "-o", str(out), "--model", "ppocrv6-small", "--min-confidence", "0.5"])
    assert rc == 1  # one unreadable input: reported, counted, and the exit status says so
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 4 and report["unreadable"] == 1
    assert report["kept"] + report["low_confidence"] + report["empty"] + report["too_long"] == 3
    ds = FolderDataset(out)
    got = {Path(ds[i].key).name: ds[i].label for i in range(len(ds))}
    assert got == {"0.png": "HELLO", "1.png": "World", "2.png": "station"}
    assert all(ds[i].image for i in range(len(ds)))  # relative paths resolve to the original files

    rc = main(["data", "pseudo-label", str(src / "0.png"), "-o", str(tmp_path / "none"), "--min-confidence", "1.0"])
    assert rc == 0 and (tmp_path / "none" / "labels.tsv").read_text() == ""
