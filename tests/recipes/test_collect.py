"""``recipes/gpu/collect.sh``: what a GPU session hands back, within the device tool's limits."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import torch

from str_distill.hub.serialization import save_pretrained

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None,
                                reason="needs bash and tar")


def collect(run_dir: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """Run collect.sh from a copy of the scripts in a tree without shared/data, as on the GPU machine."""
    scripts = run_dir.parent / "device-copy" / "recipes" / "gpu"
    if not scripts.exists():
        shutil.copytree(REPO / "recipes" / "gpu", scripts)
    env = {**os.environ, "RUN_DIR": str(run_dir), "OUT": str(out), "PY": "python3"}
    return subprocess.run(["bash", str(scripts / "collect.sh")], env=env, capture_output=True, text=True, timeout=120)


def test_collect_shards_and_bundle(tmp_path: Path, model_factory) -> None:  # noqa: ANN001
    run = tmp_path / "run"
    save_pretrained(model_factory(), run / "final", dtype=torch.float16, max_shard_bytes=200_000)
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "trainer_state.pt").write_bytes(b"big optimizer state")
    (run / "metrics.jsonl").write_text('{"type": "summary"}\n')
    (run / "curves.png").write_bytes(b"png")
    out = tmp_path / "out"
    res = collect(run, out)
    assert res.returncode == 0, res.stdout + res.stderr
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert shards == sorted(p.name for p in (run / "final").glob("*.safetensors")) and len(shards) >= 2
    assert sorted(p.name for p in out.iterdir()) == sorted([*shards, "bundle.tar.gz"])
    with tarfile.open(out / "bundle.tar.gz") as tar:
        names = {n.removeprefix("./") for n in tar.getnames()}
    assert {"final/config.json", "final/model.safetensors.index.json", "metrics.jsonl", "curves.png"} <= names
    assert not any(n.endswith((".safetensors", ".pt")) or n.startswith("checkpoint") for n in names)


def test_collect_unfinished_session_takes_the_first_finished_arm(tmp_path: Path, model_factory) -> None:  # noqa: ANN001
    run = tmp_path / "session"
    save_pretrained(model_factory(), run / "scratch" / "final", dtype=torch.float16)
    (run / "ccd").mkdir(parents=True)  # still training when the session had to end
    res = collect(run, tmp_path / "out")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "collecting arm scratch" in res.stdout
    assert (run / "chosen.txt").read_text().startswith("scratch")
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_collect_refuses_more_than_the_tool_returns(tmp_path: Path, model_factory) -> None:  # noqa: ANN001
    run = tmp_path / "run"
    save_pretrained(model_factory(), run / "final", max_shard_bytes=20_000)  # float32, many small shards
    res = collect(run, tmp_path / "out")
    assert res.returncode == 1 and "at most 8 files" in res.stdout


def test_collect_without_weights_fails_clearly(tmp_path: Path) -> None:
    res = collect(tmp_path / "nothing", tmp_path / "out")
    assert res.returncode == 1 and "no final weights" in res.stdout


def test_weights_aside_and_back_leave_the_committed_files(tmp_path: Path) -> None:
    """Later sessions send the data with the bundled weights set aside, then the weights: a lossless round trip."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "recipes" / "gpu", repo / "recipes" / "gpu")
    w = repo / "str_distill" / "weights"
    w.mkdir(parents=True)
    (w / "siga-vit-s.model-00001-of-00002.safetensors").write_bytes(b"shard one")
    (w / "siga-vit-s.model.safetensors.index.json").write_text("{}")
    (repo / ".gitignore").write_text("/.carry/\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                              capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "weights")
    script = repo / "recipes" / "gpu" / "weights_aside.sh"
    out = subprocess.run(["bash", str(script), "aside"], capture_output=True, text=True, check=True).stdout
    assert "moved 2 files" in out and not any(w.iterdir())
    travel = subprocess.run(["bash", str(repo / "recipes" / "gpu" / "travel.sh")], capture_output=True, text=True)
    assert travel.returncode == 0 and "total" in travel.stdout
    out = subprocess.run(["bash", str(script), "back"], capture_output=True, text=True, check=True).stdout
    assert "identical to the committed ones" in out
    assert git("status", "--porcelain") == ""
