"""Inference backends other than torch.

* :mod:`str_distill.backends.base`: :class:`~str_distill.backends.base.Backend`, what runs a recognizer's network
  for :class:`str_distill.Recognizer` (normalized images in, logits out), with two implementations:
  :class:`~str_distill.backends.torch_backend.TorchBackend` (a PyTorch network) and
  :class:`~str_distill.backends.ort_model.ONNXRuntimeBackend` (an exported file run by onnxruntime;
  ``Recognizer.from_pretrained(..., backend="onnxruntime")`` uses it; formerly ``ONNXRuntimeModel``).
* :mod:`str_distill.backends.onnx_reader`: :class:`~str_distill.backends.onnx_reader.ONNXReader`, the same reading
  with onnxruntime, numpy and Pillow only (no torch; the file can be copied into a service on its own).

Nothing is imported here, so that importing this package costs nothing.
"""
