"""ONNX export of both families: parity with torch (logits within 1e-4), dynamic batch and width, the metadata
that makes the file self-contained, argument checks, int8 quantization."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from str_distill.models import PPOCRRecognizer, ViTRecognizer
from str_distill.preprocess import resolve_data_config
from tests.export.conftest import make_tiny_ppocr

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs the onnxruntime extra")

from str_distill.backends.onnx_reader import create_session, read_info  # noqa: E402
from str_distill.export import export_onnx, export_onnx_bytes  # noqa: E402

TOL = 1e-4


@functools.lru_cache(maxsize=8)
def session(path: Path) -> Any:
    """One onnxruntime session per file (creating one for the unrolled decoder takes a second or two)."""
    return create_session(path, threads=1)


def run(path: Path, x: torch.Tensor, decoding: int | None = None) -> np.ndarray:
    feeds = {"images": x.numpy()}
    if decoding is not None:
        feeds["decoding"] = np.asarray(decoding, dtype=np.int64)
    return session(path).run(["logits"], feeds)[0]


@pytest.mark.parametrize("batch", [1, 3])
def test_vit_every_decoding_matches_torch(tiny_vit: ViTRecognizer, vit_onnx: Path, batch: int) -> None:
    x = torch.randn(batch, 3, 32, 128, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        ref = {0: tiny_vit(x, "ctc").logits, 1: tiny_vit(x, "attention", "parallel", 1).logits,
               2: tiny_vit(x, "attention", "autoregressive").logits}
    for code, expected in ref.items():
        got = run(vit_onnx, x, code)
        assert got.shape[0] == batch and got.shape[2] == expected.shape[2]
        # autoregressive: torch stops once every word has ended; the graph runs every step (same prefix)
        steps = expected.shape[1]
        assert got.shape[1] == steps or (code == 2 and got.shape[1] == tiny_vit.tokenizer.max_length + 1)
        np.testing.assert_allclose(got[:, :steps], expected.numpy(), atol=TOL, rtol=0)
    np.testing.assert_array_equal(run(vit_onnx, x), run(vit_onnx, x, 2))  # the input defaults to autoregressive


def test_a_ctc_only_vit_exports_one_ctc_graph(tmp_path: Path) -> None:
    """``dec_depth=0`` (the CPU student's shape): one output, no ``decoding`` input, CTC metadata; the predictor
    reads the file like the torch model."""
    from str_distill import Recognizer
    from tests.conftest import make_tiny_model

    model = make_tiny_model(seed=3, dec_depth=0, patch_size=(8, 8))
    path = export_onnx(model, tmp_path / "ctc.onnx")
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["images"] and [o.name for o in proto.graph.output] == ["logits"]
    info = read_info(session(path).get_modelmeta().custom_metadata_map)
    assert info.decodings == ("ctc",) and info.modes == () and not info.has_selector
    x = torch.randn(3, 3, 32, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x, "ctc").logits.numpy()
    np.testing.assert_allclose(run(path, x), expected, atol=TOL, rtol=0)
    pixels = list((torch.rand(4, 32, 128, 3, generator=torch.Generator().manual_seed(1)) * 255).byte().numpy())
    torch_rec = Recognizer(model, device="cpu", dtype="float32")
    assert [p.text for p in Recognizer.from_pretrained(path).predict(pixels)] == \
        [p.text for p in torch_rec.predict(pixels)]


@pytest.mark.parametrize(("batch", "width"), [(1, 64), (2, 320), (3, 200)])
def test_ppocr_dynamic_batch_and_width_match_torch(tiny_ppocr: PPOCRRecognizer, ppocr_onnx: Path, batch: int,
                                                   width: int) -> None:
    width += -width % 8
    x = torch.randn(batch, 3, 48, width, generator=torch.Generator().manual_seed(width))
    with torch.inference_mode():
        expected = tiny_ppocr(x).logits.numpy()
    got = run(ppocr_onnx, x)
    assert got.shape == expected.shape == (batch, width // 8, tiny_ppocr.tokenizer.num_classes)
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_the_file_carries_charset_preprocessing_and_dynamic_axes(tiny_vit: ViTRecognizer, vit_onnx: Path,
                                                                   tiny_ppocr: PPOCRRecognizer,
                                                                   ppocr_onnx: Path) -> None:
    for model, path in ((tiny_vit, vit_onnx), (tiny_ppocr, ppocr_onnx)):
        proto = onnx.load(str(path))
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
        meta = {p.key: p.value for p in proto.metadata_props}
        info = read_info(meta)
        assert info.charset == model.tokenizer.charset
        assert info.preprocessing == resolve_data_config(model.config)
        assert info.config == model.config.to_dict()
        assert info.decodings == model.decodings and info.max_label_length == model.tokenizer.max_length
        dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
        out = [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
        assert dims[0] == "batch" and out[0] == "batch"
        assert out[2] == model.tokenizer.num_classes
        if isinstance(model, PPOCRRecognizer):
            assert dims[1:] == [3, 48, "width"] and info.modes == () and not info.has_selector
        else:
            assert dims[1:] == [3, 32, 128] and set(info.modes) == {"parallel", "autoregressive"}
            assert info.refine_iters == 1
    with pytest.raises(ValueError, match="not a str-distill export"):
        read_info({"character": "abc"}, "other.onnx")
    with pytest.raises(ValueError, match="format '9'"):
        read_info({**meta, "str_distill_format": "9"})


def test_export_leaves_the_model_alone_and_casts_to_float32(tmp_path: Path) -> None:
    model = make_tiny_ppocr(seed=3).to(torch.bfloat16).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = export_onnx(model, tmp_path / "sub" / "m.onnx")
    assert path.is_file() and model.training
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = torch.randn(2, 3, 48, 96)
    with torch.inference_mode():
        expected = model.float().eval()(x).logits.numpy()
    np.testing.assert_allclose(run(path, x), expected, atol=TOL, rtol=0)
    fast = make_tiny_ppocr(seed=3).to(memory_format=torch.channels_last)  # as the predictor keeps it on the CPU
    export_onnx_bytes(fast)
    assert fast.stem.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not fast.stem.conv1[0].weight.is_contiguous()


def test_refine_iters_is_baked_into_the_graph(tiny_vit: ViTRecognizer, tmp_path: Path) -> None:
    x = torch.randn(2, 3, 32, 128, generator=torch.Generator().manual_seed(7))
    path = export_onnx(tiny_vit, tmp_path / "r0.onnx", refine_iters=0)
    with torch.inference_mode():
        r0, r1 = (tiny_vit(x, "attention", "parallel", n).logits.numpy() for n in (0, 1))
    got = run(path, x, 1)
    np.testing.assert_allclose(got, r0, atol=TOL, rtol=0)
    assert np.abs(r1 - r0).max() > 1e-3  # the number of refinements matters, so the check above can fail


def test_preprocessing_overrides_are_stored(tiny_ppocr: PPOCRRecognizer) -> None:
    data = export_onnx_bytes(tiny_ppocr, preprocessing={"min_width": 32})
    meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert json.loads(meta["preprocessing"])["min_width"] == 32
    assert json.loads(meta["config"])["min_width"] == 32
    assert tiny_ppocr.config.min_width == 64  # the model's own config is untouched
    with pytest.raises(ValueError, match="allowed"):
        export_onnx_bytes(tiny_ppocr, preprocessing={"depth": 2})


def test_bad_arguments(tiny_ppocr: PPOCRRecognizer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny_ppocr, tmp_path / "a.onnx", opset=13)
    with pytest.raises(ValueError, match="quantize"):
        export_onnx(tiny_ppocr, tmp_path / "a.onnx", quantize="int4")
    with pytest.raises(ValueError, match="refine_iters"):
        export_onnx(tiny_ppocr, tmp_path / "a.onnx", refine_iters=-1)
    with pytest.raises(TypeError, match="ViTRecognizer or a PPOCRRecognizer"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()


def test_missing_onnx_package_says_how_to_install(tiny_ppocr: PPOCRRecognizer, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "str-distill\[onnx\]"'):
        export_onnx_bytes(tiny_ppocr)


def test_int8_dynamic_quantization(tiny_ppocr: PPOCRRecognizer, ppocr_onnx: Path, tmp_path: Path) -> None:
    path = export_onnx(tiny_ppocr, tmp_path / "q.onnx", quantize="int8")
    proto = onnx.load(str(path))
    assert read_info({p.key: p.value for p in proto.metadata_props}).quantization == "int8-dynamic"
    ops = {n.op_type for n in proto.graph.node}
    assert "DynamicQuantizeLinear" in ops or "DynamicQuantizeMatMul" in ops or "MatMulInteger" in ops, ops
    assert "ConvInteger" not in ops  # convolutions stay float32
    x = torch.randn(2, 3, 48, 128, generator=torch.Generator().manual_seed(5))
    q, f = run(path, x), run(ppocr_onnx, x)
    assert q.shape == f.shape and 0 < np.abs(q - f).max() < 0.5 * np.abs(f).max()
