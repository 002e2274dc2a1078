"""--init: custom-charset fine-tuning re-initializes only the charset layers; encoder-only checkpoints; mismatches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model
from safetensors.torch import save_file

from str_distill.hub.serialization import save_pretrained
from str_distill.training.warm_start import CHARSET_LAYERS, initialize_from


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


# ---- depth pruning: a shallower PP-OCR student starts from its teacher's blocks ----

PP_TINY = dict(stem_channels=[8, 4], channels=[16, 24, 32], depths=[3, 5, 3], se_blocks=[[0], [2], [1]], neck_dim=16,
               neck_heads=2, neck_depth=1, charset="94", max_label_length=40, min_width=64, max_width=256)


def _pp(seed: int, **kw: object) -> torch.nn.Module:
    from str_distill.models import create_model

    torch.manual_seed(seed)
    return create_model("ppocrv6-small", **{**PP_TINY, **kw})


def test_stage_block_map_keeps_first_and_last_evenly_spaced() -> None:
    from str_distill.training.warm_start import stage_block_map

    assert stage_block_map((3, 7, 3), (3, 4, 2)) == [[0, 1, 2], [0, 2, 4, 6], [0, 2]]
    assert stage_block_map((5,), (1,)) == [[0]]
    with pytest.raises(ValueError, match="stage 1 has 8 blocks"):
        stage_block_map((3, 7), (3, 8))
    with pytest.raises(ValueError, match="stage counts differ"):
        stage_block_map((3, 7), (3,))


def test_shallower_student_takes_the_teachers_blocks() -> None:
    teacher = _pp(0)
    student = _pp(1, depths=[2, 3, 2], se_blocks=[[0], [1], []], charset="36")
    msgs = initialize_from(student, teacher, "teacher")
    assert any("keeping stage 0: [0, 2]; stage 1: [0, 2, 4]; stage 2: [0, 2]" in m for m in msgs), msgs
    t, s = teacher.state_dict(), student.state_dict()
    for stage, pick in enumerate([[0, 2], [0, 2, 4], [0, 2]]):
        for i, j in enumerate(pick):
            prefix = f"stages.{stage}."
            for key in (k for k in t if k.startswith(f"{prefix}{j}.")):
                assert torch.equal(s[key.replace(f"{prefix}{j}.", f"{prefix}{i}.", 1)], t[key]), key
    for key in (k for k in t if not k.startswith(("stages.", "head."))):
        assert torch.equal(s[key], t[key]), key
    # the head keeps the blank's row and the rows of the 36 shared characters, in the student's order
    assert torch.equal(s["head.weight"][0], t["head.weight"][0])
    assert torch.equal(s["head.weight"][1], t["head.weight"][1])  # "0" is first in both charsets


def test_pruning_refuses_squeeze_excitation_mismatch_and_other_widths() -> None:
    teacher = _pp(0)
    with pytest.raises(ValueError, match="stage 1 block 1 starts from source block 2.*squeeze-and-excitation"):
        initialize_from(_pp(1, depths=[2, 3, 2], se_blocks=[[0], [], []]), teacher)
    with pytest.raises(ValueError, match="stage widths differ"):
        initialize_from(_pp(1, depths=[2, 3, 2], channels=[16, 24, 40], se_blocks=[[0], [1], []]), teacher)
