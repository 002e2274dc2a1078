"""Training the CTC family (PP-OCR) on a CPU: CTC-only loss, exact resume, teacher distillation that never enters
the saved student, freezing, charset changes that keep the shared rows, and the fine-tuning CLI's defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import render_word
from PIL import Image
from safetensors.torch import load_file

from str_distill.data import MixedBatchStream, SampleProcessor, build_sources, parse_specs
from str_distill.hub.serialization import save_pretrained
from str_distill.models import create_model
from str_distill.preprocess import Preprocessor
from str_distill.training import TrainConfig, Trainer
from str_distill.training.distill import CTCDistillation
from str_distill.training.warm_start import initialize_from

WORDS = ["hello", "world", "cat", "dog", "train", "text", "apple", "stop"]
TINY = dict(stem_channels=[8, 4], channels=[16, 24, 32], depths=[2, 2, 2], se_blocks=[[0], [1], [0]], neck_dim=16,
            neck_heads=2, neck_depth=1, charset="36", max_label_length=40, min_width=64, max_width=256)


def tiny(seed: int = 0, **kw: object):
    torch.manual_seed(seed)
    return create_model("ppocrv6-small", **{**TINY, **kw})


def make_words(root: Path) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, w in enumerate(WORDS):
        Image.fromarray(render_word(w, size=(32, 100), seed=i)).save(root / "images" / f"{i}.png")
        lines.append(f"images/{i}.png\t{w}")
    (root / "labels.tsv").write_text("\n".join(lines) + "\n")
    return root


def stream(model, root: Path, batch_size: int):
    sources, _ = build_sources(parse_specs([str(root)]), model.tokenizer.charset, model.tokenizer.max_length)
    pre = Preprocessor(model.config, fixed_width=64)
    proc = SampleProcessor(model.tokenizer, pre)
    return lambda start: MixedBatchStream(sources, proc, batch_size, seed=0, start=start)


def config(**kw) -> TrainConfig:
    base = dict(log_every=1, val_every=0, save_every=0, save_minutes=0, progress="none", weight_decay=0.0,
                precision="fp32")
    return TrainConfig(**{**base, **kw})


def test_ctc_only_loss_falls(tmp_path: Path) -> None:
    root = make_words(tmp_path / "w")
    model = tiny().train()
    trainer = Trainer(model, config(batch_size=8, lr=3e-3, steps=40, warmup=0.1), stream(model, root, 8),
                      tmp_path / "run", device="cpu", log=lambda m: None)
    assert trainer.config.loss_weights.passes == ("ar",) and trainer.config.loss_weights.ar == 0  # CTC only
    trainer.fit()
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if r["type"] == "train"]
    assert "ar" not in recs[1] and "ctc" in recs[1]
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def test_a_ctc_only_vit_trains_on_ctc_alone(tmp_path: Path) -> None:
    """The CPU student's shape (``dec_depth=0``): the trainer runs no decoder pass and the CTC loss falls."""
    from conftest import make_tiny_model

    root = make_words(tmp_path / "w")
    model = make_tiny_model(dec_depth=0, patch_size=(8, 8), charset="36").train()
    sources, _ = build_sources(parse_specs([str(root)]), model.tokenizer.charset, model.tokenizer.max_length)
    proc = SampleProcessor(model.tokenizer, Preprocessor(model.config))
    trainer = Trainer(model, config(batch_size=8, lr=3e-3, steps=40, warmup=0.1),
                      lambda start: MixedBatchStream(sources, proc, 8, seed=0, start=start), tmp_path / "run",
                      device="cpu", log=lambda m: None)
    assert trainer.config.loss_weights.ar == 0 and trainer.config.loss_weights.ctc > 0
    trainer.fit()
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if r["type"] == "train"]
    assert "ar" not in recs[1] and "ctc" in recs[1]
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def _run(tmp_path: Path, name: str, resume: bool = False, stop_at: int | None = None) -> list[float]:
    root = tmp_path / "w"
    if not root.exists():
        make_words(root)
    model = tiny().train()
    teacher = tiny(seed=1)
    make = stream(model, root, 4)

    def data(start: int):
        s = make(start)
        if stop_at is not None:
            s.num_batches = stop_at - start
        return s

    obj = CTCDistillation(teacher, model.tokenizer.charset, weight=0.5)
    trainer = Trainer(model, config(batch_size=4, lr=1e-3, steps=6, ema=0.9), data, tmp_path / name,
                      objectives=[obj], device="cpu", log=lambda m: None)
    if resume:
        trainer.resume()
    trainer.fit()
    recs = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in recs if r["type"] == "train"]


def test_resume_is_exact_and_the_teacher_is_not_saved(tmp_path: Path) -> None:
    full = _run(tmp_path, "full")
    _run(tmp_path, "cut", stop_at=3)
    resumed = _run(tmp_path, "cut", resume=True)
    assert resumed == full
    keys = load_file(str(tmp_path / "full" / "final" / "model.safetensors")).keys()
    assert not any(k.startswith("teacher") for k in keys)
    assert set(keys) == set(tiny().state_dict())


