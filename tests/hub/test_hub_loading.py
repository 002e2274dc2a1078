"""Every weights source round-trips a tiny model: bundled, local dir/file, HF cache, hub download; offline; sha256."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from str_distill import Recognizer, ViTRecognizer
from str_distill.hub import loading, manifest
from str_distill.hub.loading import WeightsIntegrityError, WeightsNotFoundError, load_model
from str_distill.hub.manifest import make_record, update_record, validate_manifest
from str_distill.hub.serialization import save_pretrained, sha256_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading must never unpickle anything."""

    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty manifest + bundled folder in tmp, in place of the package's."""
    monkeypatch.setattr(manifest, "MANIFEST_PATH", tmp_path / "manifest" / "weights_manifest.json")
    monkeypatch.setattr(manifest, "BUNDLED_DIR", tmp_path / "bundled")
    (tmp_path / "manifest").mkdir()
    return tmp_path


def assert_same_weights(a: ViTRecognizer, b: ViTRecognizer) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.config == b.config


def make_hf_cache(cache: Path, repo: str, files: dict[str, Path], commit: str = COMMIT) -> Path:
    """The ``models--org--name/{refs,blobs,snapshots/<commit>}`` layout huggingface_hub writes."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    (root / "blobs").mkdir()
    for name, src in files.items():
        blob = root / "blobs" / sha256_file(src)
        shutil.copyfile(src, blob)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    return root


def hub_record(name: str, src: Path, repo: str = "org/tiny") -> dict[str, Any]:
    return make_record(name, src, hf_repo_id=repo, hf_revision=COMMIT, metrics={"toy": {"accuracy": 0.5}})


# ------------------------------------------------------------------------------------------------------ local paths
def test_local_directory(tiny_model: ViTRecognizer, tiny_model_dir: Path) -> None:
    assert_same_weights(load_model(tiny_model_dir), tiny_model)
    assert_same_weights(load_model(str(tiny_model_dir)), tiny_model)
    assert not load_model(tiny_model_dir).training


def test_sharded_directory_and_index(tiny_model: ViTRecognizer, tmp_path: Path) -> None:
    save_pretrained(tiny_model, tmp_path, max_shard_bytes=200_000)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 3 and all(s.stat().st_size <= 200_000 + 50_000 for s in shards)
    assert_same_weights(load_model(tmp_path), tiny_model)
    assert_same_weights(load_model(tmp_path / "model.safetensors.index.json"), tiny_model)


def test_safetensors_file_config_from_metadata(tiny_model: ViTRecognizer, tiny_model_dir: Path, tmp_path: Path) -> None:
    lone = tmp_path / "renamed.safetensors"
    shutil.copyfile(tiny_model_dir / "model.safetensors", lone)
    assert_same_weights(load_model(lone), tiny_model)


def test_safetensors_file_config_from_sibling(tiny_model: ViTRecognizer, tmp_path: Path) -> None:
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsNotFoundError, match="no model config"):
        load_model(tmp_path / "w.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(tiny_model.config.to_dict()))
    assert_same_weights(load_model(tmp_path / "w.safetensors"), tiny_model)


def test_half_precision_weights_load_as_float32(tiny_model: ViTRecognizer, tmp_path: Path) -> None:
    save_pretrained(tiny_model, tmp_path, dtype=torch.float16)
    model = load_model(tmp_path)
    assert next(model.parameters()).dtype == torch.float32
    torch.testing.assert_close(model.encoder.blocks[0].mlp[0].weight, tiny_model.encoder.blocks[0].mlp[0].weight,
                               atol=1e-3, rtol=1e-3)


def test_pickle_and_bad_directories_refused(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"not read")
    with pytest.raises(ValueError, match="pickle"):
        load_model(tmp_path / "model.pt")
    with pytest.raises(WeightsNotFoundError, match="save_pretrained"):
        load_model(tmp_path)


def test_strict_loading(tiny_model: ViTRecognizer, tmp_path: Path) -> None:
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    (tmp_path / "config.json").write_text(json.dumps(tiny_model.config.to_dict()))
    save_file({**state, "extra.weight": torch.zeros(1)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(RuntimeError, match="unexpected keys"):
        load_model(tmp_path / "extra.safetensors")
    state.pop("decoder.head.bias")
    save_file(state, str(tmp_path / "missing.safetensors"))
    with pytest.raises(RuntimeError, match=r"missing keys \['decoder.head.bias'\]"):
        load_model(tmp_path / "missing.safetensors")
    cfg = {**tiny_model.config.to_dict(), "charset": "36"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_model(tmp_path / "w.safetensors")


# ------------------------------------------------------------------------------------------------------ bundled
@pytest.mark.parametrize("shard", [None, 200_000])
def test_bundled_weights(registry: Path, tiny_model: ViTRecognizer, shard: int | None, no_network: None) -> None:
    src = save_pretrained(tiny_model, registry / "trained", max_shard_bytes=shard)
    rec = make_record("tiny.test", src, bundle=True, license="CC0-1.0", metrics={"toy": {"accuracy": 0.5}})
    update_record("tiny.test", rec)
    assert validate_manifest() == []
    bundled = sorted(p.name for p in (registry / "bundled").iterdir())
    assert bundled == sorted(f"tiny.test.{f['name']}" for f in rec["files"])
    assert (len(rec["files"]) > 2) == (shard is not None)
    assert_same_weights(load_model("tiny.test"), tiny_model)
    rec_a = Recognizer.from_pretrained("tiny.test", device="cpu")
    img = torch.rand(2, 3, 32, 128)
    assert [p.text for p in rec_a.predict(img)] == [p.text for p in Recognizer(tiny_model, "cpu").predict(img)]


def test_tampered_bundled_file_refused(registry: Path, tiny_model: ViTRecognizer) -> None:
    update_record("tiny", make_record("tiny", save_pretrained(tiny_model, registry / "t"), bundle=True))
    f = registry / "bundled" / "tiny.model.safetensors"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF  # same size, different content
    f.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="sha256 .* refusing to load"):
        load_model("tiny")
    assert any("does not match" in p for p in validate_manifest())
    f.write_bytes(bytes(data[:-100]))
    with pytest.raises(WeightsIntegrityError, match="size"):
        load_model("tiny")


def test_bundled_file_missing_reports_what_was_tried(registry: Path, tiny_model: ViTRecognizer) -> None:
    update_record("tiny", make_record("tiny", save_pretrained(tiny_model, registry / "t"), bundle=True))
    (registry / "bundled" / "tiny.model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="missing from this installation.*no published repo.*Next: pass"):
        load_model("tiny")


# ------------------------------------------------------------------------------------------------------ HF cache
def test_hf_cache_hub_source(tiny_model: ViTRecognizer, tiny_model_dir: Path, tmp_path: Path, no_network: None) -> None:
    files = {n: tiny_model_dir / n for n in ("config.json", "model.safetensors")}
    make_hf_cache(tmp_path, "org/tiny", files)
    for src in ("hf-hub:org/tiny", f"hf-hub:org/tiny@{COMMIT}"):
        assert_same_weights(load_model(src, local_files_only=True, cache_dir=tmp_path), tiny_model)
    assert_same_weights(load_model("hf-hub:org/tiny", revision=COMMIT, cache_dir=tmp_path), tiny_model)  # pinned
    rec = Recognizer.from_pretrained("hf-hub:org/tiny", local_files_only=True, cache_dir=tmp_path, device="cpu")
    assert isinstance(rec.model, ViTRecognizer)


def test_hf_cache_sharded(tiny_model: ViTRecognizer, tmp_path: Path, no_network: None) -> None:
    src = save_pretrained(tiny_model, tmp_path / "src", max_shard_bytes=200_000)
    make_hf_cache(tmp_path / "cache", "org/sharded", {p.name: p for p in src.iterdir()})
    assert_same_weights(load_model("hf-hub:org/sharded", local_files_only=True, cache_dir=tmp_path / "cache"),
                        tiny_model)


def test_hf_cache_manifest_name(registry: Path, tiny_model: ViTRecognizer, tiny_model_dir: Path,
                                no_network: None) -> None:
    update_record("tiny", hub_record("tiny", tiny_model_dir))
    assert validate_manifest() == []
    root = make_hf_cache(registry / "cache", "org/tiny", {"model.safetensors": tiny_model_dir / "model.safetensors"})
    assert_same_weights(load_model("tiny", local_files_only=True, cache_dir=registry / "cache"), tiny_model)
    # the cached blob is hashed on every load: a corrupted cache is refused
    blob = next((root / "blobs").iterdir())
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    with pytest.raises(WeightsIntegrityError, match="refusing to load"):
        load_model("tiny", local_files_only=True, cache_dir=registry / "cache")


# ------------------------------------------------------------------------------------------------------ download
@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``hf_hub_download`` replaced by a copy from ``remote`` (a folder), ``try_to_load_from_cache`` by a miss;
    calls are recorded in order."""
    import huggingface_hub

    state: dict[str, Any] = {"remote": tmp_path / "remote", "calls": []}
    state["remote"].mkdir()

    def cache_lookup(repo_id: str, filename: str, **kw: Any) -> None:
        state["calls"].append({"repo_id": repo_id, "filename": filename, "cache": True, **kw})
        return None  # not cached

    def download(repo_id: str, filename: str, **kw: Any) -> str:
        state["calls"].append({"repo_id": repo_id, "filename": filename, "cache": False, **kw})
        src = state["remote"] / filename
        if not src.is_file():
            raise FileNotFoundError(f"404 {filename}")
        dst = tmp_path / "downloads" / (kw.get("revision") or "main") / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return str(dst)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", cache_lookup)
    return state


