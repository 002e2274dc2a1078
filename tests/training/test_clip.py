"""CLIP-OCR distillation: char-per-token spelling, the CLIP teacher and its state-dict adapters, the objective."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from str_distill import create_model
from str_distill.hub.serialization import save_pretrained
from str_distill.training.clip import (
    CLIPConfig,
    CLIPDistillObjective,
    CLIPModel,
    build_objective,
    bytes_to_unicode,
    char_token_id,
    clip_image_size,
    lcl_loss,
    load_clip,
    proportional_layers,
    reversed_text_layers,
    spell,
    unspellable_chars,
)

torch.set_num_threads(1)

TINY = dict(
    embed_dim=32,
    vision_width=128,
    vision_layers=4,
    vision_heads=2,
    vision_mlp=256,
    vision_patch=16,
    vision_grid=8,
    text_width=128,
    text_layers=4,
    text_heads=2,
    text_mlp=256,
    context_length=32,
    vocab_size=514,
)
LABELS = ["hello", "world", "a", "the", "then", "", "hello", "x1"]


def tiny_clip(seed: int = 0, **overrides: object) -> CLIPModel:
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(**{**TINY, **overrides}))  # type: ignore[arg-type]
    with torch.no_grad():  # make every tensor non-trivial (LayerNorms start at 1/0, layer scale at 1)
        for name, p in model.named_parameters():
            if "ln" in name or "gamma" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval().requires_grad_(False)


def tiny_student(**overrides: object):
    kw = dict(embed_dim=64, depth=4, num_heads=2, dec_dim=64, dec_depth=3, dec_heads=2, charset="36")
    kw.update(dropout=0.0, drop_path=0.0, **overrides)
    return create_model("siga-vit-t", **kw)


def clip_outputs(model: CLIPModel) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 128, 128, generator=g)  # the full 8x8 grid
    crops = torch.randn(2, 3, 32, 128, generator=g)  # the 2x8 crop grid
    ids, eot = spell(["ab", "xyz9"], model.config.vocab_size)
    e1, t1 = model.encode_image(images, (1, 3))
    e2, _ = model.encode_image(crops)
    e3, t3 = model.encode_text(ids, eot, (2, 4))
    return [e1, *t1, e2, e3, *t3]


# ------------------------------------------------------------------------------------------------ text
def test_bytes_to_unicode_is_a_bijection_in_vocab_order():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    order = list(table)
    assert order[0] == ord("!") and order[93] == ord("~")  # printable ASCII first
    assert table[ord(" ")] == chr(256 + 32)  # space is the 33rd non-printable byte


def test_char_token_ids_match_clip_vocabulary():
    # ids CLIP's own tokenizer gives for the one-letter words "a", "!" and "0"
    assert char_token_id("a") == 320
    assert char_token_id("!") == 256
    assert char_token_id("0") == 271
    assert char_token_id("A") == 320  # lower-cased like CLIP's tokenizer
    assert char_token_id("A", lowercase=False) == 256 + ord("A") - ord("!")
    ids, eot = spell(["ab", ""])
    assert ids.tolist() == [[49406, 320, 321, 49407], [49406, 49407, 0, 0]]
    assert eot.tolist() == [3, 1]


def test_unspellable_characters_are_named():
    assert unspellable_chars("ab cé\t") == " é\t"
    with pytest.raises(ValueError, match="é"):
        spell(["café"])
    with pytest.raises(ValueError, match="length"):
        spell(["abcd"], length=4)


# ------------------------------------------------------------------------------------------------ layer choice
def test_layer_pairing_follows_the_method():
    assert proportional_layers(12) == (3, 6, 9)
    assert proportional_layers(4) == (1, 2, 3)
    # CLIP-OCR: decoder layers 1-3 of 4 <-> text blocks 9/6/3; the last one (the classifier input) is left out
    assert reversed_text_layers(12, 4) == ((1, 2, 3), (9, 6, 3))
    assert reversed_text_layers(12, 3) == ((1, 2), (8, 4))  # the same proportions for our 3-layer decoders
    assert reversed_text_layers(12, 1) == ((1,), (6,))  # a one-layer decoder keeps its only layer
    assert reversed_text_layers(12, 3, skip_last=False) == ((1, 2, 3), (9, 6, 3))
    assert reversed_text_layers(4, 2, skip_last=False) == ((1, 2), (3, 2))
    assert clip_image_size((32, 128), 16) == (32, 128)
    assert clip_image_size((32, 128), 14) == (28, 126)
    with pytest.raises(ValueError):
        proportional_layers(2)


def test_position_embedding_crop_and_interpolation():
    visual = tiny_clip().visual
    pos = visual.positional_embedding
    crop = visual.position_embedding(2, 8)
    g = visual.grid
    expected = torch.cat([pos[:1], pos[1 : 1 + 8], pos[1 + g : 1 + g + 8]])
    assert torch.equal(crop, expected)
    assert visual.position_embedding(1, 12).shape == (1 + 12, 128)  # wider than the trained grid: interpolated


# ------------------------------------------------------------------------------------------------ loss
def test_lcl_loss_terms():
    torch.manual_seed(0)
    t = torch.randn(6, 16)
    same, c, g = lcl_loss(3 * t, t)  # scale does not matter: both sides are L2-normalized
    assert float(g) == pytest.approx(0.0, abs=1e-6) and float(same) == pytest.approx(float(c), abs=1e-6)
    other, c2, g2 = lcl_loss(torch.randn(6, 16), t)
    assert float(c2) > float(c) and float(g2) > 0.01
    tn = torch.nn.functional.normalize(t, dim=-1)
    s = torch.nn.functional.normalize(torch.randn(6, 16), dim=-1)
    _, c3, g3 = lcl_loss(s, tn, tau=0.5, contrast_weight=1.0, gram_weight=1.0)
    expected_c = torch.nn.functional.cross_entropy(s @ tn.t() / 0.5, torch.arange(6))
    torch.testing.assert_close(c3, expected_c)
    torch.testing.assert_close(g3, (s @ s.t() - tn @ tn.t()).abs().mean())


# ------------------------------------------------------------------------------------------------ state-dict layouts
def _to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI layout -> Hugging Face CLIPModel names (written independently of the loader)."""
    out = {}
    for k, v in state.items():
        if k.startswith("visual.transformer.resblocks.") or k.startswith("transformer.resblocks."):
            tower = "vision_model" if k.startswith("visual.") else "text_model"
            rest = k.split("resblocks.", 1)[1]
            n, name = rest.split(".", 1)
            base = f"{tower}.encoder.layers.{n}."
            if name.startswith("attn.in_proj_"):
                kind = name.rsplit("_", 1)[1]
                for part, chunk in zip("qkv", v.chunk(3, 0)):
                    out[f"{base}self_attn.{part}_proj.{kind}"] = chunk.clone()
                continue
            for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1")):
                name = name.replace(a, b)
            name = name.replace("mlp.c_proj", "mlp.fc2").replace("attn.out_proj", "self_attn.out_proj")
            out[base + name] = v
            continue
        fixed = {
            "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
            "visual.class_embedding": "vision_model.embeddings.class_embedding",
            "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
            "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
            "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
            "visual.ln_post.weight": "vision_model.post_layernorm.weight",
            "visual.ln_post.bias": "vision_model.post_layernorm.bias",
            "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
            "positional_embedding": "text_model.embeddings.position_embedding.weight",
            "ln_final.weight": "text_model.final_layer_norm.weight",
            "ln_final.bias": "text_model.final_layer_norm.bias",
            "logit_scale": "logit_scale",
        }
        if k in fixed:
            out[fixed[k]] = v
        elif k == "visual.proj":
            out["visual_projection.weight"] = v.t().contiguous()
        elif k == "text_projection":
            out["text_projection.weight"] = v.t().contiguous()
        else:
            raise AssertionError(k)
    out["text_model.embeddings.position_ids"] = torch.arange(TINY["context_length"])[None]
    return out


