"""Inference backends other than torch.

* :mod:`str_distill.backends.ort_model`: :class:`~str_distill.backends.ort_model.ONNXRuntimeModel`, an exported
  recognizer run by onnxruntime behind the torch networks' call signature; ``Recognizer.from_pretrained(...,
  backend="onnxruntime")`` uses it.
* :mod:`str_distill.backends.onnx_reader`: :class:`~str_distill.backends.onnx_reader.ONNXReader`, the same reading
  with onnxruntime, numpy and Pillow only (no torch; the file can be copied into a service on its own).

Nothing is imported here, so that importing this package costs nothing.
"""