def test_distillation_pulls_towards_the_teacher_and_leaves_it_untouched() -> None:
    teacher, student = tiny(seed=1), tiny(seed=2)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    obj = CTCDistillation(teacher, student.tokenizer.charset, temperature=1.0)
    x = torch.randn(4, 3, 48, 64)
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, logs = obj(student.forward_train(x), x, ["a"] * 4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_teacher_frames_are_resampled_and_charsets_paired() -> None:
    teacher = tiny(seed=1, charset="94")  # another charset: only shared characters take part
    student = tiny(seed=2)
    obj = CTCDistillation(teacher, student.tokenizer.charset)
    assert len(obj.s_idx) == 37  # blank + 36 characters, all in the teacher's 94
    x = torch.randn(2, 3, 48, 128)
    out = student.forward_train(x[..., :64])  # 8 student frames against 16 teacher frames
    loss, _ = obj(out, x, ["a", "b"])
    assert torch.isfinite(loss) and loss.requires_grad


def test_freeze_keeps_the_backbone_fixed(tmp_path: Path) -> None:
    root = make_words(tmp_path / "w")
    model = tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, config(batch_size=4, lr=1e-2, steps=3, freeze=("backbone",), freeze_bn=True),
                      stream(model, root, 4), tmp_path / "run", device="cpu", log=lambda m: None)
    trainer.fit()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith(("stem.", "stages.")))
    assert all(torch.equal(before[k], after[k]) for k in after if "running_" in k)  # BN statistics fixed
    assert not torch.equal(before["head.weight"], after["head.weight"])
    with pytest.raises(ValueError, match="has parts"):
        Trainer(tiny(), config(batch_size=4, steps=1, freeze=("encoder",)), stream(model, root, 4),
                tmp_path / "r2", device="cpu", log=lambda m: None)


def test_charset_change_keeps_shared_rows_and_names_new_characters() -> None:
    src = tiny(seed=3)  # charset "36"
    model = create_model("ppocrv6-small", **{**TINY, "charset": "0123abc#"})
    msgs = initialize_from(model, src)
    assert any("new characters" in m and "'#'" in m for m in msgs), msgs
    old = {c: i + 1 for i, c in enumerate(src.tokenizer.charset)}
    for i, c in enumerate(model.tokenizer.charset):
        if c in old:
            assert torch.equal(model.head.weight[i + 1], src.head.weight[old[c]])
    assert torch.equal(model.head.weight[0], src.head.weight[0])


