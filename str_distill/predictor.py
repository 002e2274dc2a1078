"""The inference API: :class:`Recognizer` turns images of any supported type into :class:`Prediction` objects.

>>> from str_distill import Recognizer
>>> rec = Recognizer.from_pretrained("path/to/model_dir")  # doctest: +SKIP
>>> pred = rec.predict(["word.png"])[0]  # doctest: +SKIP
>>> pred.text, pred.confidence, pred.char_probs  # doctest: +SKIP

The network itself is a pure ``nn.Module`` of one of the model families (:class:`~str_distill.models.ViTRecognizer`,
:class:`~str_distill.models.PPOCRRecognizer`); this module adds loading, preprocessing (described by the weights'
config, :func:`~str_distill.preprocess.resolve_data_config`), batching, device/dtype handling and decoding to text.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import nn

from .backends.base import Backend, check_cpu_float32
from .backends.torch_backend import TorchBackend
from .devices import resolve_device, resolve_dtype  # re-exported (__all__)
from .hub.manifest import DEFAULT_MODEL  # re-exported; the fallback default lives in the manifest code
from .imageio import MAX_PIXELS, InputError, iter_inputs, load_image
from .preprocess import Preprocessor, resolve_data_config

__all__ = ["DEFAULT_MODEL", "ORIENTATIONS", "InputError", "Prediction", "Recognizer", "resolve_decoding",
           "resolve_device", "resolve_dtype", "scene_warning"]

#: Accepted spellings of the decoding methods.
_DECODINGS = {"attention": "attention", "ctc": "ctc", "greedy": "ctc", "joint": "joint"}


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
        raise ValueError(f"decoding must be 'attention', 'ctc', 'greedy' (= 'ctc') or 'joint', got {decoding!r}")
    if name not in supported:
        arch = getattr(getattr(model, "config", None), "arch", type(model).__name__)
        raise ValueError(f"{arch} cannot decode with {decoding!r}: it supports {', '.join(supported)}")
    return name

@dataclass(frozen=True)
class Prediction:
    """The reading of one image.

    Attributes:
        text: the recognized string.
        confidence: in ``[0, 1]``, comparable across lengths (a long reading is not penalized for its length): the
            lowest probability among the emitted tokens, i.e. the characters and, for attention decoding, the
            end-of-sequence token (the reading's least sure character); a CTC reading of no character scores the
            lowest of its frames' blank probabilities. Filter on it (see the API documentation, "Confidence").
        char_probs: float32 tensor ``(len(text),)``, the probability of each character.
        attention: attention decoding with ``return_attention=True`` only: float32 tensor ``(T, grid_h, grid_w)``,
            the decoder's cross-attention (last layer, mean over heads) over the encoder's token grid at each step:
            ``T = len(text) + 1``, one step per character plus the end-of-sequence step.
        path_probability: in ``[0, 1]``, the probability of the decoded path, which falls with length (what
            ``confidence`` used to be). Attention: the product of the per-character
            probabilities and the end-of-sequence probability; CTC: the product of the per-frame maximum
            probabilities (the greedy frame path).
        warning: why the reading may be meaningless although the image was read, else ``None``: an input that
            looks like a whole photo rather than a cropped word (:func:`scene_warning`), or a tall crop read
            upright with little confidence while ``orientation="upright"``.
        rotation: how the image was turned before the reading kept: ``0``, ``90`` (counter-clockwise), ``180`` or
            ``270`` degrees (see ``orientation`` in :class:`Recognizer`).
    """

    text: str
    confidence: float
    char_probs: torch.Tensor
    attention: torch.Tensor | None = None
    path_probability: float = float("nan")
    warning: str | None = None
    rotation: int = 0


#: Orientation handling of :class:`Recognizer`: read as given; crops taller than wide also turned both ways (90 and
#: 270 degrees); and also upside down (180 degrees) when the reading of a wider crop is unsure.
ORIENTATIONS = ("upright", "tall", "auto")
#: ``orientation="tall"``/``"auto"``: a crop at least this many times taller than wide is also read turned 90 degrees
#: both ways (measured on IIIT5K: 1.0 reads more turned words than 1.2 or 1.5 and costs 0.1 point upright).
TALL_RATIO = 1.0
#: Without orientation handling, a crop this much taller than wide read below confidence 0.5 gets a warning.
WARN_TALL_RATIO = 1.5
#: ``orientation="auto"``: a crop not taller than wide whose path probability is below this is also read upside
#: down. Orientations are compared by path probability, which told right from wrong turns better than the
#: confidence on IIIT5K (see the API documentation, "Rotated words").
UPSIDE_DOWN_BELOW = 0.5
#: :func:`scene_warning`: an input at least this large on both sides, less than ``SCENE_MAX_ASPECT`` times wider than
#: high, and read below ``SCENE_MAX_CONFIDENCE`` looks like a whole photo.
SCENE_MIN_SIDE = 300
SCENE_MAX_ASPECT = 2.0
SCENE_MAX_CONFIDENCE = 0.9


def scene_warning(width: int, height: int, confidence: float) -> str | None:
    """Why an input of ``width x height`` pixels read at ``confidence`` looks like a whole photo rather than a
    cropped word, or ``None``.

    The rule: both sides at least :data:`SCENE_MIN_SIDE` (300) pixels, less than :data:`SCENE_MAX_ASPECT` (2) times
    wider than high, and a reading less sure than :data:`SCENE_MAX_CONFIDENCE` (0.9). Measured with the default
    model: it flags all 100 street photos of the SVT training scenes and 3 of 10,522 real word crops (IIIT5K test
    and training sets, SVT, ICDAR 2015 and ICDAR 2003 training crops); see the API documentation.
    """
    if min(width, height) < SCENE_MIN_SIDE or width >= SCENE_MAX_ASPECT * height or confidence >= SCENE_MAX_CONFIDENCE:
        return None
    return (f"{width}x{height} looks like a whole photo, not a cropped word (the recognizer reads one word or line "
            f"and read this at confidence {confidence:.2f}): read whole images with `str-distill read` "
            "(str_distill.ocr.OCR in Python), or crop the words first")


@dataclass
class _Prepared:
    """One input ready to read: its candidate tensors (one per rotation tried) and its size before rotation."""

    tensors: list[torch.Tensor]
    rotations: list[int]
    size: tuple[int, int]


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


class Recognizer:
    """A recognizer ready for inference: model + preprocessing + batching + decoding.

    Args:
        model: the network (:class:`~str_distill.models.ViTRecognizer` or
            :class:`~str_distill.models.PPOCRRecognizer`; it is put in eval mode and moved/cast in place, run by a
            :class:`~str_distill.backends.torch_backend.TorchBackend`), or a
            :class:`~str_distill.backends.base.Backend` (e.g. an exported file run by onnxruntime:
            :class:`~str_distill.backends.ort_model.ONNXRuntimeBackend`).
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda[:i]"`` or a :class:`torch.device`.
        dtype: ``float32``, ``bfloat16`` (CPU or CUDA) or ``float16`` (CUDA only); strings accepted. ``None``
            keeps the model's dtype (float32 for :meth:`from_pretrained`).
        keep_aspect_ratio: see :class:`~str_distill.preprocess.Preprocessor`.
        orientation: ``"upright"`` (default): read as given. ``"tall"``: a crop at least as tall as wide is read
            as given and turned 90 degrees both ways, and the reading of highest path probability is kept (text
            running top to bottom or bottom to top). ``"auto"``: the same, and a wider crop read at a path
            probability below 0.5 is also read upside down (the likelier reading is kept).
            :attr:`Prediction.rotation` says which was kept. The cost is two extra readings per crop at least as
            tall as wide, and one per unsure wide crop with ``"auto"`` (measured in the API documentation,
            "Rotated words").
        rotate_tall: ``True`` is ``orientation="tall"`` (it used to turn tall crops one way only).
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
        model: nn.Module | Backend,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        keep_aspect_ratio: bool = False,
        rotate_tall: bool = False,
        max_pixels: int | None = MAX_PIXELS,
        min_width: int | None = None,
        orientation: Literal["upright", "tall", "auto"] | None = None,
    ) -> None:
        if orientation is None:
            orientation = "tall" if rotate_tall else "upright"
        if orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {', '.join(map(repr, ORIENTATIONS))}, got {orientation!r}")
        #: ``"upright"``, ``"tall"`` or ``"auto"`` (see the class documentation)
        self.orientation: str = orientation
        if isinstance(model, Backend):  # e.g. an exported file run by onnxruntime
            model.to(device, dtype)
            self._backend: Backend = model
        else:
            self._backend = TorchBackend(model, device, dtype)
        #: the network, or what describes it (``config``, ``tokenizer``, ``decodings``) for another backend
        self._model = self._backend.network
        #: what :meth:`from_pretrained` loaded (manifest name, directory, file or ``hf-hub:`` source); ``None``
        #: for a network passed in directly
        self.name: str | None = None
        self.max_pixels = max_pixels
        # rotations are tried by the recognizer (several per crop), not by the preprocessor
        self.preprocessor = Preprocessor(_with_min_width(self._model.config, min_width), keep_aspect_ratio)
        #: ``"torch"``, or ``"onnxruntime"`` for an exported model (:class:`~str_distill.backends.ort_model.
        #: ONNXRuntimeBackend`: CPU, float32, no ``to()``/``save_pretrained()``)
        self.backend: str = self._backend.name

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        return self._backend.device

    @property
    def dtype(self) -> torch.dtype:
        """The precision the network runs in."""
        return self._backend.dtype

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
        orientation: Literal["upright", "tall", "auto"] | None = None,
    ) -> Recognizer:
        """Load weights from a manifest name, a local directory or ``.safetensors`` file, or ``hf-hub:org/repo``.

        ``backend="onnxruntime"`` runs the network with onnxruntime on the CPU (``pip install
        "str-distill[onnxruntime]"``; exporting the weights on the fly also needs ``onnx``); ``predict`` keeps its
        contract, except that attention maps and other ``refine_iters`` than the exported one are refused. A
        ``.onnx`` file written by ``str-distill export`` is always read with onnxruntime. ``threads``: intra-op
        threads of the onnxruntime session; with torch, ``torch.set_num_threads(threads)`` (process-wide).
        ``min_width``, ``orientation``: see :class:`Recognizer`.

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
            from .backends.ort_model import ONNXRuntimeBackend

            check_cpu_float32("onnxruntime", device, dtype)
            if str(name_or_path).endswith(".onnx"):
                if revision is not None:
                    raise ValueError(f"revision= only applies to 'hf-hub:' sources, not {str(name_or_path)!r}")
                onnx_model = ONNXRuntimeBackend.from_file(name_or_path, threads=threads)
            else:
                torch_model = load_model(name_or_path, revision=revision, local_files_only=local_files_only,
                                         cache_dir=cache_dir)
                onnx_model = ONNXRuntimeBackend.from_model(torch_model, threads=threads, source=str(name_or_path))
                del torch_model
            rec = cls(onnx_model, "cpu", None, keep_aspect_ratio, rotate_tall, max_pixels=max_pixels,
                      min_width=min_width, orientation=orientation)
            rec.name = str(name_or_path)
            return rec
        if threads is not None:
            torch.set_num_threads(threads)
        model = load_model(name_or_path, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)
        if dtype is None and isinstance(name_or_path, str) and resolve_device(device).type == "cpu":
            record = get_record(name_or_path) or {}
            dtype = (record.get("inference") or {}).get("cpu_dtype")
        rec = cls(model, device, dtype, keep_aspect_ratio, rotate_tall, max_pixels=max_pixels, min_width=min_width,
                  orientation=orientation)
        rec.name = str(name_or_path)
        return rec

    @property
    def model(self) -> nn.Module:
        """The underlying network (a pure ``nn.Module``; with onnxruntime, the backend, which carries the exported
        file's ``config``, ``tokenizer`` and ``decodings``)."""
        return self._model

    def __repr__(self) -> str:
        weights = "" if self.name is None else f", weights={self.name!r}"
        return (f"Recognizer(arch={self._model.config.arch!r}{weights}, device={self.device}, dtype={self.dtype}"
                f"{self._backend.describe()})")

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> Recognizer:
        """Move the model to ``device`` and/or cast it to ``dtype`` (``None`` keeps the current one). Returns self.

        The onnxruntime backend stays on the CPU in float32 (anything else raises ``ValueError``)."""
        self._backend.to(device, dtype)
        return self

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> Path:
        """Write ``config.json`` + ``model.safetensors``; kwargs go to :func:`str_distill.hub.save_pretrained`.

        Raises:
            ValueError: with the onnxruntime backend (its ``.onnx`` file is already the saved form)."""
        return self._backend.save_pretrained(directory, **kwargs)

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
        self._backend.check_options(decoding, mode, refine_iters, return_attention)  # refused before reading
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
                prepared: list[_Prepared] = []
                for index, out in chunk:
                    if isinstance(out, InputError):
                        out.index = index
                        if errors == "raise":
                            raise out
                        slots.append(out)
                    else:
                        prepared.append(out)
                        slots.append(None)
                del chunk
                results = self._read(prepared, decoding, mode, refine_iters, return_attention)
                del prepared
                preds = iter(results)
                bar.update(len(slots))
                yield from (next(preds) if s is None else s for s in slots)

    def _prepare(self, x: Any, name: str) -> _Prepared:
        """One input -> its normalized model-input tensor(s); any failure is an :class:`InputError` naming it."""
        img = load_image(x, name, max_pixels=self.max_pixels)
        try:
            if self.orientation != "upright" and img.height >= TALL_RATIO * img.width:  # as given + quarter turns
                tensors = [self.preprocessor(img), self.preprocessor(img.transpose(Image.Transpose.ROTATE_90)),
                           self.preprocessor(img.transpose(Image.Transpose.ROTATE_270))]
                return _Prepared(tensors, [0, 90, 270], img.size)
            return _Prepared([self.preprocessor(img)], [0], img.size)
        except Exception as e:  # e.g. out of memory resizing a huge image: report it against this input
            raise InputError(name, f"cannot preprocess image ({type(e).__name__}: {e})") from e

    def _read_tensors(self, tensors: list[torch.Tensor], decoding: str, mode: str, refine_iters: int,
                      return_attention: bool) -> list[Prediction]:
        """Normalized images (unpadded) -> one :class:`Prediction` each, in order, batched by the preprocessor."""
        results: list[Prediction | None] = [None] * len(tensors)
        for idx, batch in self.preprocessor.batches(tensors):
            for i, p in zip(idx, self._run(batch, decoding, mode, refine_iters, return_attention)):
                results[i] = p
        return results  # type: ignore[return-value]

    def _read(self, prepared: list[_Prepared], decoding: str, mode: str, refine_iters: int,
              return_attention: bool) -> list[Prediction]:
        """Read every candidate of every input and keep, per input, the one of highest path probability (the first
        on a tie: as given), try unsure wide crops upside down with ``orientation="auto"``, and add the warnings."""
        flat = [t for p in prepared for t in p.tensors]
        preds = iter(self._read_tensors(flat, decoding, mode, refine_iters, return_attention))
        best: list[Prediction] = []
        for p in prepared:
            cands = [replace(next(preds), rotation=r) for r in p.rotations]
            best.append(max(cands, key=lambda c: c.path_probability))  # max keeps the first of equals
        if self.orientation == "auto":
            retry = [i for i, (p, b) in enumerate(zip(prepared, best))
                     if len(p.rotations) == 1 and b.path_probability < UPSIDE_DOWN_BELOW]
            flipped = [prepared[i].tensors[0].flip(-1, -2) for i in retry]  # 180 degrees: both axes reversed
            for i, q in zip(retry, self._read_tensors(flipped, decoding, mode, refine_iters, return_attention)):
                if q.path_probability > best[i].path_probability:
                    best[i] = replace(q, rotation=180)
        out = []
        for p, b in zip(prepared, best):
            warning = scene_warning(*p.size, b.confidence)
            if warning is None and self.orientation == "upright" and p.size[1] >= WARN_TALL_RATIO * p.size[0] \
                    and b.confidence < 0.5:
                warning = (f"{p.size[0]}x{p.size[1]} is a tall crop read at confidence {b.confidence:.2f}: if its "
                           "text runs top to bottom, read it with orientation='auto' (--orientation auto)")
            out.append(b if warning is None else replace(b, warning=warning))
        return out

    def _run(self, x: torch.Tensor, decoding: str, mode: str, refine_iters: int, return_attention: bool
             ) -> list[Prediction]:
        """Normalized images ``(B, 3, H, W)`` -> one :class:`Prediction` each."""
        with torch.inference_mode():
            out = self._backend.forward(x, decoding, mode, refine_iters, return_attention)
            probs = out.logits.float().softmax(-1).cpu()
            attn = out.attn.float().cpu() if out.attn is not None else None
            ids = out.ids.cpu() if getattr(out, "ids", None) is not None else None
        decoded = self._model.tokenizer.decode(probs, mode="ctc" if decoding == "ctc" else "attention", ids=ids)
        if attn is None:
            gh, gw = 0, 0
        elif hasattr(self._model, "attention_grid"):  # memory laid out as the model says (e.g. one row of frames)
            gh, gw = self._model.attention_grid(attn.shape[-1])
        else:
            gh, gw = self._model.config.grid_size
        preds = []
        for i, d in enumerate(decoded):
            maps = None
            if attn is not None:
                steps = min(len(d.text) + 1, attn.shape[1])
                maps = attn[i, :steps].reshape(steps, gh, gw).clone()
            preds.append(Prediction(d.text, d.confidence, d.char_probs, maps, d.path_probability))
        return preds


def _length(images: Any) -> int | None:
    """How many images ``images`` holds, if known without consuming it (for the progress bar)."""
    if isinstance(images, torch.Tensor):
        return images.shape[0] if images.ndim == 4 else 1
    if isinstance(images, (list, tuple)):
        return sum(x.shape[0] if isinstance(x, torch.Tensor) and x.ndim == 4 else 1 for x in images)
    return None if isinstance(images, Iterable) and not isinstance(images, (str, bytes, bytearray)) else 1
