"""One ``Recognizer`` shared by 8 threads at once reads every input exactly as sequential calls do."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from str_distill import Prediction, Recognizer
from str_distill.preprocess import InputError
from tests.conftest import make_tiny_model, render_word
from tests.models.test_ppocr import make_tiny

THREADS = 8


def jobs() -> list[list[Any]]:
    """Per thread: its own words of various sizes, and one unreadable input in a different place each time."""
    out = []
    for k in range(THREADS):
        words: list[Any] = [render_word(t, size=(24 + 3 * k + 2 * i, 60 + 9 * k + 13 * i), seed=10 * k + i)
                            for i, t in enumerate(["open", "EXIT", "bus", "Cafe", "42"])]
        words.insert(k % 6, np.zeros((4, 4), np.int64))  # an InputError, named by its index
        out.append(words)
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, InputError) or isinstance(b, InputError):
        return type(a) is type(b) and str(a) == str(b)
    assert isinstance(a, Prediction) and isinstance(b, Prediction)
    return a.text == b.text and a.confidence == b.confidence and torch.equal(a.char_probs, b.char_probs)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("family", ["ppocr", "vit"])
def test_eight_threads_at_once_match_sequential_calls(family: str) -> None:
    rec = Recognizer(make_tiny() if family == "ppocr" else make_tiny_model(), device="cpu")
    work = jobs()
    expected = [rec.predict(w, batch_size=4, errors="return") for w in work]
    assert all(sum(isinstance(r, InputError) for r in e) == 1 for e in expected)
    start = threading.Barrier(THREADS)

    def run(k: int) -> list[list[Any]]:
        start.wait()  # all threads enter predict together
        rounds = []
        for r in range(3):
            if r == 1:  # a streamed generator, consumed lazily while the other threads predict
                def gen() -> Iterator[Any]:
                    yield from work[k]

                rounds.append(list(rec.iter_predict(gen(), batch_size=4, errors="return")))
            else:
                rounds.append(rec.predict(work[k], batch_size=4, errors="return"))
        return rounds

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(run, range(THREADS)))
    for k, rounds in enumerate(results):
        for got in rounds:
            assert len(got) == len(expected[k])
            assert all(same(a, b) for a, b in zip(got, expected[k])), f"thread {k} read differently"


def test_errors_raise_in_one_thread_leave_the_others_alone() -> None:
    rec = Recognizer(make_tiny(), device="cpu")
    good = [render_word("open", seed=1), render_word("bus", seed=2)]
    expected = rec.predict(good)
    start = threading.Barrier(THREADS)

    def run(k: int) -> Any:
        start.wait()
        if k % 2:
            try:
                rec.predict([good[0], b"not an image", good[1]])
            except InputError as e:
                return e
            return None
        return rec.predict(good)

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(run, range(THREADS)))
    for k, r in enumerate(results):
        if k % 2:
            assert isinstance(r, InputError) and r.index == 1 and str(r).startswith("input 1: not an image")
        else:
            assert all(same(a, b) for a, b in zip(r, expected))
