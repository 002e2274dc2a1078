"""The public surface: what ``import str_distill`` offers, documented; and every registered architecture builds, runs,
survives a save/load round trip and exports to ONNX where the family supports it (shrunk so each takes seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import str_distill
from str_distill.hub.loading import load_model
from str_distill.hub.serialization import save_pretrained
from str_distill.models import PPOCRConfig, ViTConfig, get_config, list_models
from str_distill.models.ppocr_det import PPOCRDetConfig

#: What a user needs, importable from the top level.
PUBLIC = ("Recognizer", "Prediction", "InputError", "list_models", "list_pretrained", "load_model",
          "WeightsNotFoundError", "WeightsIntegrityError", "WeightsFormatError", "__version__")


@pytest.mark.parametrize("name", PUBLIC)
def test_top_level_exports_what_a_user_needs(name: str) -> None:
    assert name in str_distill.__all__
    obj = getattr(str_distill, name)
    if name == "__version__":
        assert isinstance(obj, str) and obj[0].isdigit()
    else:
        assert (obj.__doc__ or "").strip(), f"str_distill.{name} has no docstring"


def test_every_exported_name_resolves_and_is_documented() -> None:
    for name in str_distill.__all__:
        obj = getattr(str_distill, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        str_distill.nope  # noqa: B018


def _shrink(config: Any) -> dict[str, Any]:
    """Overrides that make ``config``'s family tiny (a new family must add its rule here)."""
    if isinstance(config, ViTConfig):
        return dict(depth=1, embed_dim=32, num_heads=2, dec_dim=32, dec_heads=2, dec_depth=min(config.dec_depth, 1),
                    dropout=0.0, drop_path=0.0)
    if isinstance(config, PPOCRConfig):
        decoder = dict(dec_dim=16, dec_heads=2, dec_max_length=8, dec_charset="") if config.dec_depth else {}
        return dict(stem_channels=[8, 4], channels=[16, 24, 32], depths=[1, 1, 1], se_blocks=[[0], [], []],
                    neck_dim=16, neck_heads=2, neck_depth=1, charset="94", max_label_length=25, **decoder)
    if isinstance(config, PPOCRDetConfig):
        return dict(stem_channels=(8, 4), channels=(8, 16, 24, 32), depths=(1, 1, 1, 1), se_blocks=((0,), (), (), ()),
                    neck_channels=16)
    raise AssertionError(f"no shrink rule for {type(config).__name__}: add one to {__file__}")


def _tiny(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return str_distill.create_model(arch, **_shrink(get_config(arch))).eval()


def _inputs(model: torch.nn.Module) -> torch.Tensor:
    c = model.config
    if isinstance(c, PPOCRDetConfig):
        return torch.randn(1, 3, 64, 96)
    if isinstance(c, PPOCRConfig):
        width = max(int(c.min_width), 64)
        return torch.randn(2, 3, c.height, width + -width % int(c.width_multiple))
    return torch.randn(2, 3, *c.img_size)


def _run(model: torch.nn.Module, x: torch.Tensor, decoding: str | None = None) -> torch.Tensor:
    with torch.inference_mode():
        if isinstance(model.config, PPOCRDetConfig):
            return model(x)
        return model(x, decoding).logits


@pytest.mark.parametrize("arch", list_models())
def test_architecture_builds_runs_and_round_trips(arch: str, tmp_path: Path) -> None:
    model = _tiny(arch)
    x = _inputs(model)
    decodings = getattr(model, "decodings", (None,))
    outputs = {d: _run(model, x, d) for d in decodings}
    for d, out in outputs.items():
        assert out.shape[0] == x.shape[0] and torch.isfinite(out).all(), (arch, d)
        if d is not None:
            assert out.shape[-1] == len(model.tokenizer.charset) + (1 if d == "ctc" else 2) or out.ndim == 3
    save_pretrained(model, tmp_path / arch)
    loaded = load_model(tmp_path / arch)
    assert type(loaded) is type(model) and loaded.config.to_dict() == model.config.to_dict()
    for d, out in outputs.items():
        assert torch.equal(_run(loaded, x, d), out), (arch, d)


def _distinct_shrunk() -> list[str]:
    """One architecture per distinct shrunk config (``siga-vit-t/s/b`` shrink to the same network)."""
    seen, out = set(), []
    for arch in list_models():
        cfg = get_config(arch, **_shrink(get_config(arch))).to_dict()
        key = json.dumps({k: v for k, v in cfg.items() if k != "arch"}, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(arch)
    return out


@pytest.mark.parametrize("arch", _distinct_shrunk())
def test_architecture_exports_to_onnx_where_supported(arch: str) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from str_distill.backends.onnx_reader import INPUT_NAME, OUTPUT_NAME, SELECTOR_NAME, read_info, selector_value
    from str_distill.export import export_onnx_bytes

    model = _tiny(arch)
    if isinstance(model.config, PPOCRDetConfig):
        with pytest.raises(TypeError, match="cannot export"):
            export_onnx_bytes(model)
        return
    session = ort.InferenceSession(export_onnx_bytes(model, source=arch), providers=["CPUExecutionProvider"])
    info = read_info(session.get_modelmeta().custom_metadata_map, arch)
    x = _inputs(model)
    assert info.decodings and set(info.decodings) <= set(model.decodings)
    for d in info.decodings:  # what the file holds (an export may keep only some of the network's decodings)
        feeds = {INPUT_NAME: x.numpy()}
        code = selector_value(info, d, "autoregressive")
        if code is not None:
            feeds[SELECTOR_NAME] = torch.tensor(code).numpy()
        got = torch.from_numpy(session.run([OUTPUT_NAME], feeds)[0])
        torch.testing.assert_close(got, _run(model, x, d), atol=1e-4, rtol=1e-4)
