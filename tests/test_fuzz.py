"""Property-based tests of the input boundary: whatever is passed to ``predict`` (random or mutated encoded bytes,
PIL images of every mode and of extreme sizes, numpy arrays and torch tensors of every dtype, rank and layout,
paths to odd files), every image ends in a :class:`Prediction` or an :class:`InputError` that names its input,
one result per image, in order; ``errors="raise"`` raises the first of those errors.

CI runs a bounded number of examples, the same ones every run. Before a release, run many more, random ones:
``STR_DISTILL_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from str_distill import Prediction, Recognizer
from str_distill.preprocess import InputError
from tests.conftest import make_tiny_model
from tests.models.test_ppocr import make_tiny

_RELEASE = int(os.environ.get("STR_DISTILL_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_RELEASE or 120,
    derandomize=not _RELEASE,  # CI: the same examples every run; a release run explores new ones
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

PIL_MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I",
             "I;16", "I;16L", "I;16B", "I;16N", "F"]
FORMATS = ["PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP", "PPM"]
EXTREME_SIZES = [(1, 1), (10000, 8), (8, 10000), (20000, 1), (1, 20000), (3, 1), (1, 3)]  # (width, height)
NP_DTYPES = ["u1", "u2", "<u2", ">u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", ">f4", "f8", "g", "c8", "?",
             "O", "U2", "S2", "M8[s]", "V2"]
TORCH_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32,
                torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool,
                torch.complex64, torch.float8_e4m3fn, torch.float8_e5m2]


@pytest.fixture(scope="module")
def recognizers() -> dict[str, Recognizer]:
    """Both families: PP-OCR (variable width, the default model's) and ViT (fixed 32x128)."""
    return {"ppocr": Recognizer(make_tiny(), device="cpu"), "vit": Recognizer(make_tiny_model(), device="cpu")}


@pytest.fixture(scope="module")
def files() -> Iterator[Callable[[bytes], Path]]:
    """``files(data)``: a new file holding ``data`` (module-scoped: hypothesis reruns the test many times)."""
    with tempfile.TemporaryDirectory() as d:
        count = iter(range(1 << 30))
        def write(data: bytes) -> Path:
            path = Path(d) / f"f{next(count)}.img"
            path.write_bytes(data)
            return path

        yield write


# ------------------------------------------------------------------------------------------------------ strategies
def encode(img: Image.Image, fmt: str) -> bytes:
    """``img`` encoded as ``fmt``, in its own mode if the format stores it, else as RGB."""
    rgb = (img.convert("LA") if img.mode == "La" else img).convert("RGBA").convert("RGB")
    for candidate in (img, rgb):
        buf = io.BytesIO()
        try:
            candidate.save(buf, fmt)
            return buf.getvalue()
        except (OSError, ValueError, KeyError):
            continue
    raise AssertionError(f"cannot encode {img.mode} as {fmt}")


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """``img`` converted to ``mode`` (Pillow converts RGB to every mode, through LA for "La")."""
    return img.convert("LA").convert(mode) if mode == "La" else img.convert(mode)


def set_dims(data: bytes, fmt: str, width: int, height: int) -> bytes:
    """``data`` with the width and height its header claims replaced (checksums kept valid where there are any)."""
    d = bytearray(data)
    if fmt == "PNG":  # IHDR: width, height at 16..24, then its CRC over type + data
        d[16:24] = struct.pack(">II", width, height)
        d[29:33] = struct.pack(">I", zlib.crc32(bytes(d[12:29])))
    elif fmt == "BMP":
        d[18:26] = struct.pack("<ii", width, height)
    elif fmt == "GIF":  # logical screen and first image descriptor
        d[6:10] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
        i = d.find(b"\x2c", 13)
        if i > 0:
            d[i + 5 : i + 9] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
    elif fmt == "JPEG":
        i = d.find(b"\xff\xc0")
        if i > 0:
            d[i + 5 : i + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
    return bytes(d)


@st.composite
def small_images(draw: st.DrawFn, mode: str | None = None) -> Image.Image:
    """Up to 40x24 pixels of noise, in ``mode`` (drawn if ``None``)."""
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**16))
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return to_mode(Image.fromarray(a), mode or draw(st.sampled_from(PIL_MODES)))


