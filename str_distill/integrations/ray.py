"""Batch inference on `Ray Data <https://docs.ray.io/en/latest/data/data.html>`_: a callable class for
``Dataset.map_batches`` (``pip install "str-distill[ray]"``).

>>> import ray
>>> from str_distill.integrations.ray import BatchRecognizer
>>> ds = ray.data.read_binary_files("crops/", include_paths=True)  # doctest: +SKIP
>>> ds = ds.map_batches(BatchRecognizer, fn_constructor_kwargs={"model": "ppocrv6-small.scene-ft-neck"},
...                     compute=ray.data.ActorPoolStrategy(size=4), batch_size=256)  # doctest: +SKIP
>>> ds.write_parquet("readings/")  # doctest: +SKIP

Every input row gives one output row: its columns (less the image column when it holds image bytes or arrays),
plus ``text`` (string), ``confidence`` (float, NaN when the image could not be read) and ``error`` (``None``, or why
the image could not be read). A corrupt, missing or empty image never loses its row, nor fails the batch.

The image column holds, per row, a path (string), encoded image bytes (what ``read_binary_files`` gives), an
``(H, W, 3)`` uint8 array (``read_images``) or a ``{"bytes": ..., "path": ...}`` struct (image columns of Parquet
files written by Hugging Face ``datasets``). Without ``column`` the first of ``bytes``, ``image``, ``path`` present is
used.

:func:`recognize_batch` is the whole work of one batch and needs neither Ray nor pandas: use it with any batch engine
(Spark ``mapInPandas``, Dask ``map_partitions``...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OUTPUT_COLUMNS", "BatchRecognizer", "recognize_batch"]

#: The columns :func:`recognize_batch` adds.
OUTPUT_COLUMNS = ("text", "confidence", "error")
_DEFAULT_COLUMNS = ("bytes", "image", "path")


def _columns(batch: Any) -> tuple[dict[str, Any], str]:
    """A batch as ``{column: sequence}`` and its kind: ``"dict"`` (numpy or lists), ``"pandas"`` or ``"arrow"``."""
    if isinstance(batch, Mapping):
        return dict(batch), "dict"
    if hasattr(batch, "column_names") and hasattr(batch, "to_pydict"):  # pyarrow.Table
        return batch.to_pydict(), "arrow"
    if hasattr(batch, "columns") and hasattr(batch, "iloc"):  # pandas.DataFrame
        return {str(c): batch[c].to_numpy() for c in batch.columns}, "pandas"
    raise TypeError(f"a batch must be a dict of columns, a pandas DataFrame or a pyarrow Table, got "
                    f"{type(batch).__name__}")


def _input(value: Any) -> Any:
    """One cell of the image column -> what :meth:`Recognizer.predict` reads (``None`` for a missing value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, Mapping):  # {"bytes": ..., "path": ...} image structs
        data = value.get("bytes")
        return _input(data) if data is not None else _input(value.get("path"))
    if isinstance(value, (str, np.str_, Path)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview, np.bytes_)):
        return bytes(value)
    if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
        return _input(value.item())
    return value


def _is_path_column(values: Sequence[Any]) -> bool:
    return all(v is None or isinstance(v, (str, np.str_, Path)) for v in values)


