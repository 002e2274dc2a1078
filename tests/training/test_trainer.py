"""The trainer on CPU: a tiny model overfits rendered words, exact resume, objective plug-ins, the CLIs end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model, render_word
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from str_distill.data import FolderDataset, MixedBatchStream, SampleProcessor, build_sources, parse_specs
from str_distill.preprocess import Preprocessor
from str_distill.training import TrainConfig, Trainer

WORDS = ["hello", "world", "cat", "dog", "train", "text", "apple", "stop"]
TINY_ARGS = ["depth=2", "embed_dim=64", "num_heads=2", "dec_dim=64", "dec_heads=2", "dec_depth=1", "dropout=0.0",
             "drop_path=0.0"]


def make_words(root: Path, words: list[str] = WORDS, extra: str = "") -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, w in enumerate(words):
        Image.fromarray(render_word(w, size=(32, 128), seed=i)).save(root / "images" / f"{i}.png")
        lines.append(f"images/{i}.png\t{w}")
    (root / "labels.tsv").write_text("\n".join(lines) + "\n" + extra)
    return root


def stream_factory(model, root: Path, batch_size: int, augment: bool = False, uint8: bool = False):
    sources, _ = build_sources(parse_specs([str(root)]), model.tokenizer.charset, model.tokenizer.max_length,
                               augment_real=augment)
    pre = Preprocessor(model.config)
    proc = SampleProcessor(model.tokenizer, pre.to_uint8 if uint8 else pre)
    return lambda start: MixedBatchStream(sources, proc, batch_size, seed=0, start=start)


def quiet_config(**kw) -> TrainConfig:
    base = dict(log_every=10, val_every=0, save_every=0, save_minutes=0, progress="none", weight_decay=0.0)
    return TrainConfig(**{**base, **kw})


def test_tiny_model_overfits_rendered_words(tmp_path: Path) -> None:
    root = make_words(tmp_path / "words")
    model = make_tiny_model(seed=0, charset="36").train()
    cfg = quiet_config(batch_size=8, lr=3e-3, steps=120, warmup=0.1, label_smoothing=0.0)
    trainer = Trainer(model, cfg, stream_factory(model, root, 8), tmp_path / "run",
                      val_sets=[("words", FolderDataset(root))], device="cpu", log=lambda m: None)
    summary = trainer.fit()
    train = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in train if r["type"] == "train"]
    assert losses[-1] < 0.25 * losses[0]
    assert summary["val"]["total"]["accuracy"] >= 0.75  # at least 6 of 8 words read right
    from str_distill.predictor import Recognizer

    rec = Recognizer.from_pretrained(tmp_path / "run" / "final", device="cpu")
    texts = [p.text for p in rec.predict([root / "images" / f"{i}.png" for i in range(len(WORDS))])]
    assert sum(t == w for t, w in zip(texts, WORDS)) >= 6, texts


def test_uint8_batches_train_exactly_like_normalized_ones(tmp_path: Path) -> None:
    """`str-distill train` hands batches over as uint8 (normalized on the device): the same steps, bitwise."""
    root = make_words(tmp_path / "words")
    runs = {}
    for uint8 in (False, True):
        model = make_tiny_model(seed=0, charset="36").train()
        data = stream_factory(model, root, 8, augment=True, uint8=uint8)
        batch = next(iter(data(0)))
        assert batch.images.dtype == (torch.uint8 if uint8 else torch.float32)
        trainer = Trainer(model, quiet_config(batch_size=8, lr=1e-3, steps=3), data, tmp_path / f"run{uint8}",
                          device="cpu", log=lambda m: None)
        runs[uint8] = [float(trainer.train_step(b)["loss"]) for b, _ in zip(data(0), range(3))]
    assert runs[True] == runs[False]


class TapObjective:
    """A plug-in objective with a trainable parameter; records the taps it receives."""

    name = "probe"
    encoder_layers = (2, 1)

    def __init__(self) -> None:
        self.scale = nn.Linear(1, 1)
        self.seen: list[int] = []

    def modules(self) -> nn.Module:
        return self.scale

    def __call__(self, out, images, labels):
        assert len(out.taps) == 2 and len(labels) == images.shape[0]
        # taps in the order asked for: block 2 first, then block 1
        self.seen.append(int(torch.equal(out.taps[0], out.taps[1])))
        loss = self.scale(out.taps[0].float().mean().view(1, 1)).pow(2).mean() * 0.01
        return loss, {"value": float(loss.detach())}


def run_steps(tmp_path: Path, name: str, resume: bool = False, stop_at: int | None = None):
    root = tmp_path / "words"
    if not root.exists():
        make_words(root)
    torch.manual_seed(0)
    model = make_tiny_model(seed=0, charset="36", dropout=0.1, drop_path=0.1).train()
    cfg = quiet_config(batch_size=4, lr=1e-3, steps=6, ema=0.9, log_every=1)
    obj = TapObjective()
    stream = stream_factory(model, root, 4, augment=True)

    def data(start: int):  # stop_at: the data ends there, as if the run had been killed after a checkpoint
        s = stream(start)
        if stop_at is not None:
            s.num_batches = stop_at - start
        return s

    trainer = Trainer(model, cfg, data, tmp_path / name, objectives=[obj], device="cpu", log=lambda m: None)
    if resume:
        trainer.resume()
    return trainer, obj


def test_resume_continues_exactly(tmp_path: Path) -> None:
    full, _ = run_steps(tmp_path, "full")
    full.fit()
    part, _ = run_steps(tmp_path, "part", stop_at=3)
    part.fit()  # checkpoint at step 3
    resumed, obj = run_steps(tmp_path, "part", resume=True)
    assert resumed.step == 3
    resumed.fit()
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for a, b in zip(full.ema.module.parameters(), resumed.ema.module.parameters()):
        assert torch.equal(a, b)
    rec = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    rec2 = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rec if r["type"] == "train"][-1]
    last2 = [r for r in rec2 if r["type"] == "train"][-1]
    assert last["step"] == last2["step"] == 6 and last["ar"] == pytest.approx(last2["ar"], abs=0)
    # the objective got its taps in its own order, was optimized, and its state is in the checkpoint only
    assert obj.seen and not any(obj.seen)
    assert any(r.get("probe/value") is not None for r in rec2 if r["type"] == "train")
    saved = load_file(str(tmp_path / "part" / "checkpoint" / "objectives.safetensors"))
    assert set(saved) == {"probe.weight", "probe.bias"}
    final = load_file(str(tmp_path / "part" / "final" / "model.safetensors"))
    assert not any(k.startswith("probe") for k in final)


def cli(argv: list[str]) -> int:
    from str_distill.cli import data, eval, train

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    for m in (train, eval, data):
        m.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_train_and_eval_commands_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_words(tmp_path / "words", extra="images/missing.png\tghost\nimages/0.png\ttoo-long-label-for-36\n")
    out = tmp_path / "run"
    argv = ["train", "--model", "siga-vit-t", "--charset", "36", "--data", str(root), "--val-data", str(root),
            "--steps", "4", "--batch-size", "4", "--workers", "0", "--log-every", "2", "--val-every", "2",
            "--max-shard-mb", "0.2", "--save-dtype", "float16", "--progress", "log", "-o", str(out)]
    for a in TINY_ARGS:
        argv += ["--model-arg", a]
    assert cli(argv) == 0
    assert (out / "curves.png").is_file() and (out / "final" / "config.json").is_file()
    shards = sorted((out / "final").glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2 and all(s.stat().st_size <= 0.2 * 2**20 + 4096 for s in shards)
    bad = json.loads((out / "bad_samples.json").read_text())
    assert bad["by_source"]["words"]["missing_image"]["count"] >= 1
    assert bad["by_source"]["words"]["out_of_charset"]["count"] >= 1  # '-' is outside the 36 charset
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records][0] == "config" and records[-1]["type"] == "summary"
    assert any(r["type"] == "val" and r["step"] == 2 for r in records)
    printed = capsys.readouterr().out
    assert "bad samples (whole run)" in printed and "missing_image" in printed
    # resume with a larger budget continues from step 4
    assert cli([*argv[:argv.index("--steps")], "--steps", "6", *argv[argv.index("--steps") + 2:], "--resume"]) == 0
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 6
    # eval through the predictor, with a failures file and JSON
    fails, js = tmp_path / "fail.tsv", tmp_path / "res.json"
    assert cli(["eval", "--model", str(out / "final"), "--data", str(root), "--device", "cpu",
                "--failures", str(fails), "--json", str(js), "--decoding", "ctc"]) == 0
    table = capsys.readouterr().out
    assert "words" in table and "decoding ctc" in table
    res = json.loads(js.read_text())
    assert res["sets"][0]["count"] == 9 and res["sets"][0]["unreadable"] == 1  # the missing image
    assert fails.read_text().startswith("set\tpath\tlabel\tprediction\tconfidence\n")
    # a bad --init is a clear error, exit code 2
    assert cli(["train", "--init", str(tmp_path / "nope"), "--data", str(root), "--steps", "1"]) == 2


def test_custom_charset_finetune_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from str_distill.hub.serialization import save_pretrained

    src = save_pretrained(make_tiny_model(seed=0, charset="94"), tmp_path / "base")
    root = make_words(tmp_path / "digits", ["123", "4567", "89", "0"])
    out = tmp_path / "ft"
    assert cli(["train", "--init", str(src), "--charset", "0123456789", "--data", str(root), "--steps", "2",
                "--batch-size", "2", "--workers", "0", "--progress", "none", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "re-initialized ctc_head.classifier, decoder.head, decoder.tok_emb" in printed
    cfg = json.loads((out / "final" / "config.json").read_text())
    assert cfg["charset"] == "0123456789" and cfg["embed_dim"] == 64  # architecture taken from --init


def test_resume_in_the_middle_of_a_reused_batch(tmp_path: Path) -> None:
    root = make_words(tmp_path / "words")

    def run(name: str, steps: int, resume: bool = False) -> Trainer:
        model = make_tiny_model(seed=0, charset="36", dropout=0.1).train()
        cfg = quiet_config(batch_size=4, lr=1e-3, steps=steps, schedule="constant", warmup=0.0, reuse=2)
        t = Trainer(model, cfg, stream_factory(model, root, 4), tmp_path / name, device="cpu", log=lambda m: None)
        if resume:
            t.resume()
        t.fit()
        return t

    full = run("full", 5)
    run("part", 3)  # step 3 is the second use of batch 1
    resumed = run("part", 5, resume=True)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_keep_best_breaks_accuracy_ties_with_1_ned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While every word is still wrong, ``best/`` follows the validation whose texts are closest (1-NED); a higher
    word accuracy always wins, and a worse result never replaces the best."""
    import importlib

    from str_distill.training.metrics import WordMetrics

    ev = importlib.import_module("str_distill.training.evaluate")  # the module (the package exports the function)

    root = make_words(tmp_path / "words")
    model = make_tiny_model(charset="36").train()
    trainer = Trainer(model, quiet_config(batch_size=4, steps=1, keep_best=True), stream_factory(model, root, 4),
                      tmp_path / "run", val_sets=[("words", FolderDataset(root))], device="cpu", log=lambda m: None)
    readings = iter([("xxxxx", "hello"), ("hexxx", "hello"), ("hellx", "hello"), ("hello", "hello"),
                     ("hellx", "hello")])

    def fake_evaluate(*args, **kwargs):
        m = WordMetrics("36")
        m.update(*next(readings))
        return ev.EvalResult([ev.SetResult("words", m)], protocol="36")

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    steps = []
    for step in range(5):
        trainer.step = step
        trainer.validate()
        steps.append(trainer.best["step"])
    assert steps == [0, 1, 2, 3, 3]
    assert trainer.best["accuracy"] == 1.0 and (tmp_path / "run" / "best").is_dir()