def test_cli_fine_tunes_with_defaults_and_reports_before_and_after(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    from str_distill.cli import main

    root = make_words(tmp_path / "w")
    save_pretrained(tiny(), tmp_path / "init")
    rc = main(["train", "--init", str(tmp_path / "init"), "--data", str(root), "--val-split", "0.25",
               "--teacher", "init", "--workers", "0", "--progress", "none", "--steps", "3",
               "-o", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "teacher distillation" in out and "batch 32" in out
    assert "validation word accuracy: before" in out
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_a_vit_student_learns_from_a_ppocr_teacher_through_the_input_adapter() -> None:
    from conftest import make_tiny_model

    from str_distill.training.distill import input_adapter

    student = make_tiny_model(charset="36").train()  # 32x128 RGB, 64 CTC frames
    teacher = tiny(seed=1)  # 48 x W BGR, W / 8 frames
    adapt = input_adapter(student.config, teacher.config)
    assert adapt is not None and input_adapter(teacher.config, teacher.config) is None
    x = torch.rand(2, 3, 32, 128) * 2 - 1
    y = adapt(x)
    assert y.shape == (2, 3, 48, 192)  # height 48, aspect kept (128 * 48 / 32), already a multiple of 8
    rgb = torch.tensor([-0.5, 0.0, 0.5]).view(1, 3, 1, 1).expand(1, 3, 32, 128)  # constant R, G, B planes
    torch.testing.assert_close(adapt(rgb)[0, :, 10, 10], torch.tensor([0.5, 0.0, -0.5]))  # BGR for the teacher
    obj = CTCDistillation(teacher, student.tokenizer.charset, preprocess=adapt)
    out = student.forward_train(x, student.tokenizer.encode(["ab", "cd"]), passes=("ar",))
    loss, logs = obj(out, x, ["ab", "cd"])
    loss.backward()
    assert torch.isfinite(loss) and student.ctc_head.classifier.weight.grad is not None


def test_a_padding_teacher_keeps_only_the_frames_over_the_image() -> None:
    """A 32x128 student batch becomes a 48x192 image padded to the teacher's minimum width 320: only the 24
    teacher frames over the image may be aligned with the student's frames, not the 16 over the padding."""
    from types import SimpleNamespace

    from conftest import make_tiny_model

    from str_distill.training.distill import input_adapter

    class ColumnTeacher(torch.nn.Module):  # class 1 where a frame's pixels are bright, class 2 where dark
        def __init__(self) -> None:
            super().__init__()
            self.config = tiny(min_width=320, max_width=640).config
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor, decoding: str = "ctc") -> SimpleNamespace:
            frames = x.mean(dim=(1, 2)).unfold(-1, 8, 8).mean(-1)  # (B, W / 8)
            logits = torch.zeros(*frames.shape, 37)
            logits[..., 1], logits[..., 2] = 10 * frames, -10 * frames
            return SimpleNamespace(logits=logits)

    student = make_tiny_model(charset="36")
    teacher = ColumnTeacher()
    adapt = input_adapter(student.config, teacher.config)
    assert adapt is not None
    x = torch.ones(1, 3, 32, 128)
    x[..., 64:] = -1  # left half white, right half black
    assert adapt(x).shape[-1] == 320 and adapt.content_width(32, 128) == 192
    obj = CTCDistillation(teacher, student.tokenizer.charset, preprocess=adapt)
    ids = obj.teacher_logits(x).argmax(-1)[0]
    assert ids.tolist() == [1] * 12 + [2] * 12  # padding frames (class 0: ties) are gone


def test_feature_distillation_pulls_student_layers_towards_the_teacher_frames() -> None:
    """CLIP-OCR-style feature matching: the teacher runs once per batch for both objectives, only the student and
    the adapters get gradients, and a few steps on one batch lower the loss."""
    from conftest import make_tiny_model

    from str_distill.training.distill import FeatureDistillation, TeacherRunner, input_adapter

    student = make_tiny_model(charset="36").train()
    teacher = tiny(seed=1, min_width=320, max_width=640)
    calls = []
    runner = TeacherRunner(teacher, input_adapter(student.config, teacher.config))
    real_features = teacher.features
    teacher.features = lambda x: (calls.append(1), real_features(x))[1]  # type: ignore[method-assign]
    depth = student.config.depth
    feat = FeatureDistillation(runner, student.config, (1, depth), weight=1.0)
    ctc = CTCDistillation(teacher, student.tokenizer.charset, runner=runner)
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 128) * 2 - 1
    labels = ["ab", "cd", "ef", "gh"]
    params = list(student.parameters()) + list(feat.modules().parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(30):
        out = student.forward_train(x, student.tokenizer.encode(labels), passes=(), return_layers=(1, depth))
        loss = feat(out, x, labels)[0] + 0 * ctc(out, x, labels)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert len(calls) == 1  # one teacher pass for the unchanged batch, shared by both objectives
    assert all(p.grad is None for p in teacher.parameters())
    assert feat.modules().proj[0][0].weight.grad is not None
    assert losses[-1] < 0.7 * losses[0], losses


def test_feature_distillation_refuses_what_it_cannot_match() -> None:
    from conftest import make_tiny_model

    from str_distill.training.distill import FeatureDistillation, TeacherRunner

    student, teacher = make_tiny_model(charset="36"), tiny(seed=1)
    with pytest.raises(ValueError, match="layers must be in 1.."):
        FeatureDistillation(TeacherRunner(teacher), student.config, (student.config.depth + 1,))
    with pytest.raises(ValueError, match="needs a ViT student"):
        FeatureDistillation(TeacherRunner(teacher), tiny().config, (1,))
    with pytest.raises(ValueError, match="per-frame features"):
        FeatureDistillation(TeacherRunner(make_tiny_model(charset="36")), student.config, (1,))


def test_cli_trains_a_vit_student_on_a_ppocr_teachers_features_only(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    from str_distill.cli import main

    root = make_words(tmp_path / "w")
    save_pretrained(tiny(seed=1), tmp_path / "teacher")
    args = ["train", "--model", "siga-vit-t", "--model-arg", "embed_dim=32", "--model-arg", "depth=2",
            "--model-arg", "num_heads=2", "--model-arg", "dec_dim=32", "--model-arg", "dec_heads=2",
            "--model-arg", "dec_depth=1", "--charset", "36", "--data", str(root), "--batch-size", "4",
            "--teacher", str(tmp_path / "teacher"), "--workers", "0", "--progress", "none", "--steps", "2",
            "--val-every", "0", "--log-every", "1"]
    assert main([*args, "--teacher-weight", "0", "--teacher-features", "1,2", "-o", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "teacher feature distillation: student blocks [1, 2]" in out and "teacher distillation:" not in out
    assert "teacher_feat/nce" in (tmp_path / "run" / "metrics.jsonl").read_text()
    weights = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert not any(k.startswith(("teacher", "heads", "proj")) for k in weights)
    assert main([*args, "--teacher-weight", "0", "-o", str(tmp_path / "run2")]) != 0
    assert "teaches nothing" in capsys.readouterr().err
