"""Convert the published PP-OCRv6 small recognizer (ONNX) into a native :class:`PPOCRRecognizer` folder.

The ONNX graph is the specification: its parameter tensors are read in graph order, by the operator that consumes
them (a ``Conv`` weight and the bias ``Add`` that follows it, the four ``BatchNormalization`` tensors, a decomposed
LayerNorm's scale and shift, a ``MatMul`` weight and its bias ``Add``), and paired one to one with the parameters
of our module in its execution order. Every name is checked: a tensor of the wrong shape, a missing one, or one
left over is an error that names the ONNX tensor and what our module expected there. Nothing is guessed.

The charset comes from the file's ``character`` metadata. ``onnx`` is needed only here (``pip install
"str-distill[convert]"``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.ppocr import PPOCRConfig, PPOCRRecognizer
from .serialization import save_pretrained, sha256_file

__all__ = [
    "PPOCRV6_SMALL_FILE",
    "ConversionError",
    "convert_ppocr",
    "find_rapidocr_model",
    "load_ppocr_onnx",
    "prune_charset",
]

#: The recognizer's file inside the ``rapidocr`` wheel (version 3.10.0).
PPOCRV6_SMALL_FILE = "models/PP-OCRv6_rec_small.onnx"
PPOCRV6_SMALL_SHA256 = "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884"


class ConversionError(ValueError):
    """The ONNX file does not match the architecture; the message names the tensor and what was expected."""


@dataclass
class _Slot:
    """One parameter group of the ONNX graph: an operator and its initializers, in graph order."""

    kind: str  # "conv", "bn", "ln", "linear"
    node: str
    tensors: list[tuple[str, np.ndarray]]


def find_rapidocr_model(relative: str = PPOCRV6_SMALL_FILE) -> Path:
    """The ONNX file inside an installed ``rapidocr`` package (located without importing it).

    Raises:
        FileNotFoundError: ``rapidocr`` is not installed, or lacks the file.
    """
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no ONNX file given and the 'rapidocr' package is not installed: `pip install rapidocr==3.10.0` "
            "(its wheel carries PP-OCRv6_rec_small.onnx), or pass the path of the .onnx file"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the installed rapidocr; install rapidocr==3.10.0 or pass a path")
    return path


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError('converting an ONNX model needs the onnx package: pip install "str-distill[convert]"'
                          ) from None
    return onnx


def read_onnx(path: Path) -> Any:
    """The ONNX model proto of ``path``.

    Raises:
        FileNotFoundError: no such file; ConversionError: not a readable ONNX model (the message names the file).
    """
    onnx = _onnx()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as e:
        raise ConversionError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from e


def _slots(model: Any) -> tuple[list[_Slot], set[str]]:
    """Parameter groups in graph order, and the names of every float initializer with more than one element."""
    from onnx import numpy_helper

    g = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, [])
            consumers[i].append(n)

    def follow(name: str) -> Any:  # skip Identity nodes
        nodes = consumers.get(name, [])
        while len(nodes) == 1 and nodes[0].op_type == "Identity":
            nodes = consumers.get(nodes[0].output[0], [])
        return nodes

    def bias_after(out: str) -> tuple[str, np.ndarray] | None:
        nxt = follow(out)
        if len(nxt) == 1 and nxt[0].op_type == "Add":
            other = [i for i in nxt[0].input if i in init]
            if len(other) == 1:
                return other[0], init[other[0]]
        return None

    slots: list[_Slot] = []
    for n in g.node:
        if n.op_type == "Conv" or (n.op_type == "MatMul" and n.input[1] in init):
            w = (n.input[1], init[n.input[1]])
            b = bias_after(n.output[0])
            if n.op_type == "Conv" and len(n.input) > 2:
                b = (n.input[2], init[n.input[2]])
            kind = "conv" if n.op_type == "Conv" else "linear"
            slots.append(_Slot(kind, n.name or n.output[0], [w, *([b] if b else [])]))
        elif n.op_type == "BatchNormalization":
            slots.append(_Slot("bn", n.name or n.output[0], [(i, init[i]) for i in n.input[1:5]]))
        elif n.op_type == "Div" and any(c.op_type == "Mul" for c in follow(n.output[0])):
            # decomposed LayerNorm: (x - mean) / sqrt(var + eps) * scale + shift
            mul = [c for c in follow(n.output[0]) if c.op_type == "Mul"][0]
            scale = [i for i in mul.input if i in init]
            if len(scale) != 1:
                continue
            shift = bias_after(mul.output[0])
            if shift is None:
                continue
            slots.append(_Slot("ln", n.name or n.output[0], [(scale[0], init[scale[0]]), shift]))
    params = {k for k, v in init.items() if v.dtype.kind == "f" and v.size > 1}
    return slots, params


def _targets(model: PPOCRRecognizer) -> list[tuple[str, str, list[str]]]:
    """Our parameter groups in execution order: (kind, module name, state-dict keys)."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out.append(("conv", name, [f"{name}.weight"] + ([f"{name}.bias"] if m.bias is not None else [])))
        elif isinstance(m, nn.BatchNorm2d):
            out.append(("bn", name, [f"{name}.weight", f"{name}.bias", f"{name}.running_mean", f"{name}.running_var"]))
        elif isinstance(m, nn.LayerNorm):
            out.append(("ln", name, [f"{name}.weight", f"{name}.bias"]))
        elif isinstance(m, nn.Linear):
            out.append(("linear", name, [f"{name}.weight", f"{name}.bias"]))
    return out


