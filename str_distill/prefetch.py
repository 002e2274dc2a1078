"""Reading inputs ahead of the model: decoding and preprocessing in worker threads.

:meth:`Recognizer.predict(decode_workers=N) <str_distill.predictor.Recognizer.predict>` (and ``str-distill predict
--decode-workers N``) decode and resize the images of the next batch in ``N`` threads while the model runs on the
current one. Image decoding (Pillow), resizing and tensor conversion release Python's global lock, so the threads
run in parallel with each other and with the model; results keep the input order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

from .preprocess import InputError

__all__ = ["prepared_chunks"]

Prepared = list[tuple[int, Any]]


def _safe(prepare: Callable[[Any, str], Any], x: Any, name: str) -> Any:
    try:
        return prepare(x, name)
    except InputError as e:
        return e


def prepared_chunks(items: Iterator[tuple[int, str, Any]], prepare: Callable[[Any, str], Any], batch_size: int,
                    workers: int = 0, ahead: int = 1) -> Iterator[Prepared]:
    """Chunks of ``batch_size`` inputs, each input prepared: ``[(index, prepare(x, name) or its InputError), ...]``.

    Args:
        items: ``(index, name, input)`` triples (:func:`~str_distill.preprocess.iter_inputs`), consumed lazily in
            the calling thread.
        prepare: ``(input, name) -> prepared input``; an :class:`InputError` it raises is returned in the input's
            place (other exceptions propagate).
        workers: threads preparing inputs; ``0`` prepares each chunk in the calling thread when it is asked for.
        ahead: with workers, how many chunks are being prepared beyond the one handed out (memory: ``1 + ahead``
            chunks of prepared inputs).
    """
    if workers < 0 or ahead < 1:
        raise ValueError(f"workers must be >= 0 and ahead >= 1, got {workers} and {ahead}")
    chunks = iter(lambda: list(islice(items, batch_size)), [])
    if workers == 0:
        for chunk in chunks:
            yield [(index, _safe(prepare, x, name)) for index, name, x in chunk]
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="str-distill-decode")
    pending: deque[list[tuple[int, Future[Any]]]] = deque()
    try:
        for chunk in chunks:
            pending.append([(index, pool.submit(_safe, prepare, x, name)) for index, name, x in chunk])
            if len(pending) > ahead:
                yield [(index, f.result()) for index, f in pending.popleft()]
        while pending:
            yield [(index, f.result()) for index, f in pending.popleft()]
    finally:
        for chunk_futures in pending:  # abandoned early (an error, or the caller stopped reading)
            for _, f in chunk_futures:
                f.cancel()
        pool.shutdown(wait=True)
