"""Decoding ahead of the model in threads: order, errors in place, bounded look-ahead, the same predictions."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from str_distill import InputError, Recognizer
from str_distill.prefetch import prepared_chunks
from str_distill.preprocess import iter_inputs


def slow_prepare(x: object, name: str) -> object:
    if x == "bad":
        raise InputError(name, "bad input")
    time.sleep(0.01 if int(str(x)) % 3 == 0 else 0)  # finish out of order
    return (x, threading.current_thread().name)


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_chunks_keep_order_and_return_errors_in_place(workers: int) -> None:
    items = ["0", "1", "bad", "3", "4", "5", "6"]
    chunks = list(prepared_chunks(iter_inputs(items), slow_prepare, 3, workers))
    assert [len(c) for c in chunks] == [3, 3, 1]
    flat = [out for c in chunks for out in c]
    assert [i for i, _ in flat] == list(range(7))
    assert isinstance(flat[2][1], InputError) and flat[2][1].reason == "bad input"
    assert [v[0] for _, v in flat if not isinstance(v, InputError)] == ["0", "1", "3", "4", "5", "6"]
    threads = {v[1] for _, v in flat if not isinstance(v, InputError)}
    assert (threads == {threading.current_thread().name}) == (workers == 0)


def test_look_ahead_is_bounded_and_other_errors_propagate() -> None:
    pulled: list[int] = []

    def source():  # noqa: ANN202
        for i in range(100):
            pulled.append(i)
            yield str(i)

    gen = prepared_chunks(iter_inputs(source()), lambda x, name: x, 4, workers=2, ahead=1)
    first = next(gen)
    assert [x for _, x in first] == ["0", "1", "2", "3"] and len(pulled) == 8  # this chunk and the next one
    gen.close()  # stopping early shuts the threads down
    assert len(pulled) == 8

    def broken(x: object, name: str) -> object:
        raise RuntimeError("not an input problem")

    with pytest.raises(RuntimeError, match="not an input problem"):
        list(prepared_chunks(iter_inputs(["1", "2"]), broken, 1, workers=2))
    with pytest.raises(ValueError, match="workers"):
        next(prepared_chunks(iter_inputs(["1"]), broken, 1, workers=-1))


def test_predict_with_decode_workers_matches(tiny_model_dir: Path, tmp_path: Path, render) -> None:  # noqa: ANN001
    rec = Recognizer.from_pretrained(tiny_model_dir, device="cpu")
    paths = []
    for i, w in enumerate(["one", "two", "three", "four", "five"]):
        Image.fromarray(render(w, seed=i)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    paths.insert(2, str(tmp_path / "missing.png"))
    plain = rec.predict(paths, batch_size=2, errors="return")
    threaded = rec.predict(paths, batch_size=2, errors="return", decode_workers=3)
    assert [getattr(p, "text", None) for p in threaded] == [getattr(p, "text", None) for p in plain]
    assert isinstance(threaded[2], InputError) and threaded[2].index == 2 and "missing.png" in str(threaded[2])
    with pytest.raises(InputError, match=r"input 2 \(.*missing.png\): no such file"):
        rec.predict(paths, decode_workers=2)
    with pytest.raises(ValueError, match="decode_workers"):
        rec.predict(paths, decode_workers=-1)
