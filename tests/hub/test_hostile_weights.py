"""Broken and hostile weights: mutated safetensors headers, shard indexes that point elsewhere, configs with
unknown, mistyped or absurd fields, a manifest whose sha256 does not match. Each is a clear error naming the file,
no network is built for real (nothing is loaded) and nothing is ever unpickled."""

from __future__ import annotations

import json
import pickle
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from str_distill import Recognizer
from str_distill.hub import manifest
from str_distill.hub.loading import WeightsFormatError, WeightsIntegrityError, load_model
from str_distill.hub.manifest import make_record, update_record
from str_distill.hub.serialization import load_model_dir, save_pretrained
from str_distill.models import registry
from tests.conftest import make_tiny_model
from tests.models.test_ppocr import make_tiny

MARKER = Path(tempfile.gettempdir()) / "str_distill_pickle_ran"


class _Evil:
    """Unpickling this object creates :data:`MARKER`: proof that a pickle was run."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (MARKER.touch, ())


@pytest.fixture(autouse=True)
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


@pytest.fixture
def real_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Archs of the networks built with real memory (not on the ``meta`` device) during the test."""
    built: list[str] = []
    original = registry.build_model

    def build(config: Any) -> Any:
        model = original(config)
        if next(model.parameters()).device.type != "meta":
            built.append(config.arch)
        return model

    monkeypatch.setattr(registry, "build_model", build)
    return built