def _charset(model: Any) -> list[str]:
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise ConversionError("the ONNX file has no 'character' metadata (the recognizer's dictionary)")
    return [c for c in meta["character"].split("\n") if c]


def load_ppocr_onnx(path: str | Path, config: PPOCRConfig | None = None) -> tuple[PPOCRRecognizer, dict[str, Any]]:
    """Build a :class:`PPOCRRecognizer` holding the weights of a PP-OCR recognizer ONNX file.

    Args:
        path: the ``.onnx`` file.
        config: the architecture (default: ``ppocrv6-small`` with the file's full charset).

    Returns:
        ``(model, info)``: the float32 model in eval mode, and ``info`` with the source's ``sha256``, ``bytes``,
        ``opset`` and the tensor-name mapping (``onnx name -> our state-dict key``).

    Raises:
        ConversionError: naming the tensor that does not fit (missing, wrong shape, left over) or a charset mismatch.
    """
    path = Path(path)
    proto = read_onnx(path)
    chars = _charset(proto)
    config = config or PPOCRConfig()
    model = PPOCRRecognizer(config).eval()
    n_cls = model.tokenizer.num_classes
    if len(chars) + 2 != n_cls:
        raise ConversionError(
            f"{path}: its dictionary has {len(chars)} characters (+ blank + space = {len(chars) + 2} classes) but "
            f"the config's charset {config.charset!r} gives {n_cls} classes"
        )
    ours = model.tokenizer.charset
    if "".join(chars) + " " != ours:
        bad = next(i for i, (a, b) in enumerate(zip("".join(chars) + " ", ours)) if a != b)
        raise ConversionError(f"{path}: dictionary entry {bad + 1} is {chars[bad]!r} but our charset has "
                              f"{ours[bad]!r} there")
    slots, params = _slots(proto)
    targets = _targets(model)
    state = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    mapping: dict[str, str] = {}
    for i, (kind, mod, keys) in enumerate(targets):
        if i >= len(slots):
            raise ConversionError(f"{path}: the graph has no tensors left for our {kind} layer {mod!r} "
                                  f"(expected {[tuple(state[k].shape) for k in keys]}); is this the right model?")
        slot = slots[i]
        if slot.kind != kind or len(slot.tensors) != len(keys):
            got = ", ".join(f"{n} {tuple(a.shape)}" for n, a in slot.tensors)
            raise ConversionError(
                f"{path}: graph node {slot.node!r} ({slot.kind}: {got}) is where our {kind} layer {mod!r} expects "
                f"{', '.join(f'{k} {tuple(state[k].shape)}' for k in keys)}"
            )
        for (oname, arr), key in zip(slot.tensors, keys):
            t = torch.from_numpy(np.array(arr, dtype=np.float32))
            if kind == "linear" and key.endswith(".weight"):
                t = t.t()  # MatMul stores (in, out)
            elif kind == "conv" and key.endswith(".bias"):
                t = t.reshape(-1)  # the bias Add's (1, C, 1, 1)
            if tuple(t.shape) != tuple(state[key].shape):
                raise ConversionError(f"{path}: tensor {oname!r} has shape {tuple(arr.shape)}; our {key!r} expects "
                                      f"{tuple(state[key].shape)}")
            new_state[key] = t
            mapping[oname] = key
    if len(slots) > len(targets):
        extra = slots[len(targets)]
        raise ConversionError(f"{path}: graph node {extra.node!r} ({extra.kind}, tensor {extra.tensors[0][0]!r}) "
                              f"has no counterpart in our model: the file holds a different architecture")
    unused = sorted(params - set(mapping))
    if unused:
        raise ConversionError(f"{path}: parameter tensors not mapped onto our model: {unused[:8]}")
    missing = [k for k in state if k not in new_state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConversionError(f"{path}: our parameters {missing[:8]} received no tensor")
    model.load_state_dict(new_state, strict=False)
    info = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "file": path.name,
            "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
            "tensors_mapped": len(mapping)}
    return model, info


