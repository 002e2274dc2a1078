"""``save_pretrained``: files are written with the permissions of ordinary new files."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from str_distill.hub.serialization import CONFIG_NAME, INDEX_NAME, load_model_dir, save_pretrained
from str_distill.models import ViTRecognizer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that changes it."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
@pytest.mark.parametrize("sharded", [False, True])
def test_weights_respect_the_umask(tiny_model: ViTRecognizer, tmp_path: Path, umask: None, mask: int,
                                   sharded: bool) -> None:
    os.umask(mask)
    out = save_pretrained(tiny_model, tmp_path / "m", max_shard_bytes=200_000 if sharded else None)
    weights = sorted(out.glob("*.safetensors"))
    assert (len(weights) > 1) == sharded
    expected = 0o666 & ~mask
    files = [*weights, out / CONFIG_NAME] + ([out / INDEX_NAME] if sharded else [])
    assert {f.name: oct(mode(f)) for f in files} == {f.name: oct(expected) for f in files}
    assert load_model_dir(out).config == tiny_model.config  # still a valid directory
