"""``recipes/gpu/ship.py`` and ``report.py``: from what a GPU session collects to bundled weights, manifest record
and golden outputs (a tiny model and tiny sets stand in for the real ones; nothing touches the real package)."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from pathlib import Path
from types import ModuleType

import pytest
import torch
from PIL import Image

from str_distill.hub import manifest
from str_distill.hub.serialization import save_pretrained

REPO = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "recipes" / "gpu" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_set(root: Path, words: list[str], render) -> None:  # noqa: ANN001
    (root / "images").mkdir(parents=True)
    for i, w in enumerate(words):
        Image.fromarray(render(w, size=(32, 90), seed=i)).save(root / "images" / f"{i}.png")
    (root / "labels.tsv").write_text("".join(f"images/{i}.png\t{w}\n" for i, w in enumerate(words)))


@pytest.fixture
def session(tmp_path: Path, model_factory) -> Path:  # noqa: ANN001
    """A session folder as session.sh leaves it: two arms with metrics and evals; report.py then chooses."""
    s = tmp_path / "session"
    for arm, acc in (("scratch", 0.50), ("ccd", 0.75)):
        d = s / arm
        save_pretrained(model_factory(seed=1 if arm == "ccd" else 0), d / "final", dtype=torch.float16,
                        max_shard_bytes=200_000)
        (d / "curves.png").write_bytes(b"png of " + arm.encode())
        recs = [{"type": "config", "train": {"batch_size": 8, "reuse": 1, "compile": False, "lr": 1e-3},
                 "init": None, "argv": ["train"]},
                {"type": "train", "step": 10, "images_per_s": 100.0, "loss": 3.0, "data_wait": 0.1},
                {"type": "train", "step": 20, "images_per_s": 120.0, "loss": 2.0, "data_wait": 0.1},
                {"type": "summary", "step": 20, "time": 60.0, "bad_samples": 0, "val": None}]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        for p in ("36", "94"):
            for dec in ("attention", "ctc"):
                sets = [{"set": "val", "count": 4, "accuracy": acc, "one_minus_ned": acc},
                        {"set": "IIIT5K", "count": 9, "accuracy": 0.1, "one_minus_ned": 0.2}]
                (d / f"eval_{p}_{dec}.json").write_text(json.dumps({"sets": sets}))
    (s / "bench").mkdir()
    bench = {"type": "benchmark", "device_name": "TestGPU", "data_images_per_s": 1.0, "train_images_per_s": 2.0,
             "model_images_per_s": 3.0, "gpu_util_percent": 50.0, "compile": True, "batch_size": 8}
    (s / "bench" / "metrics.jsonl").write_text(json.dumps(bench) + "\n")
    return s


def test_report_chooses_by_validation_and_copies_final(session: Path, capsys) -> None:  # noqa: ANN001
    report = load_script("report")
    assert report.main([str(session), "--arms", "scratch", "ccd", "--arm-minutes", "9", "--pretrain-minutes", "3"]) == 0
    rep = json.loads((session / "report.json").read_text())
    assert rep["choice"]["arm"] == "ccd"  # 75 % on val beats 50 %; IIIT5K is never used to choose
    assert rep["arms"]["scratch"]["images_seen"] == 160 and rep["arms"]["ccd"]["median_images_per_s"] == 120.0
    assert rep["benchmark"]["device_name"] == "TestGPU"
    assert (session / "final" / "config.json").read_text() == (session / "ccd" / "final" / "config.json").read_text()
    assert "chosen: ccd" in capsys.readouterr().out


def test_ship_bundles_records_and_pins_golden_outputs(session: Path, tmp_path: Path, render) -> None:  # noqa: ANN001
    load_script("report").main([str(session), "--arms", "scratch", "ccd"])
    # what collect.sh leaves in $OUT: the shards + bundle.tar.gz of everything else
    files = tmp_path / "files"
    files.mkdir()
    for shard in (session / "final").glob("*.safetensors"):
        shard.rename(files / shard.name)
    with tarfile.open(files / "bundle.tar.gz", "w:gz") as tar:
        tar.add(session, arcname=".")
    data = tmp_path / "data"
    make_set(data / "IIIT5K", ["alpha", "Beta", "gamma"], render)
    for s in ("IIIT5K_train", "SVT_train", "IC15_train"):
        make_set(data / s, [f"{s[:3]}{i}" for i in range(20)], render)
    examples = tmp_path / "examples"
    make_set(examples, ["OPEN", "exit"], render)
    for p in (examples / "images").iterdir():
        p.rename(examples / p.name)
    mpath, bdir, gold = tmp_path / "manifest.json", tmp_path / "weights", tmp_path / "golden.json"
    ship = load_script("ship")
    old = manifest.MANIFEST_PATH, manifest.BUNDLED_DIR
    try:
        with pytest.raises(SystemExit, match="never shipped unmeasured.*SVT_train"):  # no metrics, no weights
            ship.main([str(files), "--allow-any-arch", "--data", str(tmp_path / "nowhere"), "--work",
                       str(tmp_path / "w0"), "--manifest", str(mpath), "--bundle-dir", str(bdir),
                       "--golden", str(gold)])
        with pytest.raises(ValueError, match="not a 'siga-vit-s' network"):  # toy weights never ship under the name
            ship.main([str(files), "--data", str(data), "--work", str(tmp_path / "w0"), "--manifest", str(mpath),
                       "--bundle-dir", str(bdir), "--golden", str(gold), "--examples", str(examples)])
        assert not mpath.exists() and not gold.exists()
        rc = ship.main([str(files), "--name", "siga-vit-s", "--allow-any-arch", "--data", str(data),
                        "--work", str(tmp_path / "w"), "--manifest", str(mpath), "--bundle-dir", str(bdir),
                        "--golden", str(gold), "--examples", str(examples), "--docs-img", str(tmp_path / "img")])
        assert rc == 0
        assert manifest.validate_manifest(mpath) == []  # files exist with the recorded sha256 and sizes
        rec = manifest.load_manifest(mpath)["siga-vit-s"]
    finally:
        manifest.MANIFEST_PATH, manifest.BUNDLED_DIR = old
    assert rec["status"] == "published" and rec["dtype"] == "float16"
    assert len(rec["files"]) == len(rec["sources"]["bundled"]["files"]) >= 3  # shards + index
    assert rec["training"]["arm"] == "ccd" and rec["training"]["device"] == "TestGPU"
    assert "CCD" in rec["description"]
    m = rec["metrics"]
    assert m["IIIT5K"]["count"] == 3 and m["val"]["count"] == 3  # ceil(5 % of 20) from each of the three sets
    assert set(m["val"]["by_protocol"]) == {"36", "94"} and set(m["val"]["by_protocol"]["94"]) == {"attention", "ctc"}
    assert "--val-split 0.05 --seed 0" in m["val"]["command"]
    log = (tmp_path / "w" / "run_log.md").read_text()
    assert "TestGPU" in log and "| ccd | 1.0 | 20 | 160 | 120 | 1 | 75.00 | 10.00 |" in log
    assert "arm `ccd`" in log and "| IIIT5K (3) | 36 |" in log
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == [f"run-{rec['created']}-ccd.png",
                                                                       f"run-{rec['created']}-scratch.png"]
    g = json.loads(gold.read_text())
    assert set(g["images"]) == {"0.png", "1.png"} and set(g["images"]["0.png"]) == {"attention", "ctc"}
    assert g["weights_sha256"] == [f["sha256"] for f in rec["files"]]


def test_description_says_which_arm_and_whether_ccd_was_compared() -> None:
    describe = load_script("ship").describe
    both = {"scratch": {}, "ccd": {}}
    assert "CCD won" in describe({"arm": "ccd", "choice": {"scores": both}})
    assert "did not beat it at equal GPU time" in describe({"arm": "scratch", "choice": {"scores": both}})
    assert "no CCD arm ran" in describe({"arm": "scratch", "choice": {"scores": {"scratch": {}}}})
    assert "previously shipped weights" in describe({"arm": "continue", "choice": {"scores": {"continue": {}}}})
