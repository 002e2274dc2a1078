"""--init: custom-charset fine-tuning re-initializes only the charset layers; encoder-only checkpoints; mismatches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model
from safetensors.torch import save_file

from str_distill.hub.serialization import save_pretrained
from str_distill.training.init import CHARSET_LAYERS, initialize_from


def _is_charset(key: str) -> bool:
    return any(key.startswith(p + ".") for p in CHARSET_LAYERS)


def test_custom_charset_reinitializes_only_charset_layers(tmp_path: Path) -> None:
    src = make_tiny_model(seed=1, charset="94")
    save_pretrained(src, tmp_path / "src")
    # same number of characters, other characters: shapes match but the layers must still be re-initialized
    for charset in ("0123456789", "abcdefghij", "36"):
        model = make_tiny_model(seed=2, charset=charset)
        msgs = initialize_from(model, tmp_path / "src")
        text = "\n".join(msgs)
        assert "re-initialized ctc_head.classifier, decoder.head, decoder.tok_emb" in text
        src_state, state = src.state_dict(), model.state_dict()
        for k, v in state.items():
            if _is_charset(k):
                assert v.shape != src_state[k].shape or not torch.equal(v, src_state[k]), k
            else:
                assert torch.equal(v, src_state[k]), k
    same_size = make_tiny_model(seed=3, charset="abcdefghij")
    before = same_size.decoder.head.weight.clone()
    initialize_from(same_size, src)
    assert not torch.equal(same_size.decoder.head.weight, before)  # explicitly re-initialized, not just kept


def test_same_charset_copies_everything(tmp_path: Path) -> None:
    src = make_tiny_model(seed=1, charset="36")
    model = make_tiny_model(seed=2, charset="36")
    msgs = initialize_from(model, src)
    assert len(msgs) == 1 and "copied" in msgs[0]
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in model.state_dict().items())


def test_architecture_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="architectures differ"):
        initialize_from(make_tiny_model(embed_dim=32), make_tiny_model(embed_dim=64))


def test_encoder_only_checkpoint(tmp_path: Path) -> None:
    pre = make_tiny_model(seed=5)
    d = tmp_path / "ccd"
    d.mkdir()
    enc = {f"encoder.{k}": v.contiguous() for k, v in pre.encoder.state_dict().items()}
    save_file(enc, str(d / "encoder.safetensors"), metadata={"kind": "ccd-pretrain"})
    model = make_tiny_model(seed=6, charset="36")
    dec_before = model.decoder.head.weight.clone()
    msgs = initialize_from(model, d)
    assert "encoder-only" in msgs[0]
    assert all(torch.equal(v, pre.encoder.state_dict()[k]) for k, v in model.encoder.state_dict().items())
    assert torch.equal(model.decoder.head.weight, dec_before)
    with pytest.raises(ValueError, match="does not match"):
        initialize_from(make_tiny_model(embed_dim=32), d / "encoder.safetensors")