def recognize_batch(recognizer: Any, batch: Any, column: str | None = None, batch_size: int = 64,
                    decoding: str | None = None, keep_input: bool | None = None, decode_workers: int = 0) -> Any:
    """Read the images of one batch; the batch's rows come back in order with ``text``, ``confidence``, ``error``.

    Args:
        recognizer: a :class:`~str_distill.predictor.Recognizer`.
        batch: a dict of columns (numpy arrays or lists, Ray's default batch format), a pandas DataFrame or a
            pyarrow Table; the result has the same kind.
        column: the image column (see the module docstring); default: the first of ``bytes``, ``image``, ``path``.
        batch_size: images per forward pass.
        decoding: see :meth:`~str_distill.predictor.Recognizer.predict`.
        keep_input: keep the image column in the output; default: only when it holds paths.
        decode_workers: threads decoding the images (see :mod:`str_distill.prefetch`).

    Raises:
        KeyError: when the image column is missing (the message lists the batch's columns).
    """
    cols, kind = _columns(batch)
    if column is None:
        column = next((c for c in _DEFAULT_COLUMNS if c in cols), None)
        if column is None:
            raise KeyError(f"no image column: pass column=... (the batch has {sorted(cols)}; looked for "
                           f"{', '.join(_DEFAULT_COLUMNS)})")
    if column not in cols:
        raise KeyError(f"no column {column!r} in the batch (it has {sorted(cols)})")
    values = list(cols[column])
    inputs = [_input(v) for v in values]
    results = recognizer.predict(inputs, batch_size=batch_size, decoding=decoding, errors="return",
                                 decode_workers=decode_workers) if inputs else []
    text: list[str | None] = []
    confidence: list[float] = []
    error: list[str | None] = []
    for x, res in zip(inputs, results):
        if isinstance(res, Exception):
            text.append(None)
            confidence.append(float("nan"))
            error.append("missing image (null value)" if x is None else getattr(res, "reason", str(res)))
        else:
            text.append(res.text)
            confidence.append(float(res.confidence))
            error.append(None)
    if keep_input is None:
        keep_input = _is_path_column(values)
    out = {k: v for k, v in cols.items() if keep_input or k != column}
    for name in OUTPUT_COLUMNS:
        if name in out:
            raise ValueError(f"the batch already has a column {name!r}; rename it first")
    if kind == "arrow":
        import pyarrow as pa

        out.update(text=text, confidence=confidence, error=error)
        return pa.Table.from_pydict(out)
    out.update(text=np.array(text, dtype=object), confidence=np.array(confidence, dtype=np.float64),
               error=np.array(error, dtype=object))
    if kind == "pandas":
        import pandas as pd

        return pd.DataFrame(out)
    return out


class BatchRecognizer:
    """A callable class for ``ray.data.Dataset.map_batches``: each actor loads the model once, then reads batches.

    Run it on an actor pool (``compute=ray.data.ActorPoolStrategy(size=N)``); on GPUs give each actor a share of one
    (``num_gpus=0.25`` runs four actors per GPU): with the default ``device="auto"`` an actor uses the GPU Ray assigned
    it, and the CPU when it has none.

    Args:
        model: weights as :meth:`Recognizer.from_pretrained` takes them (name, directory, file, ``hf-hub:...``);
            ``None``: the bundled default model.
        column, batch_size, decoding, keep_input, decode_workers: see :func:`recognize_batch`.
        device, dtype, keep_aspect_ratio, rotate_tall, local_files_only, revision: see
            :meth:`~str_distill.predictor.Recognizer.from_pretrained`.
        threads: torch threads of the actor (default: torch's choice, which Ray bounds by the actor's ``num_cpus``).
    """

    def __init__(self, model: str | None = None, *, column: str | None = None, batch_size: int = 64,
                 decoding: str | None = None, keep_input: bool | None = None, decode_workers: int = 0,
                 device: str = "auto", dtype: str = "float32", keep_aspect_ratio: bool = False,
                 rotate_tall: bool = False, local_files_only: bool = False, revision: str | None = None,
                 threads: int | None = None) -> None:
        import torch

        from ..predictor import Recognizer

        if threads is not None:
            torch.set_num_threads(threads)
        self.recognizer = Recognizer.from_pretrained(model, device=device, dtype=dtype, revision=revision,
                                                     local_files_only=local_files_only,
                                                     keep_aspect_ratio=keep_aspect_ratio, rotate_tall=rotate_tall)
        self.column, self.batch_size, self.decoding = column, batch_size, decoding
        self.keep_input, self.decode_workers = keep_input, decode_workers

    def __call__(self, batch: Any) -> Any:
        """One batch of rows -> the same rows with ``text``, ``confidence`` and ``error``."""
        return recognize_batch(self.recognizer, batch, self.column, self.batch_size, self.decoding, self.keep_input,
                               self.decode_workers)