@st.composite
def encoded(draw: st.DrawFn) -> bytes:
    """Valid, truncated, mutated, dimension-forged or random bytes."""
    kind = draw(st.sampled_from(["valid", "truncated", "mutated", "header", "dims", "random", "magic"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "magic":  # a real signature followed by junk
        magic = draw(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
                                      b"GIF89a", b"II*\x00", b"MM\x00*", b"BM", b"P6\n", b"%!PS-Adobe-3.0 EPSF"]))
        return magic + draw(st.binary(max_size=256))
    fmt = draw(st.sampled_from(FORMATS))
    data = encode(draw(small_images()), fmt)
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind in ("mutated", "header"):
        d = bytearray(data)
        end = min(len(d), 64) if kind == "header" else len(d)
        for _ in range(draw(st.integers(1, 8))):
            d[draw(st.integers(0, end - 1))] = draw(st.integers(0, 255))
        return bytes(d)
    if kind == "dims":
        side = st.sampled_from([0, 1, 8, 65535, 100_000, 2**31 - 1])
        return set_dims(data, fmt, draw(side), draw(side))
    return data


@st.composite
def pil_images(draw: st.DrawFn) -> Image.Image:
    mode = draw(st.sampled_from(PIL_MODES))
    if draw(st.booleans()):
        return draw(small_images(mode))
    w, h = draw(st.sampled_from(EXTREME_SIZES))
    return Image.new(mode, (w, h), draw(st.sampled_from([0, 1, 128, 255])) if mode not in ("F", "I") else 7)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(NP_DTYPES)))
    rank = draw(st.sampled_from([0, 1, 2, 3, 3, 3, 4]))
    shape = tuple(draw(st.integers(0, 12)) for _ in range(rank))
    if rank == 3 and draw(st.booleans()):
        shape = shape[:2] + (draw(st.sampled_from([1, 3, 4])),)
    if draw(st.integers(0, 9)) == 0 and dtype == np.uint8:  # very wide or very tall
        w, h = draw(st.sampled_from(EXTREME_SIZES))
        shape = (h, w)
    if dtype.kind in "OUSMV":
        a = np.zeros(shape, dtype)
    else:
        a = draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    view = draw(st.sampled_from(["as is", "flipped", "strided", "transposed", "broadcast"]))
    if view == "flipped" and a.ndim >= 2:
        a = a[::-1, ::-1]
    elif view == "strided" and a.ndim >= 2:
        a = a[::2, 1::3]
    elif view == "transposed" and a.ndim >= 2:
        a = np.swapaxes(a, 0, 1)
    elif view == "broadcast" and a.ndim == 3:
        a = np.broadcast_to(a[:1], a.shape)
    return a


