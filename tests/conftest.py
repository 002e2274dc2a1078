"""Shared fixtures: tiny random recognizers (seconds on a CPU), saved copies, word images, a network guard."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from str_distill.hub.serialization import save_pretrained
from str_distill.models import ViTConfig, ViTRecognizer, get_config

TINY = dict(depth=2, embed_dim=64, num_heads=2, dec_dim=64, dec_heads=2, dec_depth=1, dropout=0.0, drop_path=0.0)


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(1)  # CI and dev machines are small and shared; tiny models gain nothing from threads


#: Tests that need the benchmark data (``$STR_DISTILL_DATA/IIIT5K``) skip with a reason naming this variable.
DATA_VAR = "STR_DISTILL_DATA"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """With ``STR_DISTILL_REQUIRE_DATA=1`` (``.ci/run`` sets it when it found the data), a test that skips for want
    of the benchmark data fails instead: a wrong path must not pass as a green run."""
    import os

    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("STR_DISTILL_REQUIRE_DATA") == "1" and DATA_VAR in str(report.longrepr):
        report.outcome = "failed"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly how many tests were skipped because the benchmark data was not found, and how to run them."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if DATA_VAR in str(r.longrepr)]
    if skipped:
        terminalreporter.write_sep("=", "benchmark data not found", yellow=True)
        terminalreporter.write_line(
            f"{len(skipped)} test(s) skipped because the benchmark data was not found; set {DATA_VAR} to a folder "
            "holding IIIT5K/ (images/ + labels.tsv) to run them:")
        for r in skipped:
            terminalreporter.write_line(f"  {r.nodeid}")


def make_tiny_config(**overrides: object) -> ViTConfig:
    """``siga-vit-t`` shrunk to 2 blocks of width 64 and a 1-layer decoder (~0.24M parameters)."""
    return get_config("siga-vit-t", **{**TINY, **overrides})


def make_tiny_model(seed: int = 0, **overrides: object) -> ViTRecognizer:
    torch.manual_seed(seed)
    return ViTRecognizer(make_tiny_config(**overrides)).eval()


@pytest.fixture
def tiny_config() -> ViTConfig:
    return make_tiny_config()


@pytest.fixture
def tiny_model() -> ViTRecognizer:
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``save_pretrained`` directory of :func:`make_tiny_model` (seed 0); treat it as read-only."""
    return save_pretrained(make_tiny_model(), tmp_path_factory.mktemp("tiny_model"))


def render_word(text: str = "hello", size: tuple[int, int] = (40, 120), seed: int = 0) -> np.ndarray:
    """A legible uint8 ``(H, W, 3)`` word image: dark text on a light random background."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    h, w = size
    bg = tuple(int(v) for v in rng.integers(170, 256, 3))
    img = Image.new("RGB", (w, h), bg)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", int(h * 0.6))
    except OSError:
        font = ImageFont.load_default()
    ImageDraw.Draw(img).text((4, h // 6), text, fill=tuple(int(v) for v in rng.integers(0, 80, 3)), font=font)
    return np.array(img)


@pytest.fixture
def word_image() -> np.ndarray:
    return render_word()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Any attempt to open a network connection fails, and fails the test even if the caller catches the error."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[1:] if len(args) > 1 else args))
        raise OSError(f"network access attempted in a test: {attempts[-1]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"


@pytest.fixture
def model_factory():  # noqa: ANN201 - returns make_tiny_model
    """``model_factory(seed=0, **config_overrides) -> ViTRecognizer``: a fresh tiny random model."""
    return make_tiny_model


@pytest.fixture
def render():  # noqa: ANN201 - returns render_word
    """``render(text, size=(H, W), seed) -> uint8 (H, W, 3)``: a word image."""
    return render_word
