"""The PyTorch backend of :class:`str_distill.Recognizer`: a network of one of the model families, on any device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..devices import resolve_device, resolve_dtype
from .base import Backend

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """Runs an ``nn.Module`` recognizer (:class:`~str_distill.models.ViTRecognizer`,
    :class:`~str_distill.models.PPOCRRecognizer`) in eval mode, on ``device`` in ``dtype``.

    Args:
        model: the network; it is put in eval mode and moved/cast in place.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda[:i]"`` or a :class:`torch.device`.
        dtype: ``float32``, ``bfloat16`` or ``float16`` (CUDA only); ``None`` keeps the model's.
    """

    name = "torch"

    def __init__(self, model: nn.Module, device: str | torch.device = "auto",
                 dtype: str | torch.dtype | None = None) -> None:
        self.model = model.eval()
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.to(device, dtype)

    @property
    def network(self) -> nn.Module:
        return self.model

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> None:
        dev = resolve_device(device) if device is not None else self.device
        dt = resolve_dtype(dtype if dtype is not None else self.dtype, dev)
        self.model.to(device=dev, dtype=dt)
        if getattr(self.model, "channels_last", False):  # convolutional families run faster in NHWC
            self.model.to(memory_format=torch.channels_last)
        self.device, self.dtype = dev, dt

    def forward(self, images: torch.Tensor, decoding: str, mode: str, refine_iters: int,
                return_attention: bool) -> Any:
        x = images.to(self.device, self.dtype)
        if getattr(self.model, "channels_last", False):
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(x, decoding, mode, refine_iters, return_attention)

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> Path:
        from ..hub.serialization import save_pretrained

        return save_pretrained(self.model, directory, **kwargs)

    def describe(self) -> str:
        return ""
