"""The pure recognizer network: shapes, decoding paths, cache parity, config round trips, registry."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model

from str_distill.models import ViTConfig, ViTRecognizer, create_model, get_config, list_models


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 3, 32, 128)


def test_forward_shapes(tiny_model: ViTRecognizer, images: torch.Tensor) -> None:
    c = tiny_model.tokenizer.num_classes
    with torch.inference_mode():
        memory = tiny_model.encode(images)
        assert memory.shape == (3, 128, 64)
        assert tiny_model(images, decoding="ctc").logits.shape == (3, 64, c)
        ar = tiny_model(images, return_attn=True)
        assert ar.logits.shape[0] == 3 and ar.logits.shape[2] == c and 1 <= ar.logits.shape[1] <= 26
        assert ar.attn is not None and ar.attn.shape == (*ar.logits.shape[:2], 128)
        assert torch.allclose(ar.attn.sum(-1), torch.ones(ar.attn.shape[:2]), atol=1e-5)
        par = tiny_model(images, mode="parallel", refine_iters=2, return_attn=True)
        assert par.logits.shape == (3, 26, c) and par.attn.shape == (3, 26, 128)


def test_cached_and_uncached_autoregressive_decoding_identical(tiny_model: ViTRecognizer, images: torch.Tensor) -> None:
    with torch.inference_mode():
        memory = tiny_model.encode(images)
        cached = tiny_model.decode_autoregressive(memory, use_cache=True, return_attn=True)
        plain = tiny_model.decode_autoregressive(memory, use_cache=False, return_attn=True)
    assert cached.logits.shape == plain.logits.shape
    torch.testing.assert_close(cached.logits, plain.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached.attn, plain.attn, atol=1e-5, rtol=1e-5)
    assert torch.equal(cached.logits.argmax(-1), plain.logits.argmax(-1))


def test_autoregressive_stops_early_when_all_sequences_end(tiny_model: ViTRecognizer, images: torch.Tensor) -> None:
    with torch.no_grad():
        tiny_model.decoder.head.bias.fill_(0)
        tiny_model.decoder.head.bias[0] = 50.0  # EOS wins everywhere
        out = tiny_model(images)
    assert out.logits.shape[1] == 1
    assert [d.text for d in tiny_model.tokenizer.decode(out.logits.softmax(-1))] == ["", "", ""]


def test_max_length_limits_steps(tiny_model: ViTRecognizer, images: torch.Tensor) -> None:
    with torch.inference_mode():
        out = tiny_model.decode_autoregressive(tiny_model.encode(images), max_length=4)
    assert out.logits.shape[1] <= 5


def test_batch_composition_does_not_change_outputs(tiny_model: ViTRecognizer, images: torch.Tensor) -> None:
    with torch.inference_mode():
        batched = tiny_model(images, decoding="ctc").logits
        single = torch.cat([tiny_model(images[i : i + 1], decoding="ctc").logits for i in range(3)])
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
        ar = tiny_model(images).logits
        ar1 = tiny_model(images[1:2]).logits
        torch.testing.assert_close(ar[1:2, : ar1.shape[1]], ar1, atol=1e-5, rtol=1e-5)


def test_forward_train_shapes(tiny_model: ViTRecognizer, images: torch.Tensor) -> None:
    tok = tiny_model.tokenizer
    targets = tok.encode(["ab", "hello", ""])
    out = tiny_model.train().forward_train(images, targets, return_layers=(1, 2))
    steps = targets.shape[1] - 1
    for p in (out.ar, out.parallel, out.cloze):
        assert p.logits.shape == (3, steps, tok.num_classes)
        assert len(p.hidden) == 1 and p.hidden[0].shape == (3, steps, 64)
    assert len(out.taps) == 2 and out.taps[0].shape == (3, 128, 64)
    assert out.ctc_logits.shape == (3, 64, tok.num_classes)
    out.ar.logits.sum().backward()


def test_eval_is_deterministic(model_factory, images: torch.Tensor) -> None:  # noqa: ANN001
    model = model_factory(dropout=0.3, drop_path=0.3)
    with torch.inference_mode():
        a, b = model(images).logits, model(images).logits
    assert torch.equal(a, b)


def test_invalid_decoding_arguments(tiny_model: ViTRecognizer, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="decoding"):
        tiny_model(images, decoding="beam")
    with pytest.raises(ValueError, match="mode"):
        tiny_model(images, mode="sideways")


def test_config_round_trip_and_validation(tiny_config: ViTConfig) -> None:
    d = tiny_config.to_dict()
    assert ViTConfig.from_dict(d) == tiny_config
    assert isinstance(d["img_size"], list)
    with pytest.raises(ValueError, match="unknown model config keys"):
        ViTConfig.from_dict({**d, "future_field": 1})
    with pytest.raises(ValueError, match="divisible"):
        ViTConfig(img_size=(30, 128))
    with pytest.raises(ValueError, match="interpolation"):
        ViTConfig(interpolation="lanczos")
    assert tiny_config.grid_size == (8, 16)


def test_registry() -> None:
    assert {"siga-vit-t", "siga-vit-s", "siga-vit-b"} <= set(list_models())
    assert list_models("siga-vit-s*") == ["siga-vit-s"]
    assert get_config("siga-vit-s").embed_dim == 384
    assert get_config("siga-vit-s", charset="36").charset == "36"
    with pytest.raises(KeyError, match="unknown model"):
        get_config("resnet-50")
    with pytest.raises(KeyError, match="unknown config fields"):
        get_config("siga-vit-s", width=3)
    model = create_model("siga-vit-t", depth=1, dec_depth=1)
    assert isinstance(model, ViTRecognizer) and len(model.encoder.blocks) == 1


def test_siga_vit_s_size() -> None:
    with torch.device("meta"):
        n = ViTRecognizer(get_config("siga-vit-s")).num_parameters()
    assert 25e6 < n < 35e6  # ViT-S encoder (~21M) + CTC head + 3-layer decoder


def test_charset_changes_only_charset_dependent_layers(tiny_config: ViTConfig) -> None:
    a = ViTRecognizer(tiny_config).state_dict()
    b = ViTRecognizer(ViTConfig.from_dict({**tiny_config.to_dict(), "charset": "36"})).state_dict()
    differ = sorted(k for k in a if a[k].shape != b[k].shape)
    assert differ and all(k.startswith(("decoder.head.", "decoder.tok_emb.", "ctc_head.classifier.")) for k in differ)


def test_a_ctc_only_vit_has_no_decoder_and_decodes_with_ctc(images: torch.Tensor, tmp_path) -> None:  # noqa: ANN001
    """``dec_depth=0``: no decoder parameters, CTC decoding only (attention decoding is refused by name), training
    outputs carry no decoder passes, and the weights round-trip through save/load and the predictor."""
    from str_distill import Recognizer
    from str_distill.hub.serialization import save_pretrained

    model = make_tiny_model(dec_depth=0, patch_size=(8, 8))
    assert model.decoder is None and model.decodings == ("ctc",) and "decoder" not in model.parts
    assert not any(k.startswith("decoder.") for k in model.state_dict())
    # the class is untouched
    assert ViTRecognizer.decodings == ("attention", "ctc") and "decoder" in ViTRecognizer.parts
    out = model(images, decoding="ctc")
    assert out.logits.shape == (images.shape[0], 16 * model.config.ctc_upsample, model.tokenizer.num_classes)
    for call in (lambda: model(images), lambda: model.decode_parallel(model.encode(images))):
        with pytest.raises(ValueError, match="no attention decoder"):
            call()
    targets = model.tokenizer.encode(["ab", "c"] + ["d"] * (images.shape[0] - 2))
    train = model.forward_train(images, targets, return_layers=(1,))
    assert train.ar is None and train.parallel is None and train.cloze is None and len(train.taps) == 1
    assert torch.equal(train.ctc_logits, out.logits)
    rec = Recognizer.from_pretrained(save_pretrained(model, tmp_path / "m"), device="cpu", dtype="float32")
    torch.manual_seed(2)
    pixels = (torch.rand(3, 32, 128, 3) * 255).byte()
    x = (pixels.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        ref = [d.text for d in model.tokenizer.decode(model(x, decoding="ctc").logits.softmax(-1), mode="ctc")]
    assert [p.text for p in rec.predict(list(pixels.numpy()))] == ref  # the predictor picks CTC by itself


def test_the_cpu_student_config() -> None:
    """``siga-vit-t-ctc``: 64 tokens (8x8 patches on 32x128), 8 blocks of width 192, CTC only, under 5M parameters."""
    c = get_config("siga-vit-t-ctc")
    assert c.grid_size == (4, 16) and c.depth == 8 and c.embed_dim == 192 and c.dec_depth == 0
    with torch.device("meta"):
        model = create_model("siga-vit-t-ctc")
    assert model.decodings == ("ctc",) and 3e6 < model.num_parameters() < 5e6


def test_old_vit_names_are_deprecated_aliases() -> None:
    import str_distill
    from str_distill import models
    from str_distill.models import ViTConfig, ViTRecognizer

    with pytest.warns(DeprecationWarning, match="use ViTRecognizer"):
        assert models.STRModel is ViTRecognizer
    with pytest.warns(DeprecationWarning, match="use ViTConfig"):
        assert str_distill.ModelConfig is ViTConfig