def test_download_manifest_name(registry: Path, tiny_model: ViTRecognizer, tiny_model_dir: Path,
                                fake_hub: dict[str, Any]) -> None:
    update_record("tiny", hub_record("tiny", tiny_model_dir))
    shutil.copyfile(tiny_model_dir / "model.safetensors", fake_hub["remote"] / "model.safetensors")
    assert_same_weights(load_model("tiny"), tiny_model)
    calls = fake_hub["calls"]
    assert [c["cache"] for c in calls] == [True, False]  # cache first, then the download
    assert all(c["revision"] == COMMIT for c in calls)
    assert calls[1]["library_name"] == "str-distill" and calls[1]["library_version"]
    (fake_hub["remote"] / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsIntegrityError):
        load_model("tiny")


def test_download_hf_repo_unpinned_goes_to_network(tiny_model: ViTRecognizer, tiny_model_dir: Path,
                                                   fake_hub: dict[str, Any]) -> None:
    for n in ("config.json", "model.safetensors"):
        shutil.copyfile(tiny_model_dir / n, fake_hub["remote"] / n)
    assert_same_weights(load_model("hf-hub:org/tiny@main"), tiny_model)
    assert fake_hub["calls"][0]["cache"] is False and fake_hub["calls"][0]["revision"] == "main"


