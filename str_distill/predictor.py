"""The inference API: :class:`Recognizer` turns images of any supported type into :class:`Prediction` objects.

>>> from str_distill import Recognizer
>>> rec = Recognizer.from_pretrained("path/to/model_dir")  # doctest: +SKIP
>>> pred = rec.predict(["word.png"])[0]  # doctest: +SKIP
>>> pred.text, pred.confidence, pred.char_probs  # doctest: +SKIP

The network itself is a pure ``nn.Module`` of one of the model families (:class:`~str_distill.models.STRModel`,
:class:`~str_distill.models.PPOCRRecognizer`); this module adds loading, preprocessing (described by the weights'
config, :func:`~str_distill.preprocess.resolve_data_config`), batching, device/dtype handling and decoding to text.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .preprocess import InputError, Preprocessor, iter_inputs, load_image

__all__ = ["DEFAULT_MODEL", "InputError", "Prediction", "Recognizer", "resolve_decoding", "resolve_device",
           "resolve_dtype"]

#: What ``Recognizer.from_pretrained()`` loads without a name: the manifest's ``default`` (this is the fallback).
DEFAULT_MODEL = "ppocrv6-small.en"
#: Accepted spellings of the decoding methods.
_DECODINGS = {"attention": "attention", "ctc": "ctc", "greedy": "ctc"}


def resolve_decoding(model: nn.Module | None, decoding: str | None) -> str:
    """The decoding method to use: ``None`` gives the model's first (``"attention"`` for ViT recognizers,
    ``"ctc"`` for CTC-only models); ``"greedy"`` is another name for greedy CTC decoding.

    Raises:
        ValueError: for an unknown name or one the model cannot do (the message says which it can).
    """
    supported = tuple(getattr(model, "decodings", ("attention", "ctc")))
    if decoding is None:
        return supported[0]
    name = _DECODINGS.get(decoding) if isinstance(decoding, str) else None
    if name is None:
        raise ValueError(f"decoding must be 'attention', 'ctc' or 'greedy' (= 'ctc'), got {decoding!r}")
    if name not in supported:
        arch = getattr(getattr(model, "config", None), "arch", type(model).__name__)
        raise ValueError(f"{arch} cannot decode with {decoding!r}: it supports {', '.join(supported)}")
    return name

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class Prediction:
    """The reading of one image.

    Attributes:
        text: the recognized string.
        confidence: in ``[0, 1]``. Attention decoding: the product of the per-character maximum probabilities and
            the end-of-sequence probability; CTC: the probability of the greedy frame path.
        char_probs: float32 tensor ``(len(text),)``, the probability of each character.
        attention: attention decoding with ``return_attention=True`` only: float32 tensor ``(T, grid_h, grid_w)``,
            the decoder's cross-attention (last layer, mean over heads) over the encoder's token grid at each step:
            ``T = len(text) + 1``, one step per character plus the end-of-sequence step.
    """

    text: str
    confidence: float
    char_probs: torch.Tensor
    attention: torch.Tensor | None = None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise ``torch.device(device)``, checked to exist."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Inference dtype: float32 (default), bfloat16, or float16 on CUDA only.

    Raises:
        ValueError: for other dtypes and for float16 on the CPU (use bfloat16 there).
    """
    dt = _DTYPES.get(dtype, dtype) if isinstance(dtype, str) else (dtype or torch.float32)
    if dt not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
    if dt == torch.float16 and device.type == "cpu":
        raise ValueError("float16 inference is not supported on the CPU (slow, emulated kernels); "
                         "use dtype='bfloat16' or 'float32' there, or a CUDA device")
    return dt


