"""ONNX export of every model family, with the charset and preprocessing stored in the file.

Graphs (opset 17 by default), written by torch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``: no dependency beyond the ``onnx`` package):

* PP-OCR CTC recognizers: input ``images`` ``(batch, 3, H, width)`` float32 (width dynamic, a multiple of 8),
  output ``logits`` ``(batch, width / 8, classes)``.
* ViT recognizers: input ``images`` ``(batch, 3, H, W)`` and an int64 scalar ``decoding`` (default 2) choosing the
  head: 0 CTC, 1 parallel attention decoding with ``refine_iters`` refinements, 2 autoregressive attention decoding
  (all ``max_label_length + 1`` steps, no early stop: the text is cut at the first end-of-sequence as in torch).
  Output ``logits`` ``(batch, T, classes)``. One ``If`` node runs only the chosen head; the encoder is shared.
* CTC-only ViT recognizers (``dec_depth=0``, e.g. ``siga-vit-t-ctc``): input ``images`` ``(batch, 3, H, W)``, output
  ``logits`` ``(batch, frames, classes)``.

Class 0 is the CTC blank / end-of-sequence; character ``charset[i]`` is class ``i + 1``. The metadata keys are read
by :func:`str_distill.backends.onnx_reader.read_info`.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backends.onnx_reader import (
    DECODING_CODES,
    INPUT_NAME,
    METADATA_FORMAT,
    OUTPUT_NAME,
    SELECTOR_NAME,
)

__all__ = ["DEFAULT_OPSET", "EXPORT_HINT", "QUANTIZATIONS", "export_onnx", "export_onnx_bytes", "quantize_onnx"]

DEFAULT_OPSET = 17
MIN_OPSET = 17
EXPORT_HINT = 'pip install "str-distill[onnx]"'
#: ``quantize=`` values: dynamic int8 quantization of the MatMul/Gemm weights (transformer layers, heads).
#: Convolutions stay float32: their int8 kernels were both slower and far less accurate on PP-OCRv6.
QUANTIZATIONS = ("int8",)


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs the onnx package: {EXPORT_HINT}") from e
    return onnx


class _PPOCRGraph(nn.Module):
    """``(B, 3, H, W)`` -> CTC logits ``(B, W / 8, C)``: :meth:`PPOCRRecognizer.features` + head, with the
    height pooling kernel as a constant (the traced graph must not depend on the feature map's shape)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():
            probe = torch.zeros(1, 3, model.config.height, 32)
            self.pool_height = int(model.stages(model.stem(probe)).shape[2])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.stages(m.stem(images))
        x = F.avg_pool2d(x, (self.pool_height, 2), (self.pool_height, 2))
        return m.head(m.neck(x))


class _ViTGraph(nn.Module):
    """``(B, 3, 32, 128)`` -> (CTC logits, parallel logits, autoregressive logits), sharing one encoder pass.

    The decoding loops mirror :meth:`ViTRecognizer.decode_parallel` and :meth:`ViTRecognizer.decode_autoregressive` in
    operations ONNX supports (no early stop: every step runs; a bool cumsum becomes an int64 one).
    """

    def __init__(self, model: nn.Module, refine_iters: int) -> None:
        super().__init__()
        self.model = model
        self.refine_iters = refine_iters

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from ..models.model import cloze_mask

        m = self.model
        tok, dec = m.tokenizer, m.decoder
        memory = m.encode(images)
        ctc = m.ctc_logits(memory)
        mkv = dec.memory_kv(memory)
        bos = torch.full_like(memory[:, :1, 0], tok.BOS, dtype=torch.long)
        steps = tok.max_length + 1
        out = dec(dec.content_kv(bos), mkv, start=0, length=steps)
        for _ in range(self.refine_iters):
            ids = out.logits.argmax(-1)[:, :-1]
            eos = (ids == tok.EOS).long()
            after_eos = (eos.cumsum(1) - eos) > 0
            content = torch.cat([bos, ids.masked_fill(after_eos, tok.PAD)], 1)
            out = dec(dec.content_kv(content), mkv, start=0, length=steps, mask=cloze_mask(content, tok.PAD))
        parallel = out.logits
        tokens = bos
        cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        logits = []
        for t in range(steps):
            new = dec.content_kv(tokens[:, t : t + 1], start=t)
            cache = new if t == 0 else [(torch.cat([k, nk], 2), torch.cat([v, nv], 2))
                                        for (k, v), (nk, nv) in zip(cache, new)]
            step = dec(cache, mkv, start=t, length=1).logits
            logits.append(step)
            tokens = torch.cat([tokens, step.argmax(-1)], 1)
        return ctc, parallel, torch.cat(logits, 1)


class _ViTCTCGraph(nn.Module):
    """A CTC-only ViT (``dec_depth=0``): ``(B, 3, 32, 128)`` -> CTC logits ``(B, F, num_classes)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.ctc_logits(self.model.encode(images))


def _family(model: nn.Module) -> str:
    from ..models.model import ViTRecognizer
    from ..models.ppocr import PPOCRRecognizer

    if isinstance(model, PPOCRRecognizer):
        return "ppocr"
    if isinstance(model, ViTRecognizer):
        return "vit" if "attention" in model.decodings else "vit-ctc"
    raise TypeError(f"cannot export {type(model).__name__}: expected an ViTRecognizer or a PPOCRRecognizer")


def export_onnx_bytes(
    model: nn.Module,
    *,
    opset: int = DEFAULT_OPSET,
    refine_iters: int = 1,
    quantize: str | None = None,
    preprocessing: dict[str, Any] | None = None,
    source: str | None = None,
) -> bytes:
    """Export a recognizer to a serialized ONNX model (see :func:`export_onnx` for the arguments)."""
    onnx = _import_onnx()
    family = _family(model)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    if isinstance(refine_iters, bool) or not isinstance(refine_iters, int) or refine_iters < 0:
        raise ValueError(f"refine_iters must be an integer >= 0, got {refine_iters!r}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be None or one of {QUANTIZATIONS}, got {quantize!r}")
    config = _config_with(model.config, preprocessing or {})

    net = model
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters()):
        net = copy.deepcopy(model).to("cpu", torch.float32)
    was_training = net.training
    if family == "ppocr":
        wrapper: nn.Module = _PPOCRGraph(net).eval()
        width = max(int(config.min_width), 64)
        width += -width % int(config.width_multiple)
        dummy = torch.zeros(2, 3, int(config.height), width)
        outputs = [OUTPUT_NAME]
        axes = {INPUT_NAME: {0: "batch", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "frames"}}
    elif family == "vit-ctc":
        wrapper = _ViTCTCGraph(net).eval()
        dummy = torch.zeros(2, 3, *config.img_size)
        outputs = [OUTPUT_NAME]
        axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    else:
        wrapper = _ViTGraph(net, refine_iters).eval()
        dummy = torch.zeros(2, 3, *config.img_size)
        outputs = ["ctc_logits", "parallel_logits", "ar_logits"]
        axes = {INPUT_NAME: {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and exporter notices: the parity tests are the check
            torch.onnx.export(wrapper, (dummy,), buffer, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=outputs, dynamic_axes=axes,
                              do_constant_folding=True)
    finally:
        net.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    if family == "vit":
        _select_by_input(proto, outputs, default=DECODING_CODES["autoregressive"])
    _set_metadata(proto, model, config, family, refine_iters, opset, source, "none")
    onnx.checker.check_model(proto)
    if quantize == "int8":
        proto = _quantize_proto(proto)
    return proto.SerializeToString()


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    refine_iters: int = 1,
    quantize: str | None = None,
    preprocessing: dict[str, Any] | None = None,
    source: str | None = None,
) -> Path:
    """Export a recognizer to one self-contained ``.onnx`` file (weights, charset and preprocessing inside).

    Args:
        model: an :class:`~str_distill.models.ViTRecognizer` (CTC head + parallel and autoregressive attention
            decoding, selected by the ``decoding`` input) or a :class:`~str_distill.models.PPOCRRecognizer`
            (CTC; dynamic width). Any dtype/device: the graph is float32. The model is not modified.
        path: the output file (parent folders are created).
        opset: ONNX opset, at least 17.
        refine_iters: ViT only: refinement passes of parallel decoding baked into the graph.
        quantize: ``"int8"``: dynamic int8 quantization of the MatMul/Gemm weights (see the export docs for its
            measured accuracy and speed); ``None`` keeps float32.
        preprocessing: overrides of the model config's preprocessing fields stored with the file (e.g.
            ``{"min_width": 160}`` for a PP-OCR model); default: the weights' own.
        source: the name recorded in the metadata (default: the architecture).

    Returns:
        ``path``.

    Raises:
        ImportError: the ``onnx`` package (or, for ``quantize``, onnxruntime) is missing.
        TypeError: not a recognizer of a known family.
        ValueError: bad ``opset``, ``refine_iters``, ``quantize`` or ``preprocessing``.
    """
    data = export_onnx_bytes(model, opset=opset, refine_iters=refine_iters, quantize=quantize,
                             preprocessing=preprocessing, source=source)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def quantize_onnx(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantization of an exported file (weights int8, activations quantized at run time); the
    metadata is kept and records ``quantization: int8-dynamic``.

    Raises:
        ImportError: onnx or onnxruntime is missing.
    """
    onnx = _import_onnx()
    proto = _quantize_proto(onnx.load(str(src)))
    out = Path(dst)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out