def test_download_failure_message(registry: Path, tiny_model_dir: Path, fake_hub: dict[str, Any]) -> None:
    update_record("tiny", hub_record("tiny", tiny_model_dir))
    with pytest.raises(WeightsNotFoundError) as e:
        load_model("tiny")
    msg = str(e.value)
    assert "Tried: bundled files: none" in msg and "Hugging Face cache" in msg and "404" in msg
    assert "pass a local path" in msg


# ------------------------------------------------------------------------------------------------------ offline
def test_offline_never_touches_network(registry: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                       no_network: None) -> None:
    update_record("tiny", hub_record("tiny", tiny_model_dir))
    empty = registry / "empty_cache"
    with pytest.raises(WeightsNotFoundError, match="download: skipped, offline"):
        load_model("tiny", local_files_only=True, cache_dir=empty)
    with pytest.raises(WeightsNotFoundError, match="unset HF_HUB_OFFLINE"):
        load_model("hf-hub:org/tiny", local_files_only=True, cache_dir=empty)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert loading.is_offline()
    with pytest.raises(WeightsNotFoundError, match="download: skipped, offline"):
        load_model("tiny", cache_dir=empty)
    with pytest.raises(WeightsNotFoundError, match="could not load 'hf-hub:org/tiny@main'"):
        load_model("hf-hub:org/tiny", cache_dir=empty)


# ------------------------------------------------------------------------------------------------------ names
def test_untrained_published_name_fails_clearly(no_network: None) -> None:
    for load in (lambda: load_model("siga-vit-s"), lambda: Recognizer.from_pretrained("siga-vit-s")):
        with pytest.raises(WeightsNotFoundError) as e:
            load()
        msg = str(e.value)
        assert "no trained weights for 'siga-vit-s' exist yet" in msg and "not yet trained" in msg
        assert "none are bundled" in msg and "save_pretrained()" in msg and "str-distill train" in msg


def test_unknown_names_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match=r"siga-vit-t.*create_model\('siga-vit-t'\)"):
        load_model("siga-vit-t")
    with pytest.raises(WeightsNotFoundError, match="known: .*siga-vit-s"):
        load_model("no-such-model")
    with pytest.raises(WeightsNotFoundError, match="is not an existing file"):
        load_model(tmp_path / "nothing.safetensors")
    with pytest.raises(ValueError, match="only applies to 'hf-hub:'"):
        load_model("siga-vit-s", revision="main")
    with pytest.raises(ValueError, match="org/repo"):
        load_model("hf-hub:just-a-name")
    with pytest.raises(ValueError, match="pins revision"):
        load_model("hf-hub:org/x@v1", revision="v2")
