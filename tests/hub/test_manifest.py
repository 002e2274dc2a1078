"""The shipped weights manifest is valid and honest; the record helpers; the wheel carries the manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from str_distill.hub import manifest
from str_distill.hub.manifest import REQUIRED_FIELDS, load_manifest, make_record, update_record, validate_manifest
from str_distill.hub.serialization import save_pretrained
from str_distill.models import ViTRecognizer, build_model, config_from_dict

REPO = Path(__file__).resolve().parents[2]
TOP_MANIFEST = REPO / "weights_manifest.json"


def test_shipped_manifest_is_valid() -> None:
    data = json.loads(TOP_MANIFEST.read_text())
    assert data["schema_version"] == 1 and data["models"]
    for name, rec in data["models"].items():
        assert set(REQUIRED_FIELDS) <= set(rec), name
        cfg = config_from_dict(rec["config"])
        with torch.device("meta"):
            assert build_model(cfg).num_parameters() == rec["num_parameters"], name
        assert rec["preprocessing"] == manifest.record_processing(cfg)["preprocessing"], name
        if rec["status"] == "published" and rec["license"] != "Apache-2.0" or rec.get("source"):
            assert rec.get("attribution") and rec["source"].get("sha256"), f"{name}: third-party weights need both"
    assert validate_manifest(TOP_MANIFEST) == []  # includes: every bundled file exists with its sha256 and size


def test_manifest_in_use_is_the_shipped_one() -> None:
    assert json.loads(manifest.manifest_path().read_text()) == json.loads(TOP_MANIFEST.read_text())


def test_untrained_record_is_honest() -> None:
    rec = load_manifest(TOP_MANIFEST)["siga-vit-s"]
    if rec["status"] == "published":
        pytest.skip("siga-vit-s has been trained and published")
    assert rec["status"] == "not yet trained"
    assert rec["files"] == [] and rec["size_bytes"] == 0 and rec["metrics"] == {}
    assert rec["sources"]["bundled"] is None
    assert rec["sources"]["hf_hub"]["repo_id"] == "str-distill/siga-vit-s"
    assert rec["sources"]["hf_hub"]["revision"] is None and rec["sources"]["hf_hub"]["published"] is False


def test_make_record_hashes_and_sizes(tmp_path: Path, tiny_model: ViTRecognizer) -> None:
    src = save_pretrained(tiny_model, tmp_path / "m", dtype=torch.float16, max_shard_bytes=150_000)
    rec = make_record("tiny.fp16", src, hf_repo_id="org/tiny", hf_revision="a" * 40, metrics={"x": {"accuracy": 1}})
    names = [f["name"] for f in rec["files"]]
    assert names[-1] == "model.safetensors.index.json" and len(names) >= 3
    for f in rec["files"]:
        data = (src / f["name"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["size"] == len(data)
    assert rec["size_bytes"] == sum(f["size"] for f in rec["files"])
    assert rec["dtype"] == "float16" and rec["num_parameters"] == tiny_model.num_parameters()
    assert rec["config"] == tiny_model.config.to_dict() and rec["preprocessing"]["width"] == 128
    assert rec["sources"] == {"bundled": None, "hf_hub": {"repo_id": "org/tiny", "revision": "a" * 40,
                                                          "published": True}}
    with pytest.raises(ValueError, match="40-hex"):
        make_record("x", src, hf_repo_id="org/tiny", hf_revision="abc123")
    with pytest.raises(FileNotFoundError):
        make_record("x", tmp_path / "nowhere")


def test_bundled_files_must_be_small(tmp_path: Path, tiny_model: ViTRecognizer,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest, "BUNDLED_DIR", tmp_path / "bundled")
    monkeypatch.setattr(manifest, "MAX_BUNDLED_FILE_BYTES", 200_000)
    src = save_pretrained(tiny_model, tmp_path / "m")
    with pytest.raises(ValueError, match="max_shard_bytes"):
        make_record("big", src, bundle=True)
    assert not (tmp_path / "bundled").exists()
    assert make_record("sharded", save_pretrained(tiny_model, tmp_path / "s", max_shard_bytes=150_000), bundle=True)


def test_update_record_and_validation_catches_problems(tmp_path: Path, tiny_model: ViTRecognizer) -> None:
    path = tmp_path / "manifest.json"
    src = save_pretrained(tiny_model, tmp_path / "m")
    good = make_record("b", src, hf_repo_id="org/b", hf_revision="b" * 40)
    update_record("b", good, path)
    update_record("a", {**good, "charset": "36"}, path)
    assert list(json.loads(path.read_text())["models"]) == ["a", "b"]
    problems = validate_manifest(path)
    assert len(problems) == 1 and "a: charset" in problems[0]
    bad = {
        "sha": {**good, "files": [{**good["files"][0], "sha256": "nothex"}]},
        "size": {**good, "size_bytes": 1},
        "status": {**good, "status": "maybe"},
        "no source": {**good, "sources": {"bundled": None, "hf_hub": None}},
        "short rev": {**good, "sources": {"bundled": None, "hf_hub": {"repo_id": "o/b", "revision": "abc",
                                                                      "published": True}}},
        "untrained with files": {**good, "status": "not yet trained"},
    }
    for case, rec in bad.items():
        p = tmp_path / f"{case}.json"
        update_record("m", rec, p)
        assert validate_manifest(p), case
    with pytest.raises(ValueError, match="lacks fields"):
        update_record("x", {"status": "published"}, path)


def test_missing_manifest_means_no_names(tmp_path: Path) -> None:
    assert load_manifest(tmp_path / "absent.json") == {}
    (tmp_path / "old.json").write_text(json.dumps({"models": {}}))
    with pytest.raises(ValueError, match="schema"):
        load_manifest(tmp_path / "old.json")


def test_list_pretrained_lists_published_weights_only() -> None:
    from str_distill import list_models, list_pretrained

    published = [n for n, r in load_manifest().items() if r["status"] == "published"]
    assert list_pretrained() == sorted(published) and "siga-vit-s" not in list_pretrained()
    assert list_pretrained("ppocrv6-small*") == [n for n in sorted(published) if n.startswith("ppocrv6-small")]
    assert "siga-vit-s" in list_models()  # an architecture, without trained weights
    with pytest.warns(DeprecationWarning, match="list_pretrained"):
        assert list_models(pretrained=True) == list_pretrained()


def _has_setuptools() -> bool:
    """The build runs without isolation, so the environment's setuptools must meet pyproject's build requirement
    (>= 77: the SPDX ``license = "..."`` string)."""
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.mark.skipif(not _has_setuptools(), reason="setuptools >= 77 is needed to build the wheel")
def test_wheel_contains_manifest(tmp_path: Path) -> None:
    src = tmp_path / "src"  # build from a copy: never leave build/ or *.egg-info in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "weights_manifest.json", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "str_distill", src / "str_distill", ignore=shutil.ignore_patterns("__pycache__"))
    # bundled weights (shards + index, flat in str_distill/weights/) must land in the wheel too
    weights = src / "str_distill" / "weights"
    weights.mkdir(exist_ok=True)
    (weights / "probe.model-00001-of-00002.safetensors").write_bytes(b"x")
    (weights / "probe.model.safetensors.index.json").write_text("{}")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        cwd=src, capture_output=True, text=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert json.loads(z.read("str_distill/weights_manifest.json")) == json.loads(TOP_MANIFEST.read_text())
        assert "str_distill/predictor.py" in z.namelist() and "str_distill/py.typed" in z.namelist()
        assert "str_distill/weights/probe.model-00001-of-00002.safetensors" in z.namelist()
        assert "str_distill/weights/probe.model.safetensors.index.json" in z.namelist()
