"""Export recognizers for deployment: :func:`export_onnx` writes one self-contained ``.onnx`` file per model.

>>> from str_distill.export import export_onnx
>>> export_onnx(model, "model.onnx")  # doctest: +SKIP

Read the file back with ``Recognizer.from_pretrained("model.onnx")`` (onnxruntime backend) or, without torch, with
:class:`str_distill.backends.onnx_reader.ONNXReader`. Exporting needs the ``onnx`` package (``pip install
"str-distill[onnx]"``).
"""

from __future__ import annotations

from .onnx_export import DEFAULT_OPSET, QUANTIZATIONS, export_onnx, export_onnx_bytes, quantize_onnx

__all__ = ["DEFAULT_OPSET", "QUANTIZATIONS", "export_onnx", "export_onnx_bytes", "quantize_onnx"]
