"""Loss weights and terms, learning-rate schedules, parameter groups, EMA."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model

from str_distill.training.ema import ModelEMA
from str_distill.training.losses import LossWeights, RecognitionLoss, ctc_loss, sequence_ce
from str_distill.training.schedule import LRSchedule, param_groups


def test_loss_weights_parse() -> None:
    assert LossWeights.parse("") == LossWeights(1.0, 0.5, 0.5, 0.5)
    w = LossWeights.parse("parallel=0, ctc=0.25")
    assert (w.ar, w.parallel, w.cloze, w.ctc) == (1.0, 0.0, 0.5, 0.25)
    assert w.passes == ("ar", "cloze")
    for bad in ("foo=1", "ar", "ar=x", "ar=-1", "ar=0,parallel=0,cloze=0,ctc=0"):
        with pytest.raises(ValueError):
            LossWeights.parse(bad)


def test_recognition_loss_terms_and_pad_masking() -> None:
    torch.manual_seed(0)
    model = make_tiny_model(charset="36").train()
    loss = RecognitionLoss(model.tokenizer, LossWeights(), label_smoothing=0.1)
    labels = ["hello", "a", "word"]
    targets, ctc_t, ctc_l = loss.targets(labels, "cpu")
    assert targets.shape == (3, 7) and ctc_l.tolist() == [5, 1, 4]
    fixed, _, _ = loss.targets(labels, "cpu", fixed_length=True)
    assert fixed.shape == (3, 27)
    out = model.forward_train(torch.randn(3, 3, 32, 128), targets, passes=("ar", "parallel", "cloze"))
    total, terms = loss(out, targets, ctc_t, ctc_l)
    assert set(terms) == {"ar", "parallel", "cloze", "ctc", "train_acc"}
    expected = terms["ar"] + 0.5 * (terms["parallel"] + terms["cloze"] + terms["ctc"])
    assert torch.allclose(total.detach(), expected)
    total.backward()
    assert model.decoder.head.weight.grad is not None and model.ctc_head.classifier.weight.grad is not None
    # PAD positions never contribute
    logits = torch.randn(2, 4, 5)
    tgt = torch.tensor([[1, 2, 0, 9], [3, 0, 9, 9]])
    base = sequence_ce(logits, tgt, pad=9)
    logits2 = logits.clone()
    logits2[0, 3] += 100
    logits2[1, 2:] -= 50
    assert torch.allclose(base, sequence_ce(logits2, tgt, pad=9))
    assert ctc_loss(torch.randn(2, 16, 5), torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1])).ndim == 0


def test_schedules() -> None:
    cos = LRSchedule("cosine", warmup=0.1, min_ratio=0.01)
    assert cos(0) == 0 and cos(0.05) == pytest.approx(0.5) and cos(0.1) == pytest.approx(1.0)
    assert cos(1.0) == pytest.approx(0.01) and cos(2.0) == pytest.approx(0.01)
    assert all(cos(a) >= cos(b) for a, b in [(0.2, 0.3), (0.5, 0.9)])
    one = LRSchedule("onecycle", warmup=0.075)
    assert one(0) == pytest.approx(1 / 25) and one(0.075) == pytest.approx(1.0) and one(1.0) < 1e-5
    assert LRSchedule("constant", warmup=0.0)(0.7) == 1.0
    with pytest.raises(ValueError):
        LRSchedule("linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LRSchedule(warmup=1.0)


def test_param_groups_skip_decay_on_norms_biases_positions() -> None:
    model = make_tiny_model()
    decay, no_decay = param_groups([model, model.decoder], 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))  # shared counted once
    nd = {names[id(p)] for p in no_decay["params"]}
    assert {"encoder.pos_embed", "decoder.content_pos", "decoder.pos_queries", "decoder.head.bias"} <= nd
    assert all(names[id(p)].endswith("weight") for p in decay["params"])


def test_ema() -> None:
    model = make_tiny_model()
    ema = ModelEMA(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)  # first update: decay (1 + 0) / (10 + 0) = 0.1
    p0 = next(model.parameters())
    e0 = next(ema.module.parameters())
    assert torch.allclose(e0, p0 - 1 + 0.9)
    assert not e0.requires_grad and ema.updates == 1
    with pytest.raises(ValueError):
        ModelEMA(model, decay=1.0)