def _quantize_proto(proto: Any) -> Any:
    import tempfile

    onnx = _import_onnx()
    from ..backends.onnx_reader import import_onnxruntime

    import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    meta = {p.key: p.value for p in proto.metadata_props}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(proto, str(src))
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # the quantizer's advice to pre-process goes to the root logger
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        finally:
            logging.disable(previous)
        out = onnx.load(str(dst))
    meta["quantization"] = "int8-dynamic"
    del out.metadata_props[:]
    onnx.helper.set_model_props(out, meta)
    return out


def _config_with(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of ``config`` with preprocessing fields replaced (checked by the config class)."""
    if not overrides:
        return config
    from ..preprocess import resolve_data_config

    allowed = set(config.data_config()) & set(config.to_dict())
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"preprocessing overrides {unknown} are not fields of {type(config).__name__}'s "
                         f"preprocessing; allowed: {sorted(allowed)}")
    new = type(config).from_dict({**config.to_dict(), **overrides})
    resolve_data_config(new)
    return new


def _set_metadata(proto: Any, model: nn.Module, config: Any, family: str, refine_iters: int, opset: int,
                  source: str | None, quantization: str) -> None:
    from .._version import __version__
    from ..preprocess import resolve_data_config

    onnx = _import_onnx()
    tok = model.tokenizer
    meta = {
        "str_distill_format": METADATA_FORMAT,
        "str_distill_version": __version__,
        "arch": str(config.arch),
        "source": str(source or config.arch),
        "config": json.dumps(config.to_dict()),
        "charset": json.dumps(tok.charset),
        "preprocessing": json.dumps(resolve_data_config(config)),
        # the graph of a PP-OCR model reads with CTC only, also when the model carries an attention decoder
        "decodings": json.dumps(list(model.decodings) if family == "vit" else ["ctc"]),
        "modes": json.dumps(["autoregressive", "parallel"] if family == "vit" else []),
        "refine_iters": str(refine_iters if family == "vit" else 0),
        "max_label_length": str(tok.max_length),
        "blank_index": "0",
        "quantization": quantization,
        "opset": str(opset),
        "inputs": json.dumps({INPUT_NAME: "float32 (batch, 3, height, width), normalized as 'preprocessing' says"}
                             | ({SELECTOR_NAME: f"int64 scalar {DECODING_CODES}"} if family == "vit" else {})),
    }
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    proto.producer_name = "str-distill"
    proto.producer_version = __version__
    proto.doc_string = (f"str-distill {config.arch} recognizer: logits (batch, steps, {tok.num_classes}); class 0 is "
                        "the CTC blank / end-of-sequence, class i + 1 is charset[i]. See the metadata.")


def _select_by_input(proto: Any, outputs: list[str], default: int) -> None:
    """Rewrite a graph with several outputs into one output chosen by an int64 ``decoding`` input.

    The nodes every output needs stay in the main graph; the nodes only some outputs need move into ``If``
    branches (copied into each branch that needs them), so onnxruntime runs only the chosen head.
    ``outputs[k]`` is chosen by ``decoding == k``; the input defaults to ``default`` (an initializer).
    """
    onnx = _import_onnx()
    from onnx import TensorProto, helper

    g = proto.graph
    producer = {name: i for i, node in enumerate(g.node) for name in node.output}
    classes = g.output[0].type.tensor_type.shape.dim[2].dim_value or "classes"
    shape = ["batch", "steps", classes]

    def cone(name: str) -> set[int]:
        seen: set[int] = set()
        stack = [name]
        while stack:
            i = producer.get(stack.pop())
            if i is None or i in seen:
                continue
            seen.add(i)
            stack.extend(x for x in g.node[i].input if x)
        return seen

    cones = [cone(o) for o in outputs]
    shared = set.intersection(*cones)

    def branch(k: int) -> Any:
        nodes = [g.node[i] for i in sorted(cones[k] - shared)]
        produced = {o for n in nodes for o in n.output}
        prefix = f"b{k}/"
        copies = []
        for n in nodes:
            c = copy.deepcopy(n)
            c.name = prefix + (n.name or n.op_type)
            c.input[:] = [prefix + x if x in produced else x for x in n.input]
            c.output[:] = [prefix + x for x in n.output]
            copies.append(c)
        out_name = prefix + outputs[k]
        if outputs[k] not in produced:  # the head is entirely shared (not the case for the ViT heads)
            copies.append(helper.make_node("Identity", [outputs[k]], [out_name], name=prefix + "identity"))
        out = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, shape)
        return helper.make_graph(copies, f"decoding_{k}", [], [out])

    def chain(k: int, out_name: str) -> list[Any]:
        """Nodes computing ``out_name`` = ``outputs[k]`` if decoding == k else the rest of the chain."""
        if k == len(outputs) - 1:
            last = branch(k)
            return [*last.node, helper.make_node("Identity", [last.output[0].name], [out_name],
                                                 name=f"select{k}/identity")]
        const, cond, rest = f"select{k}/code", f"select{k}/is_{k}", f"select{k + 1}/out"
        else_nodes = chain(k + 1, rest)
        else_graph = helper.make_graph(else_nodes, f"select_{k + 1}", [], [
            helper.make_tensor_value_info(rest, TensorProto.FLOAT, shape)])
        return [
            helper.make_node("Constant", [], [const], name=const,
                             value=helper.make_tensor(const, TensorProto.INT64, [], [k])),
            helper.make_node("Equal", [SELECTOR_NAME, const], [cond], name=cond),
            helper.make_node("If", [cond], [out_name], name=f"select{k}/if", then_branch=branch(k),
                             else_branch=else_graph),
        ]

    main = [g.node[i] for i in sorted(shared)]
    new_nodes = main + chain(0, OUTPUT_NAME)
    del g.node[:]
    g.node.extend(new_nodes)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, shape))
    del g.value_info[:]
    g.input.append(helper.make_tensor_value_info(SELECTOR_NAME, TensorProto.INT64, []))
    g.initializer.append(onnx.numpy_helper.from_array(np.asarray(default, dtype=np.int64), SELECTOR_NAME))
