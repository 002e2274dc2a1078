"""What runs a recognizer's network: the interface between :class:`str_distill.Recognizer` and a runtime.

:class:`Backend` is all the predictor knows of the runtime: it hands normalized images to :meth:`Backend.forward` and
gets logits back; loading, preprocessing, batching and decoding stay the predictor's own code whichever backend runs
the network. Two implementations:

* :class:`~str_distill.backends.torch_backend.TorchBackend`: a PyTorch ``nn.Module`` of one of the model families,
  on any device and in float32, bfloat16 or float16;
* :class:`~str_distill.backends.ort_model.ONNXRuntimeBackend`: an exported file run by onnxruntime on the CPU in
  float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from ..devices import DTYPE_ALIASES

__all__ = ["Backend", "check_cpu_float32"]


class Backend(ABC):
    """A runtime for one recognizer network.

    Attributes:
        name: ``"torch"`` or ``"onnxruntime"``.
        device, dtype: where and in what precision the network runs.
    """

    name: str
    device: torch.device
    dtype: torch.dtype

    @property
    @abstractmethod
    def network(self) -> Any:
        """What describes the network to the predictor: ``config`` (preprocessing, architecture), ``tokenizer``
        (decoding), ``decodings`` (the methods it can decode with); for torch, the ``nn.Module`` itself."""

    @abstractmethod
    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> None:
        """Move/cast the network (``None`` keeps the current one).

        Raises:
            ValueError: a device or dtype this backend cannot run on.
        """

    def check_options(self, decoding: str, mode: str, refine_iters: int, return_attention: bool) -> None:
        """Refuse, before anything is read, decoding options the backend cannot honour (default: all are fine).

        Raises:
            ValueError: naming the option and what to do instead.
        """
        return None

    @abstractmethod
    def forward(self, images: torch.Tensor, decoding: str, mode: str, refine_iters: int,
                return_attention: bool) -> Any:
        """Normalized images ``(B, 3, H, W)`` float32 (any device) -> the network's
        :class:`~str_distill.models.decoder.DecoderOutput` (``logits (B, T, classes)``, attention maps if asked),
        computed without autograd."""

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> Path:
        """Write the weights as ``config.json`` + ``model.safetensors`` (default: refused).

        Raises:
            ValueError: this backend has no weights to write in that form.
        """
        raise ValueError(f"save_pretrained() needs the torch backend; this recognizer runs {self.name}")

    def describe(self) -> str:
        """What ``repr(Recognizer)`` adds about the backend (``""`` for torch)."""
        return f", backend={self.name!r}"


def check_cpu_float32(backend: str, device: str | torch.device | None, dtype: str | torch.dtype | None) -> None:
    """A backend that runs on the CPU in float32 only: refuse any other device or dtype (``"auto"`` and ``None``
    are fine).

    Raises:
        ValueError: naming the backend and the refused value.
    """
    if device is not None and not (isinstance(device, str) and device == "auto"):
        if torch.device(device).type != "cpu":
            raise ValueError(f"the {backend} backend runs on the CPU; got device={str(device)!r}")
    if dtype is not None and (DTYPE_ALIASES.get(dtype, dtype) if isinstance(dtype, str) else dtype) != torch.float32:
        raise ValueError(f"the {backend} backend runs in float32 (quantize at export for int8); got dtype={dtype!r}")
