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
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .preprocess import MAX_PIXELS, InputError, Preprocessor, iter_inputs, load_image, resolve_data_config

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


def _with_min_width(config: Any, min_width: int | None) -> Any:
    """``config``'s preprocessing description with ``min_width`` replaced (``None``: ``config`` itself)."""
    if min_width is None:
        return config
    if isinstance(min_width, bool) or not isinstance(min_width, int) or min_width < 0:
        raise ValueError(f"min_width must be a non-negative integer or None, got {min_width!r}")
    data = resolve_data_config(config)
    if data["resize"] != "keep_ratio_pad":
        raise ValueError(f"min_width applies to variable-width models; {config.arch!r} reads a fixed "
                         f"{data['height']}x{data['width']} input")
    if min_width > data["max_width"]:
        raise ValueError(f"min_width {min_width} is larger than the model's max_width {data['max_width']}")
    return {**data, "min_width": min_width}


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
        max_pixels: inputs of more pixels are an :class:`InputError` (default 25 megapixels; JPEGs are first
            decoded at 1/2, 1/4 or 1/8 scale if that fits); ``None``: no limit (see
            :func:`~str_distill.preprocess.load_image`).
        min_width: variable-width models only: pad narrower images to this width instead of the weights' own
            ``min_width`` (``None``). The network's time grows with the padded width, so a smaller value reads
            short words faster, at an accuracy that must be measured (see the models documentation).

    Thread safety: ``predict`` and ``iter_predict`` may be called from several threads at once on one recognizer
    (they read the model and change nothing); ``to()`` must not run while another thread predicts.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        keep_aspect_ratio: bool = False,
        rotate_tall: bool = False,
        max_pixels: int | None = MAX_PIXELS,
        min_width: int | None = None,
    ) -> None:
        self._model = model.eval()
        self.max_pixels = max_pixels
        self.preprocessor = Preprocessor(_with_min_width(model.config, min_width), keep_aspect_ratio, rotate_tall)
        #: ``"torch"``, or ``"onnxruntime"`` for an exported model (:class:`~str_distill.backends.ort_model.
        #: ONNXRuntimeModel`: CPU, float32, no ``to()``/``save_pretrained()``)
        self.backend: str = getattr(model, "backend", "torch")
        if self.backend != "torch":
            self.device, self.dtype = model.device, model.dtype
            _check_fixed(self.backend, device, dtype)
            return
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
        max_pixels: int | None = MAX_PIXELS,
        backend: Literal["torch", "onnxruntime"] = "torch",
        threads: int | None = None,
        min_width: int | None = None,
    ) -> Recognizer:
        """Load weights from a manifest name, a local directory or ``.safetensors`` file, or ``hf-hub:org/repo``.

        ``backend="onnxruntime"`` runs the network with onnxruntime on the CPU (``pip install
        "str-distill[onnxruntime]"``; exporting the weights on the fly also needs ``onnx``); ``predict`` keeps its
        contract, except that attention maps and other ``refine_iters`` than the exported one are refused. A
        ``.onnx`` file written by ``str-distill export`` is always read with onnxruntime. ``threads``: intra-op
        threads of the onnxruntime session; with torch, ``torch.set_num_threads(threads)`` (process-wide).
        ``min_width``: see :class:`Recognizer`.

        Without a name, the manifest's default model (bundled in the package, read offline). See
        :func:`str_distill.hub.loading.load_model` for the resolution order and the errors raised.

        ``dtype=None``: float32, except on the CPU for a manifest name whose record measured bfloat16 to read the
        same text faster (its ``inference.cpu_dtype``; ``str-distill models --json`` shows it).
        """
        from .hub.loading import load_model
        from .hub.manifest import default_model, get_record

        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        if name_or_path is None:
            name_or_path = default_model()
        if backend == "onnxruntime" or str(name_or_path).endswith(".onnx"):
            from .backends.ort_model import ONNXRuntimeModel

            _check_fixed("onnxruntime", device, dtype)
            if str(name_or_path).endswith(".onnx"):
                if revision is not None:
                    raise ValueError(f"revision= only applies to 'hf-hub:' sources, not {str(name_or_path)!r}")
                onnx_model = ONNXRuntimeModel.from_file(name_or_path, threads=threads)
            else:
                torch_model = load_model(name_or_path, revision=revision, local_files_only=local_files_only,
                                         cache_dir=cache_dir)
                onnx_model = ONNXRuntimeModel.from_model(torch_model, threads=threads, source=str(name_or_path))
                del torch_model
            return cls(onnx_model, "cpu", None, keep_aspect_ratio, rotate_tall,  # type: ignore[arg-type]
                       max_pixels=max_pixels, min_width=min_width)
        if threads is not None:
            torch.set_num_threads(threads)
        model = load_model(name_or_path, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)
        if dtype is None and isinstance(name_or_path, str) and resolve_device(device).type == "cpu":
            record = get_record(name_or_path) or {}
            dtype = (record.get("inference") or {}).get("cpu_dtype")
        return cls(model, device, dtype, keep_aspect_ratio, rotate_tall, max_pixels=max_pixels, min_width=min_width)

    @property
    def model(self) -> nn.Module:
        """The underlying network (a pure ``nn.Module``)."""
        return self._model

    def __repr__(self) -> str:
        backend = "" if self.backend == "torch" else f", backend={self.backend!r}"
        return f"Recognizer(arch={self._model.config.arch!r}, device={self.device}, dtype={self.dtype}{backend})"

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> Recognizer:
        """Move the model to ``device`` and/or cast it to ``dtype`` (``None`` keeps the current one). Returns self.

        The onnxruntime backend stays on the CPU in float32 (anything else raises ``ValueError``)."""
        if self.backend != "torch":
            _check_fixed(self.backend, device, dtype)
            return self
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

        if self.backend != "torch":
            raise ValueError(f"save_pretrained() needs the torch backend; this recognizer runs {self.backend} "
                             "(its .onnx file is already the saved form)")
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
        decode_workers: int = 0,
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
            decode_workers: decode and resize the next batch's images in this many threads while the model runs
                (0: one after the other, in this thread); see :mod:`str_distill.prefetch`.

        Returns:
            ``list[Prediction]`` (with ``errors="return"``, :class:`InputError` in the slots of failed inputs).
        """
        return list(self.iter_predict(images, batch_size, decoding, mode, refine_iters, return_attention, progress,
                                      errors, decode_workers=decode_workers))

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
        decode_workers: int = 0,
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
        if isinstance(decode_workers, bool) or not isinstance(decode_workers, int) or decode_workers < 0:
            raise ValueError(f"decode_workers must be an integer >= 0, got {decode_workers!r}")
        if self.backend != "torch":  # what the exported file cannot do is refused before reading
            self._model.check_options(decoding, mode, refine_iters, return_attention)
        items = iter_inputs(images)  # raises TypeError now, not at the first next()
        return self._stream(items, _length(images), int(batch_size), decoding, mode, refine_iters, return_attention,
                            progress, errors, decode_workers)

    def _stream(self, items: Iterator[tuple[int, str, Any]], total: int | None, batch_size: int, decoding: str,
                mode: str, refine_iters: int, return_attention: bool, progress: bool, errors: str,
                decode_workers: int = 0) -> Iterator[Any]:
        if progress:
            from tqdm.auto import tqdm
        else:  # plain tqdm, disabled: tqdm.auto would warn in notebooks without ipywidgets even when unused
            from tqdm import tqdm

        from .prefetch import prepared_chunks

        with tqdm(total=total, disable=not progress, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            for chunk in prepared_chunks(items, self._prepare, batch_size, decode_workers):
                slots: list[InputError | None] = []
                tensors: list[torch.Tensor] = []
                for index, out in chunk:
                    if isinstance(out, InputError):
                        out.index = index
                        if errors == "raise":
                            raise out
                        slots.append(out)
                    else:
                        tensors.append(out)
                        slots.append(None)
                del chunk
                results: list[Prediction | None] = [None] * len(tensors)
                for idx, batch in self.preprocessor.batches(tensors):
                    for i, p in zip(idx, self._run(batch, decoding, mode, refine_iters, return_attention)):
                        results[i] = p
                del tensors
                preds = iter(results)
                bar.update(len(slots))
                yield from (next(preds) if s is None else s for s in slots)

    def _prepare(self, x: Any, name: str) -> torch.Tensor:
        """One input -> its normalized model-input tensor; any failure is an :class:`InputError` naming it."""
        img = load_image(x, name, max_pixels=self.max_pixels)
        try:
            return self.preprocessor(img)
        except Exception as e:  # e.g. out of memory resizing a huge image: report it against this input
            raise InputError(name, f"cannot preprocess image ({type(e).__name__}: {e})") from e

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


def _check_fixed(backend: str, device: str | torch.device | None, dtype: str | torch.dtype | None) -> None:
    """A non-torch backend runs on the CPU in float32: refuse any other device or dtype."""
    if device is not None and not (isinstance(device, str) and device == "auto"):
        if torch.device(device).type != "cpu":
            raise ValueError(f"the {backend} backend runs on the CPU; got device={str(device)!r}")
    if dtype is not None and (_DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype) != torch.float32:
        raise ValueError(f"the {backend} backend runs in float32 (quantize at export for int8); got dtype={dtype!r}")


def _length(images: Any) -> int | None:
    """How many images ``images`` holds, if known without consuming it (for the progress bar)."""
    if isinstance(images, torch.Tensor):
        return images.shape[0] if images.ndim == 4 else 1
    if isinstance(images, (list, tuple)):
        return sum(x.shape[0] if isinstance(x, torch.Tensor) and x.ndim == 4 else 1 for x in images)
    return None if isinstance(images, Iterable) and not isinstance(images, (str, bytes, bytearray)) else 1
