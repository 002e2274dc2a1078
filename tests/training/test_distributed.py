"""Multi-process training: data shards, the torchrun entry points (2 CPU processes, gloo), sync and exact resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model
from safetensors.torch import load_file
from test_trainer import TINY_ARGS, make_words

from str_distill.data import MixedBatchStream, SampleProcessor, build_sources, parse_specs
from str_distill.hub.serialization import save_pretrained
from str_distill.preprocess import Preprocessor
from str_distill.training.distributed import DistContext, init_from_env, launched, local_batch_size

WORKER = Path(__file__).with_name("ddp_worker.py")
needs_gloo = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available in this build")


def stream(root: Path, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 3) -> MixedBatchStream:
    model = make_tiny_model(charset="36")
    sources, _ = build_sources(parse_specs([str(root)]), "0123456789abcdefghijklmnopqrstuvwxyz", 25,
                               augment_real=False)
    proc = SampleProcessor(model.tokenizer, Preprocessor(model.config).to_uint8)
    return MixedBatchStream(sources, proc, batch_size, seed=seed, rank=rank, world_size=world_size)


def test_shards_together_are_the_single_process_batches(tmp_path: Path) -> None:
    """At every step the processes read disjoint samples whose union is one process's batch of the global size."""
    root = make_words(tmp_path / "words")  # 8 samples: 3 steps of 4 cross an epoch boundary
    one = stream(root, 4)
    shards = [stream(root, 2, rank=r, world_size=2) for r in range(2)]
    for b in range(3):
        whole = one.make_batch(b)
        parts = [s.make_batch(b) for s in shards]
        assert [p.index for p in parts] == [b, b]  # the step, as the trainer counts it
        assert parts[0].labels + parts[1].labels == whole.labels
        assert torch.equal(torch.cat([p.images for p in parts]), whole.images)
    epoch = [lab for b in range(2) for s in shards for lab in s.make_batch(b).labels]
    assert sorted(epoch) == sorted(["hello", "world", "cat", "dog", "train", "text", "apple", "stop"])
    with pytest.raises(ValueError, match="rank"):
        stream(root, 2, rank=2, world_size=2)


def test_global_batch_is_divided_among_the_processes() -> None:
    assert local_batch_size(64, 4) == 16 and local_batch_size(7, 1) == 7
    with pytest.raises(ValueError, match="multiple of the 3 processes"):
        local_batch_size(64, 3)


def test_without_torchrun_nothing_is_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert not launched()
    assert init_from_env("cpu") == (DistContext(), "cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert not launched()  # torchrun --nproc_per_node 1: one process, the single-process path
    ctx = DistContext()
    x = torch.tensor([1.0, float("nan")])
    assert ctx.all_mean(x) is x and ctx.gather("a") == ["a"] and ctx.broadcast(3) == 3 and ctx.is_main
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched()


# --------------------------------------------------------------------------------------------- two processes
def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    tests = str(Path(__file__).resolve().parents[1])
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([tests, env.get("PYTHONPATH", "")]))
    return env