@pytest.fixture(params=["vit", "ppocr"])
def saved(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A ``save_pretrained`` directory of a tiny model of each family."""
    model = make_tiny_model() if request.param == "vit" else make_tiny()
    return save_pretrained(model, tmp_path / request.param)


def split(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join(header: dict[str, Any] | bytes, body: bytes, length: int | None = None) -> bytes:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + body


def first_float(header: dict[str, Any]) -> str:
    return next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")


def mutate(kind: str, header: dict[str, Any], body: bytes) -> bytes:
    k = first_float(header)
    if kind == "offsets past the end":
        header[k]["data_offsets"] = [0, len(body) + 10**9]
    elif kind == "overlapping offsets":
        header[k]["data_offsets"] = [0, 4]
    elif kind == "unknown dtype":
        header[k]["dtype"] = "F99"
    elif kind == "shape overflows":
        header[k]["shape"] = [2**40, 2**40]
    elif kind == "huge header length":
        return join(header, body, length=2**62)
    elif kind == "header length past the end":
        return join(header, body, length=len(json.dumps(header)) + len(body) + 1)
    elif kind == "truncated data":
        return join(header, body[:-100])
    elif kind == "header not JSON":
        return join(b"{not json" + b" " * 40, body)
    elif kind == "header a list":
        return join(b"[1, 2, 3]", body)
    elif kind == "metadata not strings":
        header["__metadata__"]["config"] = {"arch": "x"}
    elif kind == "empty file":
        return b""
    elif kind == "a pickle":
        return pickle.dumps(_Evil())
    return join(header, body)


KINDS = ["offsets past the end", "overlapping offsets", "unknown dtype", "shape overflows", "huge header length",
         "header length past the end", "truncated data", "header not JSON", "header a list", "metadata not strings",
         "empty file", "a pickle"]


@pytest.mark.parametrize("kind", KINDS)
def test_mutated_safetensors_is_a_clear_error(saved: Path, kind: str, real_builds: list[str]) -> None:
    weights = saved / "model.safetensors"
    header, body = split(weights)
    weights.write_bytes(mutate(kind, header, body))
    MARKER.unlink(missing_ok=True)
    for load in (lambda: load_model(saved), lambda: load_model(weights), lambda: load_model_dir(saved),
                 lambda: Recognizer.from_pretrained(saved, device="cpu")):
        with pytest.raises(WeightsFormatError, match=r"model\.safetensors: not a valid safetensors file \("):
            load()
    assert real_builds == [] and not MARKER.exists()


def test_pickle_files_are_never_opened(tmp_path: Path) -> None:
    MARKER.unlink(missing_ok=True)
    for name in ("model.pt", "model.pth", "model.bin", "model.ckpt"):
        (tmp_path / name).write_bytes(pickle.dumps(_Evil()))
        with pytest.raises(ValueError, match="never unpickled"):
            load_model(tmp_path / name)
    assert not MARKER.exists()


def test_float_weights_stored_as_integers_are_refused(saved: Path, real_builds: list[str]) -> None:
    weights = saved / "model.safetensors"
    header, body = split(weights)
    for v in header.values():  # same byte length: safetensors itself reads it fine
        if isinstance(v, dict) and v.get("dtype") == "F32":
            v["dtype"] = "I32"
    weights.write_bytes(join(header, body))
    with pytest.raises(RuntimeError, match=r"dtype mismatch of \[.* torch\.int32 \(expected torch\.float32\)"):
        load_model(saved)
    assert real_builds == []


def test_extra_and_missing_tensors_are_refused_before_building(saved: Path, real_builds: list[str]) -> None:
    weights = saved / "model.safetensors"
    from safetensors.torch import load_file

    state = load_file(str(weights))
    save_file({**state, "backdoor.weight": torch.zeros(3)}, str(weights))
    with pytest.raises(RuntimeError, match=r"unexpected keys \['backdoor\.weight'\]"):
        load_model(saved)
    dropped = sorted(state)[0]
    save_file({k: v for k, v in state.items() if k != dropped}, str(weights))
    with pytest.raises(RuntimeError, match=rf"missing keys \['{dropped}'\]"):
        load_model(saved)
    assert real_builds == []


# ------------------------------------------------------------------------------------------------------ configs
def hostile_configs(cfg: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """name -> (config, expected message part)."""
    size = "embed_dim" if "embed_dim" in cfg else "neck_dim"
    depth = "depth" if "depth" in cfg else "neck_depth"
    heads = "num_heads" if "num_heads" in cfg else "neck_heads"
    return {
        "unknown field": ({**cfg, "__class__": "os.system"}, "unknown .*keys: \\['__class__'\\]"),
        "string size": ({**cfg, size: "384"}, "invalid model config"),
        "null size": ({**cfg, size: None}, "invalid model config"),
        "negative heads": ({**cfg, heads: -2}, "out of range"),
        "giant width": ({**cfg, size: 10**9}, f"{size} = 1000000000 is out of range"),
        "giant depth": ({**cfg, depth: 10**9}, "out of range"),
        "deep but in range": ({**cfg, depth: 100_000}, "far larger than the weights file holds"),
        "NaN mean": ({**cfg, "mean": [float("nan")] * 3}, "not a finite number"),
        "short std": ({**cfg, "std": [0.5]}, "std must be 3 finite numbers"),
        "zero std": ({**cfg, "std": [0.5, 0.0, 0.5]}, "std must be positive"),
        "dict charset": ({**cfg, "charset": {"a": 1}}, "cannot build the architecture"),
        "nested lists": ({**cfg, "mean": [[[[[0.5]]]]] * 3}, "nested too deep"),
        "not an object": ([cfg], "must be a JSON object"),  # type: ignore[dict-item]
    }


@pytest.mark.timeout(120)
def test_hostile_config_fields_are_clear_errors(saved: Path, real_builds: list[str]) -> None:
    base = json.loads((saved / "config.json").read_text())
    weights = saved / "model.safetensors"
    header, body = split(weights)
    del header["__metadata__"]["config"]  # read the sibling config.json
    weights.write_bytes(join(header, body))
    for name, (cfg, message) in hostile_configs(base).items():
        (saved / "config.json").write_text(json.dumps(cfg))
        start = time.perf_counter()
        for load in (lambda: load_model(saved), lambda: load_model_dir(saved)):
            with pytest.raises(WeightsFormatError, match=message) as e:
                load()
            assert str(e.value).startswith(str(saved)), name
        assert time.perf_counter() - start < 20, name  # no giant allocation, no endless build
    assert real_builds == []


def test_unreadable_config_files(saved: Path, real_builds: list[str]) -> None:
    weights = saved / "model.safetensors"
    header, body = split(weights)
    header["__metadata__"]["config"] = "{not json"
    weights.write_bytes(join(header, body))
    with pytest.raises(WeightsFormatError, match=r"model\.safetensors \(its 'config' metadata\): not valid model "
                                                 "config"):
        load_model(weights)
    del header["__metadata__"]["config"]
    weights.write_bytes(join(header, body))
    cases = {"truncated": '{"arch": "siga', "deeply nested": "[" * 100_000 + "]" * 100_000,
             "oversized": " " * (17 * 2**20) + "{}"}
    for name, text in cases.items():
        (saved / "config.json").write_text(text)
        with pytest.raises(WeightsFormatError, match=r"config\.json: (not valid model config|\d+ bytes is too large)"):
            load_model(saved)
        assert name
    assert real_builds == []


# ------------------------------------------------------------------------------------------------------ shard indexes
@pytest.mark.parametrize("shard", ["../outside.safetensors", "/tmp/outside.safetensors", "sub/x.safetensors",
                                   "model.pt", "..", ""])
def test_shard_index_cannot_point_outside_its_folder(tiny_model_dir: Path, tmp_path: Path, shard: str) -> None:
    d = save_pretrained(make_tiny_model(), tmp_path / "m", max_shard_bytes=200_000)
    index = json.loads((d / "model.safetensors.index.json").read_text())
    (tmp_path / "outside.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = shard
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(WeightsFormatError, match="is not the name of a .safetensors file next to the index"):
        load_model(d)


def test_malformed_index_and_duplicated_tensors(tmp_path: Path) -> None:
    d = save_pretrained(make_tiny_model(), tmp_path / "m", max_shard_bytes=200_000)
    index_path = d / "model.safetensors.index.json"
    good = json.loads(index_path.read_text())
    for bad, message in ((b"{", "not valid shard index"), (b"[]", "needs a 'weight_map'"),
                         (json.dumps({"weight_map": {"a": 1}}).encode(), "needs a 'weight_map'")):
        index_path.write_bytes(bad)
        with pytest.raises(WeightsFormatError, match=message):
            load_model(d)
    shards = sorted(set(good["weight_map"].values()))
    from safetensors.torch import load_file

    first = load_file(str(d / shards[0]))
    key = next(iter(first))
    save_file({**load_file(str(d / shards[1])), key: first[key]}, str(d / shards[1]))  # stored twice
    index_path.write_text(json.dumps(good))
    with pytest.raises(WeightsFormatError, match=rf"tensors \['{key}'\] are stored in more than one shard"):
        load_model(d)


# ------------------------------------------------------------------------------------------------------ the manifest
@pytest.fixture
def registry_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(manifest, "MANIFEST_PATH", tmp_path / "manifest" / "weights_manifest.json")
    monkeypatch.setattr(manifest, "BUNDLED_DIR", tmp_path / "bundled")
    (tmp_path / "manifest").mkdir()
    return tmp_path


@pytest.mark.parametrize("edit", [lambda s: s[::-1], lambda s: "0" * 64, lambda s: "not-hex", lambda s: s.upper()])
def test_manifest_with_a_wrong_sha256_refuses_the_file(registry_dir: Path, real_builds: list[str],
                                                       edit: Callable[[str], str]) -> None:
    update_record("tiny", make_record("tiny", save_pretrained(make_tiny_model(), registry_dir / "t"), bundle=True))
    path = manifest.manifest_path()
    data = json.loads(path.read_text())
    entry = data["models"]["tiny"]["files"][0]
    entry["sha256"] = edit(entry["sha256"])
    path.write_text(json.dumps(data))
    for load in (lambda: load_model("tiny"), lambda: Recognizer.from_pretrained("tiny", device="cpu")):
        with pytest.raises(WeightsIntegrityError, match="does not match the manifest record of 'tiny'.*refusing"):
            load()
    assert real_builds == []
