"""Tiny random recognizers of both families exported once per session (seconds on a CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from str_distill.models import PPOCRRecognizer, ViTRecognizer, create_model
from tests.conftest import make_tiny_model

#: PP-OCR shrunk to ~30k parameters: variable width (min 64, multiple of 8), 95 classes
TINY_PPOCR = dict(stem_channels=[8, 4], channels=[16, 24, 32], depths=[2, 2, 2], se_blocks=[[0], [1], [0]],
                  neck_dim=16, neck_heads=2, neck_depth=1, charset="94", max_label_length=40, min_width=64,
                  max_width=256)
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def make_tiny_ppocr(seed: int = 0, **overrides: object) -> PPOCRRecognizer:
    """A tiny PP-OCR model with random weights and random BatchNorm statistics (eval mode)."""
    torch.manual_seed(seed)
    model = create_model("ppocrv6-small", **{**TINY_PPOCR, **overrides}).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def data_root() -> Path:
    """``$STR_DISTILL_DATA``, else ``shared/data`` next to the repository."""
    env = os.environ.get("STR_DISTILL_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_vit() -> ViTRecognizer:
    return make_tiny_model(seed=1)


@pytest.fixture(scope="session")
def tiny_ppocr() -> PPOCRRecognizer:
    return make_tiny_ppocr(seed=2)


@pytest.fixture(scope="session")
def vit_onnx(tiny_vit: ViTRecognizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ViT exported (CTC, parallel with 1 refinement, autoregressive); treat it as read-only."""
    from str_distill.export import export_onnx

    return export_onnx(tiny_vit, tmp_path_factory.mktemp("onnx") / "vit.onnx")


@pytest.fixture(scope="session")
def ppocr_onnx(tiny_ppocr: PPOCRRecognizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny PP-OCR model exported; treat it as read-only."""
    from str_distill.export import export_onnx

    return export_onnx(tiny_ppocr, tmp_path_factory.mktemp("onnx") / "ppocr.onnx")