def prune_charset(model: PPOCRRecognizer, charset: str) -> PPOCRRecognizer:
    """A copy of ``model`` whose CTC head keeps only ``charset``'s rows (every character must be in the model's).

    Rows are taken by character, so the new charset may list them in any order; the blank stays class 0.
    """
    src = model.tokenizer.charset
    pos = {c: i + 1 for i, c in enumerate(src)}
    missing = [c for c in charset if c not in pos]
    if missing:
        raise ValueError(f"characters {''.join(missing)!r} are not in the model's charset")
    cfg = PPOCRConfig.from_dict({**model.config.to_dict(), "charset": charset})
    new = PPOCRRecognizer(cfg).eval()
    state = model.state_dict()
    from ..tokenizer import resolve_charset

    rows = torch.tensor([0] + [pos[c] for c in resolve_charset(charset)])
    state["head.weight"] = state["head.weight"][rows].clone()
    state["head.bias"] = state["head.bias"][rows].clone()
    new.load_state_dict(state, strict=True)
    return new


def convert_ppocr(
    onnx_path: str | Path | None,
    output: str | Path,
    charset: str = "ppocrv6",
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Convert a PP-OCRv6 small recognizer ONNX file into a ``save_pretrained`` folder.

    Args:
        onnx_path: the ``.onnx`` file; ``None`` finds it inside an installed ``rapidocr`` (3.10.0).
        output: the folder to write (``config.json`` + ``model.safetensors``).
        charset: ``"ppocrv6"`` keeps the full multilingual head (18,710 classes); ``"ppocrv6-en"`` (or any subset
            of its characters) prunes the head to those rows.
        dtype: store floating tensors in this dtype (e.g. ``torch.float16``); default float32.

    Returns:
        ``info`` from :func:`load_ppocr_onnx` plus ``output`` and ``charset``. The source's sha256, file name and
        size are also written into the weights' metadata (``source_sha256``, ``source_file``, ``source_bytes``).
    """
    src = Path(onnx_path) if onnx_path is not None else find_rapidocr_model()
    model, info = load_ppocr_onnx(src)
    if charset != model.config.charset:
        model = prune_charset(model, charset)
    meta = {"source_file": info["file"], "source_sha256": info["sha256"], "source_bytes": str(info["bytes"])}
    save_pretrained(model, output, dtype=dtype, metadata=meta)
    return {**info, "output": str(output), "charset": charset, "num_parameters": model.num_parameters()}