def _elements(dtype: np.dtype) -> st.SearchStrategy[Any] | None:
    """Floats: mostly valid ``[0, 1]`` data, some NaN, inf and out-of-range values; other types: any value."""
    if dtype.kind == "f" and dtype.itemsize <= 8:
        unit = st.floats(0, 1, width=dtype.itemsize * 8)
        return unit | st.sampled_from([float("nan"), float("inf"), -float("inf"), 2.0, -0.5, 255.0])
    return None


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    dtype = draw(st.sampled_from(TORCH_DTYPES))
    rank = draw(st.sampled_from([0, 1, 2, 3, 3, 3, 4, 4, 5]))
    shape = [draw(st.integers(0, 10)) for _ in range(rank)]
    if rank >= 3 and draw(st.booleans()):
        shape[-3] = draw(st.sampled_from([1, 3, 4]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    t = torch.rand(shape, generator=g, dtype=torch.float64)
    fill = draw(st.sampled_from(["unit", "0-255", "nan", "inf", "negative"]))
    if fill == "0-255":
        t = t * 255
    elif fill == "nan" and t.numel():
        t.view(-1)[0] = float("nan")
    elif fill == "inf" and t.numel():
        t.view(-1)[-1] = float("inf")
    elif fill == "negative":
        t = t - 2
    t = t.to(dtype)
    view = draw(st.sampled_from(["as is", "strided", "transposed", "expanded", "grad"]))
    if view == "strided" and t.ndim >= 2:
        t = t[..., ::2, 1::2]
    elif view == "transposed" and t.ndim >= 2:
        t = t.transpose(-1, -2)
    elif view == "expanded" and t.ndim >= 2 and t.shape[-2] >= 1:
        t = t[..., :1, :].expand(*t.shape[:-2], 6, t.shape[-1])
    elif view == "grad" and t.is_floating_point() and t.dtype not in (torch.float8_e4m3fn, torch.float8_e5m2):
        t = t.detach().requires_grad_(True)
    return t


@st.composite
def paths(draw: st.DrawFn, files: Callable[[bytes], Path]) -> str | Path:
    kind = draw(st.sampled_from(["image", "bytes", "empty", "missing", "directory", "device"]))
    if kind == "image":
        return files(encode(draw(small_images()), draw(st.sampled_from(FORMATS))))
    if kind == "bytes":
        return str(files(draw(encoded())))
    if kind == "empty":
        return files(b"")
    if kind == "missing":
        return files(b"x").with_name("missing.png")
    if kind == "directory":
        return files(b"x").parent
    return "/dev/zero"


def inputs(files: Callable[[bytes], Path]) -> st.SearchStrategy[Any]:
    return st.one_of(encoded(), pil_images(), arrays(), tensors(), paths(files),
                     st.sampled_from([None, 3, 2.5, "", b"", [], object()]))


# ------------------------------------------------------------------------------------------------------ the property
def images_in(x: Any) -> int:
    """How many results an input gives: ``B`` for a ``(B, C, H, W)`` tensor, else 1."""
    return x.shape[0] if isinstance(x, torch.Tensor) and x.ndim == 4 else 1


def check_results(batch: list[Any], results: list[Any]) -> None:
    expected = [i for i, x in enumerate(batch) for _ in range(images_in(x))]
    assert len(results) == len(expected)
    for i, r in zip(expected, results):
        if isinstance(r, InputError):
            x = batch[i]
            assert r.index == i
            tag = f"input {i} ({x}): " if isinstance(x, (str, Path)) else f"input {i}: "
            if isinstance(x, torch.Tensor) and x.ndim == 4:
                tag = f"input {i}["  # image j of a batch: "input <i>[<j>]: ..."
            assert str(r).startswith(tag), r
            assert r.reason and str(r) == f"{r.where}: {r.reason}"
        else:
            assert isinstance(r, Prediction), type(r)
            assert isinstance(r.text, str) and len(r.char_probs) == len(r.text)
            assert 0.0 <= r.confidence <= 1.0 and torch.isfinite(r.char_probs).all()


def run_both_ways(rec: Recognizer, batch: list[Any], batch_size: int) -> None:
    results = rec.predict(batch, batch_size=batch_size, errors="return")
    check_results(batch, results)
    failed = [r for r in results if isinstance(r, InputError)]
    if failed:
        with pytest.raises(InputError) as e:
            rec.predict(batch, batch_size=batch_size)
        assert (e.value.index, str(e.value)) == (failed[0].index, str(failed[0]))
    else:
        assert [p.text for p in rec.predict(batch, batch_size=batch_size)] == [p.text for p in results]


@FUZZ
@given(data=st.data(), family=st.sampled_from(["ppocr", "vit"]), batch_size=st.integers(1, 4))
def test_any_mix_of_inputs(recognizers: dict[str, Recognizer], files: Callable[[bytes], Path], data: st.DataObject,
                           family: str, batch_size: int) -> None:
    batch = data.draw(st.lists(inputs(files), min_size=1, max_size=5))
    run_both_ways(recognizers[family], batch, batch_size)


@FUZZ
@given(blob=encoded(), family=st.sampled_from(["ppocr", "vit"]))
def test_encoded_bytes(recognizers: dict[str, Recognizer], blob: bytes, family: str) -> None:
    run_both_ways(recognizers[family], [blob], 1)


@FUZZ
@given(img=pil_images())
def test_pil_images_of_every_mode_and_size(recognizers: dict[str, Recognizer], img: Image.Image) -> None:
    for rec in recognizers.values():  # every mode converts: all of them are read
        [pred] = rec.predict([img])
        check_results([img], [pred])


@FUZZ
@given(a=arrays())
def test_numpy_arrays(recognizers: dict[str, Recognizer], a: np.ndarray) -> None:
    run_both_ways(recognizers["ppocr"], [a], 1)


@FUZZ
@given(t=tensors())
def test_torch_tensors(recognizers: dict[str, Recognizer], t: torch.Tensor) -> None:
    run_both_ways(recognizers["ppocr"], [t, t], 2)


def test_the_strategies_reach_both_outcomes(recognizers: dict[str, Recognizer]) -> None:
    """The generators are not degenerate: valid images are read, broken ones refused, with the cases named."""
    rec = recognizers["ppocr"]
    png = encode(Image.new("RGB", (30, 10), "white"), "PNG")
    results = rec.predict([png, png[:40], set_dims(png, "PNG", 2**31 - 1, 2**31 - 1), np.zeros((4, 5), "i8")],
                          errors="return")
    assert isinstance(results[0], Prediction)
    assert [type(r) for r in results[1:]] == [InputError] * 3
    assert "too many pixels" in str(results[2]) or "over the limit" in str(results[2])