def _torchrun(args: list[str], cwd: Path, processes: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@needs_gloo
def test_two_processes_stay_in_sync_and_match_one_process_with_the_global_batch(tmp_path: Path) -> None:
    """2 gloo processes x 4 samples train like 1 process x 8 samples: the same samples at every step, gradients
    averaged by DDP (CTC is a per-sample mean, so the averaged gradient is the global batch's)."""
    words = make_words(tmp_path / "words")
    argv = ["train", "--model", "siga-vit-t", "--charset", "36", *[a for x in TINY_ARGS for a in ("--model-arg", x)],
            "--data", str(words), "--augment", "none", "--workers", "0", "--steps", "3", "--batch-size", "8",
            "--lr", "1e-3", "--loss-weights", "ar=0,parallel=0,cloze=0,ctc=1", "--precision", "fp32",
            "--val-every", "0", "--save-every", "0", "--save-minutes", "0", "--progress", "none", "--device", "cpu",
            "--log-every", "1"]
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    import ddp_worker

    assert ddp_worker.main([str(tmp_path / "one"), *argv, "-o", str(tmp_path / "one/run")]) == 0  # in this process
    _torchrun([str(WORKER), str(tmp_path / "two"), *argv, "-o", str(tmp_path / "two/run")], tmp_path)
    ranks = [torch.load(tmp_path / "two" / f"rank{r}.pt") for r in range(2)]
    single = torch.load(tmp_path / "one" / "rank0.pt")
    assert set(ranks[0]) == set(single)
    for k in single:
        assert torch.equal(ranks[0][k], ranks[1][k]), f"the replicas diverged at {k}"
    # The same steps up to float rounding (measured: 6e-6 of the update). AdamW divides by the gradient's own
    # magnitude, so a parameter whose gradient is rounding noise may move differently: compare the whole update.
    start = make_tiny_model(seed=0, charset="36").state_dict()
    diff = sum(float((ranks[0][k] - single[k]).double().norm() ** 2) for k in single) ** 0.5
    moved = sum(float((single[k] - start[k]).double().norm() ** 2) for k in single) ** 0.5
    assert moved > 0.1 and diff < 1e-3 * moved, (diff, moved)  # shards read wrong: 0.25 of the update
    losses = [[r["loss"] for r in _records(tmp_path / d / "run") if r["type"] == "train"] for d in ("one", "two")]
    assert len(losses[1]) == 3 and losses[1] == pytest.approx(losses[0], rel=1e-4)
    config = [r for r in _records(tmp_path / "two" / "run") if r["type"] == "config"]
    assert len(config) == 1 and config[0]["world_size"] == 2 and config[0]["train"]["batch_size"] == 8


@pytest.mark.slow
@needs_gloo
def test_torchrun_train_with_a_teacher_resumes_exactly(tmp_path: Path) -> None:
    """`torchrun -m str_distill train`: process 0 alone writes; 2 + 2 resumed steps = 4 steps, bit for bit (dropout
    and CPU augmentation on, so every process's random state must come back)."""
    words = make_words(tmp_path / "words")
    init = save_pretrained(make_tiny_model(charset="36"), tmp_path / "init")
    argv = ["-m", "str_distill", "train", "--init", str(init), "--model-arg", "dropout=0.1", "--teacher", "init",
            "--data", str(words), "--augment", "all", "--workers", "0", "--batch-size", "4", "--schedule", "constant",
            "--warmup", "0", "--val-every", "0", "--save-every", "0", "--save-minutes", "0", "--progress", "log",
            "--device", "cpu", "--log-every", "1"]
    full = _torchrun([*argv, "--steps", "4", "-o", "full"], tmp_path)
    _torchrun([*argv, "--steps", "2", "-o", "part"], tmp_path)
    _torchrun([*argv, "--steps", "4", "-o", "part", "--resume"], tmp_path)
    a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full.stdout.count('"step": 4') == 1 and full.stdout.count("training siga-vit-t") == 1  # rank 0 prints
    assert "2 processes of 2 samples" in full.stdout and "teacher distillation" in full.stdout
    rec = _records(tmp_path / "full")
    assert [r["step"] for r in rec if r["type"] == "train"] == [1, 2, 3, 4]
    assert all(r["teacher/frame_agreement"] >= 0 for r in rec if r["type"] == "train")
    assert json.loads((tmp_path / "full" / "bad_samples.json").read_text())["seen"] == {"words": 16}  # both shards
    state = torch.load(tmp_path / "part" / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 4 and len(state["rng_ranks"]) == 2


@pytest.mark.slow
@needs_gloo
def test_torchrun_ccd_pretraining(tmp_path: Path) -> None:
    words = make_words(tmp_path / "words")
    tiny = ["depth=2", "embed_dim=32", "num_heads=2", "dec_dim=32", "dec_heads=2", "dec_depth=1"]
    res = _torchrun(["-m", "str_distill", "pretrain", "--data", str(words), "--model", "siga-vit-t",
                     *[a for x in tiny for a in ("--model-arg", x)], "--out-dim", "64", "--steps", "3",
                     "--batch-size", "4", "--workers", "0", "--log-every", "1", "--device", "cpu", "-o", "ccd"],
                    tmp_path)
    assert res.stdout.count("pretrained 3 steps (12 images") == 1
    log = [json.loads(x) for x in (tmp_path / "ccd" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["loss"] > 0 for r in log)
    state = torch.load(tmp_path / "ccd" / "ccd_state.pt", weights_only=True)
    assert state["step"] == 3 and torch.isfinite(state["model"]["center"]).all() and state["model"]["center"].any()
