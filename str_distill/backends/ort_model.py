"""The onnxruntime backend of :class:`str_distill.Recognizer`: an exported recognizer run by onnxruntime.

:class:`ONNXRuntimeBackend` implements :class:`~str_distill.backends.base.Backend`: :meth:`~ONNXRuntimeBackend.forward`
turns normalized images into a :class:`~str_distill.models.decoder.DecoderOutput` with logits, and the backend
carries the ``config``, ``tokenizer`` and ``decodings`` the predictor reads (rebuilt from the file's metadata), so
loading, preprocessing, batching and decoding are the predictor's own code whichever backend runs the network.
``ONNXRuntimeModel`` is its former name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.decoder import DecoderOutput
from ..tokenizer import Tokenizer
from .base import Backend, check_cpu_float32
from .onnx_reader import INPUT_NAME, OUTPUT_NAME, SELECTOR_NAME, ONNXInfo, create_session, read_info, selector_value

__all__ = ["ONNXRuntimeBackend", "ONNXRuntimeModel"]


class ONNXRuntimeBackend(Backend):
    """An exported recognizer run by onnxruntime on the CPU, in float32 (or int8 weights if quantized).

    Args:
        session: an ``onnxruntime.InferenceSession`` of a file written by :func:`str_distill.export.export_onnx`.
        source: where it came from (for messages and ``repr``).

    Attributes:
        config: the model config rebuilt from the file's metadata (drives the preprocessing).
        tokenizer: decodes the logits (charset from the metadata).
        decodings: ``("ctc",)`` or ``("attention", "ctc")``.
        info: the parsed metadata (:class:`~str_distill.backends.onnx_reader.ONNXInfo`).
    """

    name = "onnxruntime"
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, session: Any, source: str = "model") -> None:
        from ..models.registry import config_from_dict

        self.session = session
        self.source = source
        self.info: ONNXInfo = read_info(session.get_modelmeta().custom_metadata_map, source)
        self.config = config_from_dict(self.info.config)
        self.tokenizer = Tokenizer(self.info.charset, self.info.max_label_length)
        self.decodings = self.info.decodings

    @classmethod
    def from_file(cls, path: str | Path, threads: int | None = None, optimization: str = "all"
                  ) -> ONNXRuntimeBackend:
        """Open an exported ``.onnx`` file (torch is not used to run it).

        Raises:
            FileNotFoundError: no such file.
            ImportError: onnxruntime is missing (the message says how to install it).
            ValueError: the file was not written by ``str-distill export``.
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such ONNX file")
        return cls(create_session(p, threads, optimization), str(p))

    @classmethod
    def from_model(cls, model: nn.Module, threads: int | None = None, optimization: str = "all",
                   source: str | None = None, **export_kwargs: Any) -> ONNXRuntimeBackend:
        """Export a torch network in memory (:func:`str_distill.export.export_onnx`) and open it.

        Raises:
            ImportError: onnx or onnxruntime is missing (the message says how to install them).
        """
        from .onnx_reader import import_onnxruntime

        import_onnxruntime()  # the clearer message first: exporting needs onnx too
        from ..export import export_onnx_bytes

        name = source or getattr(model.config, "arch", type(model).__name__)
        data = export_onnx_bytes(model, source=name, **export_kwargs)
        return cls(create_session(data, threads, optimization), name)

    @property
    def network(self) -> ONNXRuntimeBackend:
        """The backend itself: it carries the ``config``, ``tokenizer`` and ``decodings`` of the exported file."""
        return self

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> None:
        """The file runs on the CPU in float32: anything else raises ``ValueError``."""
        check_cpu_float32(self.name, device, dtype)

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> Path:
        raise ValueError(f"save_pretrained() needs the torch backend; this recognizer runs {self.name} (its .onnx "
                         "file is already the saved form)")

    def __repr__(self) -> str:
        return (f"ONNXRuntimeBackend(arch={self.info.arch!r}, source={self.source!r}, decodings={self.decodings}, "
                f"quantization={self.info.quantization!r})")

    def check_options(self, decoding: str, mode: str = "autoregressive", refine_iters: int = 1,
                      return_attention: bool = False) -> None:
        """Refuse options the exported file cannot honour, before anything is read.

        Raises:
            ValueError: see :meth:`selector`.
        """
        self.selector(decoding, mode, refine_iters, return_attention)

    def selector(self, decoding: str, mode: str = "autoregressive", refine_iters: int = 1,
                 return_attn: bool = False) -> int | None:
        """The ``decoding`` input for these options (``None``: a CTC-only file).

        Raises:
            ValueError: a decoding the file does not contain, attention maps (not exported), or a number of
                refinement passes other than the one built into the file.
        """
        if return_attn:
            raise ValueError("attention maps are not part of the ONNX export; use the torch backend for "
                             "return_attention=True")
        code = selector_value(self.info, decoding, mode)
        if decoding == "attention" and mode == "parallel" and refine_iters != self.info.refine_iters:
            raise ValueError(f"this ONNX file was exported with refine_iters={self.info.refine_iters}; got "
                             f"refine_iters={refine_iters} (re-export with --refine-iters {refine_iters})")
        return code

    def forward(
        self,
        images: torch.Tensor,
        decoding: str = "ctc",
        mode: str = "autoregressive",
        refine_iters: int = 1,
        return_attention: bool = False,
    ) -> DecoderOutput:
        """``(B, 3, H, W)`` normalized float32 images -> :class:`DecoderOutput` with logits ``(B, T, C)``.

        Raises:
            ValueError: see :meth:`selector`.
        """
        code = self.selector(decoding, mode, refine_iters, return_attention)
        feeds = {INPUT_NAME: np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())}
        if code is not None:
            feeds[SELECTOR_NAME] = np.asarray(code, dtype=np.int64)
        logits = self.session.run([OUTPUT_NAME], feeds)[0]
        return DecoderOutput(torch.from_numpy(logits))

    def __call__(self, images: torch.Tensor, decoding: str = "ctc", mode: str = "autoregressive",
                 refine_iters: int = 1, return_attention: bool = False) -> DecoderOutput:
        """The same as :meth:`forward`: code that calls a network (``recognizer.model(x, "ctc")``) runs either."""
        return self.forward(images, decoding, mode, refine_iters, return_attention)


#: The former name of :class:`ONNXRuntimeBackend` (kept for code that imports it).
ONNXRuntimeModel = ONNXRuntimeBackend