def _save(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def test_openai_layout_round_trip(tmp_path: Path):
    ref = tiny_clip()
    state = dict(ref.state_dict())
    state["input_resolution"] = torch.tensor(128)  # scalars present in OpenAI's checkpoints
    state["context_length"] = torch.tensor(32)
    state = {k: v.half() if k == "token_embedding.weight" else v for k, v in state.items()}  # fp16 is accepted
    ref.token_embedding.weight.data = ref.token_embedding.weight.data.half().float()
    loaded, info = load_clip(_save(state, tmp_path / "openai.safetensors"))
    assert info.layout == "openai" and loaded.config == ref.config
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for a, b in zip(clip_outputs(ref), clip_outputs(loaded)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_openclip_layout_with_prefix_layer_scale_and_gelu(tmp_path: Path):
    ref = tiny_clip(seed=1, activation="gelu", layer_scale=True)
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}
    state["module.attn_mask"] = torch.zeros(32, 32)  # a buffer older OpenCLIP versions saved
    file = _save(state, tmp_path / "openclip.safetensors", {"clip_activation": "gelu"})
    loaded, info = load_clip(file)
    assert info.config.activation == "gelu" and info.config.layer_scale
    for a, b in zip(clip_outputs(ref), clip_outputs(loaded)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # without metadata the activation comes from --clip-arch; the default (OpenAI QuickGELU) gives other outputs
    bare = _save(state, tmp_path / "bare.safetensors")
    same, _ = load_clip(bare, arch="openclip")
    torch.testing.assert_close(clip_outputs(same)[0], clip_outputs(ref)[0], rtol=0, atol=0)
    wrong, _ = load_clip(bare)
    assert not torch.allclose(clip_outputs(wrong)[0], clip_outputs(ref)[0])


def test_hf_layout_round_trip(tmp_path: Path):
    ref = tiny_clip(seed=2)
    loaded, info = load_clip(_save(_to_hf(ref.state_dict()), tmp_path / "model.safetensors"))
    assert info.layout == "hf"
    for a, b in zip(clip_outputs(ref), clip_outputs(loaded)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_heads_from_metadata_and_bad_files(tmp_path: Path):
    ref = tiny_clip()
    state = ref.state_dict()
    loaded, _ = load_clip(_save(state, tmp_path / "h.safetensors", {"clip_vision_heads": "8", "clip_text_heads": "4"}))
    assert (loaded.config.vision_heads, loaded.config.text_heads) == (8, 4)
    explicit, _ = load_clip(tmp_path / "h.safetensors", vision_heads=4)
    assert explicit.config.vision_heads == 4
    assert load_clip(_save(state, tmp_path / "d.safetensors"))[0].config.vision_heads == 2  # width 128 // 64
    torch.save(state, tmp_path / "clip.pt")
    with pytest.raises(ValueError, match="safetensors"):
        load_clip(tmp_path / "clip.pt")
    with pytest.raises(FileNotFoundError):
        load_clip(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="not a CLIP ViT"):
        load_clip(_save({"foo.weight": torch.zeros(2)}, tmp_path / "other.safetensors"))
    broken = {k: v for k, v in state.items() if "resblocks.1." not in k or k.startswith("visual.")}
    with pytest.raises(ValueError, match="numbered"):
        load_clip(_save(broken, tmp_path / "broken.safetensors"))


# ------------------------------------------------------------------------------------------------ objective
def _batch(model, labels=LABELS, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(len(labels), 3, 32, 128, generator=g).clamp(-1, 1)
    return images, model.tokenizer.encode(labels)


def test_objective_shapes_and_gradients():
    teacher = tiny_clip()
    model = tiny_student()
    keys_before = set(model.state_dict())
    obj = CLIPDistillObjective(model, teacher)
    assert obj.name == "clip" and obj.encoder_layers == (1, 2, 3)
    assert obj.decoder_layers == (1, 2) and obj.text_layers == (3, 2)  # all but the last of 3 decoder layers
    assert obj.clip_grid == (2, 8)
    assert obj.heads.vis_mix[0].shape == (17, 8 * 16)
    images, targets = _batch(model)
    out = model.forward_train(images, targets, passes=("ar",), return_layers=obj.encoder_layers)
    feats = obj.teacher_features(images, LABELS)
    assert [f.shape for f in feats.visual] == [(8, 17, 128)] * 3
    assert [f.shape for f in feats.text] == [(8, 6, 128)] * 2  # longest label 5 -> 5 chars + EOT
    assert feats.embedding.shape == (8, 32)
    loss, logs = obj(out, images, LABELS)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(logs) == {"total", "visual", "word", "text", "nce", "gram"}
    assert logs["total"] == pytest.approx(logs["visual"] + logs["word"] + logs["text"], rel=1e-5)
    assert logs["total"] == pytest.approx(logs["nce"] + logs["gram"], rel=1e-5)
    loss.backward()
    for name in ("encoder.patch_embed.weight", "encoder.blocks.0.attn.qkv.weight", "decoder.layers.0.mlp.0.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in obj.modules().parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    # the teacher is not registered anywhere the trainer saves or optimizes
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in obj.modules().parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}
    assert set(model.state_dict()) == keys_before


def test_saved_recognizer_has_no_clip_inside(tmp_path: Path):
    model = tiny_student()
    obj = CLIPDistillObjective(model, tiny_clip())
    images, targets = _batch(model)
    out = model.forward_train(images, targets, passes=("ar",), return_layers=obj.encoder_layers)
    obj(out, images, LABELS)[0].backward()
    saved = load_file(str(save_pretrained(model, tmp_path / "rec") / "model.safetensors"))
    assert set(saved) == set(model.state_dict())
    assert not any(k.startswith(("visual.", "transformer.", "token_embedding", "vis_", "text_", "word")) for k in saved)


def test_text_targets_align_with_characters_and_ignore_padding():
    teacher = tiny_clip()
    obj = CLIPDistillObjective(tiny_student(), teacher)
    images = torch.zeros(2, 3, 32, 128)
    batched = obj.teacher_features(images, ["ab", "abcdef"])
    alone = obj.teacher_features(images[:1], ["ab"])
    for x, y in zip(batched.text, alone.text):
        torch.testing.assert_close(x[0, :3], y[0, :3], rtol=0, atol=1e-5)  # 'a', 'b', EOT: padding has no effect
    torch.testing.assert_close(batched.embedding[0], alone.embedding[0], rtol=0, atol=1e-5)
    # position 0 after dropping SOT holds 'a', the character decoder position 0 predicts
    ids, eot = spell(["ab"], teacher.config.vocab_size)
    _, taps = teacher.encode_text(ids, eot, obj.text_layers)
    torch.testing.assert_close(alone.text[0][0, 0], taps[0][0, 1], rtol=0, atol=1e-6)


def _word_images(model, labels=LABELS) -> torch.Tensor:
    """Rendered words (dark on light), normalized with the recognizer's mean/std."""
    from conftest import render_word

    imgs = torch.stack([torch.from_numpy(render_word(w or " ", size=(32, 128), seed=i)) for i, w in enumerate(labels)])
    x = imgs.permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(model.config.mean).view(1, 3, 1, 1), torch.tensor(model.config.std).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.slow
def test_distillation_trains_the_student_and_leaves_the_teacher_bit_identical():
    """The distillation loss alone (no recognition loss): it falls, its gradients reach the recognizer's encoder and
    the distilled decoder layers (not the last one), the student moves and the frozen teacher does not change."""
    torch.manual_seed(0)
    model = tiny_student().train()
    teacher = tiny_clip()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in model.state_dict().items()}
    obj = CLIPDistillObjective(model, teacher)
    opt = torch.optim.Adam(list(model.parameters()) + list(obj.modules().parameters()), lr=1e-3)
    images, targets = _word_images(model), model.tokenizer.encode(LABELS)
    losses = []
    for step in range(25):
        out = model.forward_train(images, targets, passes=("ar",), return_layers=obj.encoder_layers)
        loss, _ = obj(out, images, LABELS)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            grads = {n: p.grad for n, p in model.named_parameters()}
            reached = [
                "encoder.patch_embed.weight",  # every encoder block: the word branch reads the final tokens
                "encoder.blocks.0.attn.qkv.weight",
                "encoder.blocks.3.mlp.3.weight",
                "decoder.pos_queries",
                "decoder.layers.0.cross_attn.q.weight",  # the distilled decoder layers 1 and 2 ...
                "decoder.layers.1.mlp.0.weight",
                "decoder.norm.weight",  # ... read through the decoder's final LayerNorm
            ]
            for name in reached:
                assert grads[name] is not None and float(grads[name].abs().sum()) > 0, name
            # the last decoder layer feeds the classifier and is not distilled (CLIP-OCR): no gradient reaches it
            last = [n for n in grads if n.startswith("decoder.layers.2.") or n.startswith("decoder.head.")]
            assert last and all(grads[n] is None for n in last), last
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses
    after = model.state_dict()
    for name in ("encoder.blocks.0.attn.qkv.weight", "decoder.layers.0.mlp.0.weight", "decoder.norm.weight"):
        moved = float((after[name] - student_before[name]).norm() / student_before[name].norm())
        assert moved > 1e-3, (name, moved)
    assert torch.equal(after["decoder.layers.2.mlp.0.weight"], student_before["decoder.layers.2.mlp.0.weight"])
    # the teacher: bit-identical, still frozen and in eval mode, never given a gradient
    assert teacher_before.keys() == teacher.state_dict().keys()
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training and all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_decoder_pairs_match_clip_ocr_and_read_the_final_norm():
    """CLIP-OCR's 4-layer decoder: layers 1/2/3 meet text blocks 9/6/3 through the decoder's final LayerNorm."""
    model = tiny_student(dec_depth=4)
    teacher = tiny_clip(text_layers=12)
    obj = CLIPDistillObjective(model, teacher)
    assert (obj.decoder_layers, obj.text_layers) == ((1, 2, 3), (9, 6, 3))
    assert obj.decoder_norm is model.decoder.norm  # shared with the classifier, not a copy
    raw = CLIPDistillObjective(model, teacher, decoder_norm=False)
    raw.heads.load_state_dict(obj.heads.state_dict())
    images, targets = _batch(model)
    with torch.no_grad():
        out = model.forward_train(images, targets, passes=("ar",), return_layers=obj.encoder_layers)
        base, raw_base = obj(out, images, LABELS)[1]["text"], raw(out, images, LABELS)[1]["text"]
        assert base != pytest.approx(raw_base, rel=1e-4)
        model.decoder.norm.weight.mul_(torch.linspace(0.2, 3.0, model.config.dec_dim))  # what the classifier sees
        assert obj(out, images, LABELS)[1]["text"] != pytest.approx(base, rel=1e-4)
        assert raw(out, images, LABELS)[1]["text"] == pytest.approx(raw_base, rel=1e-6)
    every = CLIPDistillObjective(tiny_student(dec_depth=4), teacher, decoder_layers="all")
    assert every.decoder_layers == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="all-but-last"):
        CLIPDistillObjective(model, teacher, decoder_layers="last")


def test_fixed_length_targets_give_the_same_loss():
    """`--compile` pads the decoder targets to max_length + 2: the objective must give the loss of the short ones."""
    from str_distill.training.losses import RecognitionLoss

    model = tiny_student()
    obj = CLIPDistillObjective(model, tiny_clip())
    loss_fn = RecognitionLoss(model.tokenizer)
    short = loss_fn.targets(LABELS, "cpu")[0]
    padded = loss_fn.targets(LABELS, "cpu", fixed_length=True)[0]
    assert padded.shape[1] == model.config.max_label_length + 2 > short.shape[1] == 7
    images = _word_images(model)
    with torch.no_grad():
        outs = [
            model.forward_train(images, t, passes=("ar",), return_layers=obj.encoder_layers) for t in (short, padded)
        ]
        assert outs[1].ar.hidden[0].shape[1] == 26  # what raised "decoder has 26 positions but ... needs 6"
        (a, logs_a), (b, logs_b) = obj(outs[0], images, LABELS), obj(outs[1], images, LABELS)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert logs_b["text"] == pytest.approx(logs_a["text"], rel=1e-5)
    cut = outs[0]
    cut.ar.hidden = [h[:, :5] for h in cut.ar.hidden]  # fewer positions than the longest label needs: refused
    with pytest.raises(ValueError, match="positions"):
        obj(cut, images, LABELS)


@pytest.mark.slow
def test_trainer_with_compile_and_clip_distillation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`str-distill train --distill clip --compile`: the trainer's compiled forward with fixed-length targets.

    Inductor needs a minute to compile even this tiny model on a CPU, so ``torch.compile`` runs with the ``eager``
    backend here: TorchDynamo still traces the forward, and the targets are padded exactly as with ``--compile``.
    """
    from test_trainer import make_words, quiet_config, stream_factory

    from str_distill.training import Trainer

    real_compile = torch.compile
    compiled = []

    def eager_compile(fn, *args, **kwargs):
        compiled.append(fn)
        return real_compile(fn, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    positions: list[int] = []

    class Recording(CLIPDistillObjective):
        def __call__(self, out, images, labels):
            positions.append(out.ar.hidden[0].shape[1])
            return super().__call__(out, images, labels)

    torch.manual_seed(0)
    model = tiny_student().train()
    obj = Recording(model, tiny_clip())
    data = stream_factory(model, make_words(tmp_path / "words"), 4)
    cfg = quiet_config(batch_size=4, lr=1e-3, steps=3, compile=True)
    trainer = Trainer(model, cfg, data, tmp_path / "run", objectives=[obj], device="cpu", log=lambda m: None)
    logs = [trainer.train_step(batch) for batch, _ in zip(data(0), range(3))]
    assert compiled and positions == [26, 26, 26]  # padded to max_length + 1 decoder positions, every step
    for step in logs:
        assert torch.isfinite(step["loss"]) and float(step["clip/text"]) > 0


def test_build_objective_from_args(tmp_path: Path):
    file = _save(tiny_clip().state_dict(), tmp_path / "clip.safetensors")
    obj = build_objective(tiny_student(), argparse.Namespace(clip_weights=str(file), clip_arch=None))
    assert isinstance(obj, CLIPDistillObjective) and obj.teacher.config.vocab_size == 514
    assert "activation quick_gelu" in obj.describe() and "CLIP text blocks (3, 2)" in obj.describe()
    assert "decoder layers (1, 2) (through the decoder's final norm)" in obj.describe()
    every = build_objective(tiny_student(), argparse.Namespace(clip_weights=str(file), clip_decoder_layers="all"))
    assert every.decoder_layers == (1, 2, 3) and every.text_layers == (3, 2, 1)
    with pytest.raises(ValueError, match="--clip-weights"):
        build_objective(tiny_student(), argparse.Namespace(clip_weights=None))
    with pytest.raises(ValueError, match="cannot spell"):
        build_objective(tiny_student(charset="ab c"), argparse.Namespace(clip_weights=str(file)))
    with pytest.raises(ValueError, match="context"):
        build_objective(tiny_student(max_label_length=31), argparse.Namespace(clip_weights=str(file)))


def test_padding_positions_do_not_change_the_loss():
    model = tiny_student()
    obj = CLIPDistillObjective(model, tiny_clip())
    images, targets = _batch(model)
    with torch.no_grad():
        out = model.forward_train(images, targets, passes=("ar",), return_layers=obj.encoder_layers)
        base, _ = obj(out, images, LABELS)
        lengths = torch.tensor([len(x) for x in LABELS])
        pad = torch.arange(out.ar.hidden[0].shape[1])[None, :] > lengths[:, None]
        assert pad.any()
        for h in out.ar.hidden:
            h[pad] += 100.0
        torch.testing.assert_close(obj(out, images, LABELS)[0], base)
        out.ar.hidden[0][~pad] += torch.linspace(-1.0, 1.0, out.ar.hidden[0].shape[-1])  # a real position counts
        assert not torch.allclose(obj(out, images, LABELS)[0], base)


def test_token_mixer_starts_as_patch_averages():
    obj = CLIPDistillObjective(tiny_student(), tiny_clip())
    mix = obj.heads.vis_mix[0].detach().view(17, 8, 16)  # student grid 8x16 (patch 4x8) on 32x128
    torch.testing.assert_close(mix[0], torch.full((8, 16), 1 / 128))  # CLIP class token: all tokens
    first = torch.zeros(8, 16)
    first[:4, :2] = 1 / 8  # CLIP patch (0, 0) = pixels 0-15 x 0-15 = student rows 0-3, columns 0-1
    torch.testing.assert_close(mix[1], first)
    torch.testing.assert_close(mix.sum((1, 2)), torch.ones(17))