class Recognizer:
    """A recognizer ready for inference: model + preprocessing + batching + decoding.

    Args:
        model: the network (:class:`~str_distill.models.STRModel` or
            :class:`~str_distill.models.PPOCRRecognizer`); it is put in eval mode and moved/cast in place.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda[:i]"`` or a :class:`torch.device`.
        dtype: ``float32``, ``bfloat16`` (CPU or CUDA) or ``float16`` (CUDA only); strings accepted. ``None``
            keeps the model's dtype (float32 for :meth:`from_pretrained`).
        keep_aspect_ratio, rotate_tall: see :class:`~str_distill.preprocess.Preprocessor`.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        keep_aspect_ratio: bool = False,
        rotate_tall: bool = False,
    ) -> None:
        self._model = model.eval()
        self.preprocessor = Preprocessor(model.config, keep_aspect_ratio, rotate_tall)
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.to(device, dtype)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        cache_dir: str | Path | None = None,
        keep_aspect_ratio: bool = False,
        rotate_tall: bool = False,
    ) -> Recognizer:
        """Load weights from a manifest name, a local directory or ``.safetensors`` file, or ``hf-hub:org/repo``.

        Without a name, the manifest's default model (bundled in the package, read offline). See
        :func:`str_distill.hub.loading.load_model` for the resolution order and the errors raised.

        ``dtype=None``: float32, except on the CPU for a manifest name whose record measured bfloat16 to read the
        same text faster (its ``inference.cpu_dtype``; ``str-distill models --json`` shows it).
        """
        from .hub.loading import load_model
        from .hub.manifest import default_model, get_record

        if name_or_path is None:
            name_or_path = default_model()
        model = load_model(name_or_path, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)
        if dtype is None and isinstance(name_or_path, str) and resolve_device(device).type == "cpu":
            record = get_record(name_or_path) or {}
            dtype = (record.get("inference") or {}).get("cpu_dtype")
        return cls(model, device, dtype, keep_aspect_ratio, rotate_tall)

    @property
    def model(self) -> nn.Module:
        """The underlying network (a pure ``nn.Module``)."""
        return self._model

    def __repr__(self) -> str:
        return f"Recognizer(arch={self._model.config.arch!r}, device={self.device}, dtype={self.dtype})"

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> Recognizer:
        """Move the model to ``device`` and/or cast it to ``dtype`` (``None`` keeps the current one). Returns self."""
        dev = resolve_device(device) if device is not None else self.device
        dt = resolve_dtype(dtype if dtype is not None else self.dtype, dev)
        self._model.to(device=dev, dtype=dt)
        if getattr(self._model, "channels_last", False):  # convolutional families run faster in NHWC
            self._model.to(memory_format=torch.channels_last)
        self.device, self.dtype = dev, dt
        return self

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> Path:
        """Write ``config.json`` + ``model.safetensors``; kwargs go to :func:`str_distill.hub.save_pretrained`."""
        from .hub.serialization import save_pretrained

        return save_pretrained(self._model, directory, **kwargs)

    def predict(
        self,
        images: Any,
        batch_size: int = 64,
        decoding: Literal["attention", "ctc", "greedy"] | None = None,
        mode: Literal["autoregressive", "parallel"] = "autoregressive",
        refine_iters: int = 1,
        return_attention: bool = False,
        progress: bool = False,
        errors: Literal["raise", "return"] = "raise",
    ) -> list[Any]:
        """Read every image; results come back in input order.

        Args:
            images: one image or an iterable (list, generator, ...) of paths, bytes, PIL images, numpy arrays or
                tensors, mixed freely; a ``(B, C, H, W)`` tensor counts as ``B`` images. Iterables are streamed:
                at most ``batch_size`` images are held at a time.
            batch_size: images per forward pass.
            decoding: ``"attention"`` (the decoder) or ``"ctc"`` (the CTC head, one pass, faster; ``"greedy"`` is
                another name for it). ``None``: the model's first method (attention for ViT recognizers, CTC for
                CTC-only models such as ``ppocrv6-small``).
            mode: attention decoding only: ``"autoregressive"`` or ``"parallel"`` (+ ``refine_iters`` refinements).
            return_attention: attention decoding only: fill :attr:`Prediction.attention`.
            progress: show a tqdm progress bar on stderr.
            errors: ``"raise"``: an unreadable input raises :class:`InputError` naming its index or path;
                ``"return"``: its slot in the result holds the :class:`InputError` and the others are still read.

        Returns:
            ``list[Prediction]`` (with ``errors="return"``, :class:`InputError` in the slots of failed inputs).
        """
        return list(self.iter_predict(images, batch_size, decoding, mode, refine_iters, return_attention, progress,
                                      errors))

    def iter_predict(
        self,
        images: Any,
        batch_size: int = 64,
        decoding: Literal["attention", "ctc", "greedy"] | None = None,
        mode: Literal["autoregressive", "parallel"] = "autoregressive",
        refine_iters: int = 1,
        return_attention: bool = False,
        progress: bool = False,
        errors: Literal["raise", "return"] = "raise",
    ) -> Iterator[Any]:
        """Like :meth:`predict`, but a generator yielding each batch's results as soon as they are ready."""
        decoding = resolve_decoding(self._model, decoding)
        if mode not in ("autoregressive", "parallel"):
            raise ValueError(f"mode must be 'autoregressive' or 'parallel', got {mode!r}")
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        if return_attention and decoding != "attention":
            raise ValueError("return_attention=True needs decoding='attention' (CTC has no attention maps)")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items = iter_inputs(images)  # raises TypeError now, not at the first next()
        return self._stream(items, _length(images), int(batch_size), decoding, mode, refine_iters, return_attention,
                            progress, errors)

    def _stream(self, items: Iterator[tuple[int, str, Any]], total: int | None, batch_size: int, decoding: str,
                mode: str, refine_iters: int, return_attention: bool, progress: bool, errors: str) -> Iterator[Any]:
        from tqdm.auto import tqdm

        with tqdm(total=total, disable=not progress, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            while chunk := list(islice(items, batch_size)):
                slots: list[InputError | None] = []
                tensors: list[torch.Tensor] = []
                for index, name, x in chunk:
                    try:
                        tensors.append(self.preprocessor(load_image(x, name)))
                        slots.append(None)
                    except InputError as e:
                        e.index = index
                        if errors == "raise":
                            raise
                        slots.append(e)
                del chunk
                results: list[Prediction | None] = [None] * len(tensors)
                for idx, batch in self.preprocessor.batches(tensors):
                    for i, p in zip(idx, self._run(batch, decoding, mode, refine_iters, return_attention)):
                        results[i] = p
                del tensors
                preds = iter(results)
                bar.update(len(slots))
                yield from (next(preds) if s is None else s for s in slots)

    def _run(self, x: torch.Tensor, decoding: str, mode: str, refine_iters: int, return_attention: bool
             ) -> list[Prediction]:
        """Normalized images ``(B, 3, H, W)`` -> one :class:`Prediction` each."""
        x = x.to(self.device, self.dtype)
        if getattr(self._model, "channels_last", False):
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self._model(x, decoding, mode, refine_iters, return_attention)
            probs = out.logits.float().softmax(-1).cpu()
            attn = out.attn.float().cpu() if out.attn is not None else None
        decoded = self._model.tokenizer.decode(probs, mode="ctc" if decoding == "ctc" else "attention")
        gh, gw = self._model.config.grid_size if attn is not None else (0, 0)
        preds = []
        for i, d in enumerate(decoded):
            maps = None
            if attn is not None:
                steps = min(len(d.text) + 1, attn.shape[1])
                maps = attn[i, :steps].reshape(steps, gh, gw).clone()
            preds.append(Prediction(d.text, d.confidence, d.char_probs, maps))
        return preds


def _length(images: Any) -> int | None:
    """How many images ``images`` holds, if known without consuming it (for the progress bar)."""
    if isinstance(images, torch.Tensor):
        return images.shape[0] if images.ndim == 4 else 1
    if isinstance(images, (list, tuple)):
        return sum(x.shape[0] if isinstance(x, torch.Tensor) and x.ndim == 4 else 1 for x in images)
    return None if isinstance(images, Iterable) and not isinstance(images, (str, bytes, bytearray)) else 1
