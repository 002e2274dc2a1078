"""Huge and odd inputs: the pixel limit (checked from the header, before decoding), reduced JPEG decoding,
decompression bombs with memory measured, extreme aspect ratios, non-regular files and the accepted formats."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from str_distill import Prediction, Recognizer
from str_distill import preprocess as pre
from str_distill.preprocess import MAX_PIXELS, InputError, load_image
from tests.conftest import make_tiny_model
from tests.models.test_ppocr import make_tiny


@pytest.fixture(scope="module")
def recs() -> dict[str, Recognizer]:
    return {"ppocr": Recognizer(make_tiny(), device="cpu"), "vit": Recognizer(make_tiny_model(), device="cpu")}


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk with its length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with(width: int, height: int, idat: bytes) -> bytes:
    """An 8-bit gray PNG whose header claims ``width x height``, with ``idat`` as its compressed pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width x height`` pixels with one row of data: decoding it would fail, opening succeeds."""
    return png_with(width, height, zlib.compress(b"\x00" * 9))


def png_bomb(side: int) -> bytes:
    """A genuine ``side x side`` all-black 8-bit gray PNG: ``side**2`` pixels in a file about 1/1000 of that."""
    comp = zlib.compressobj(9)
    rows = b"\x00" * (side + 1) * 1000  # 1000 rows: filter byte + pixels each
    return png_with(side, side, b"".join(comp.compress(rows) for _ in range(side // 1000)) + comp.flush())


# ------------------------------------------------------------------------------------------------------ the limit
def test_default_limit_is_25_megapixels(recs: dict[str, Recognizer]) -> None:
    assert MAX_PIXELS == 25_000_000
    assert all(r.max_pixels == MAX_PIXELS for r in recs.values())


@pytest.mark.parametrize("size", [(8000, 8000), (5001, 5000)])  # 64 and 25.005 megapixels: over our limit only
def test_header_over_the_limit_is_refused_before_decoding(recs: dict[str, Recognizer], tmp_path: Path,
                                                          size: tuple[int, int]) -> None:
    data = png_header_only(*size)  # no pixel data at all: decoding would fail differently
    path = tmp_path / "big.png"
    path.write_bytes(data)
    results = recs["ppocr"].predict([encode(Image.new("L", (20, 8))), data, path], errors="return")
    assert isinstance(results[0], Prediction)
    mp = f"{size[0] * size[1] / 1e6:.4g}"
    assert str(results[1]) == (f"input 1: image of {size[0]}x{size[1]} pixels ({mp} megapixels) is over the limit "
                               f"of 25000000 pixels (max_pixels)")
    assert str(results[2]).startswith(f"input 2 ({path}): image of {size[0]}x{size[1]} pixels")


def test_giant_header_hits_pillow_bomb_guard_as_an_input_error(recs: dict[str, Recognizer]) -> None:
    data = png_header_only(100_000, 100_000)  # 10 gigapixels: Pillow itself refuses it on opening
    for rec in (recs["ppocr"], Recognizer(make_tiny(), device="cpu", max_pixels=None)):
        with pytest.raises(InputError, match=r"^input 0: too many pixels: .*decompression bomb") as e:
            rec.predict([data])
        assert e.value.index == 0


def test_limit_applies_to_every_input_type(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 30), "white")  # 1200 pixels
    path = tmp_path / "w.png"
    img.save(path)
    for x in (img, np.asarray(img), torch.zeros(3, 30, 40), torch.zeros(30, 40), encode(img), path):
        with pytest.raises(InputError, match="40x30 pixels .* over the limit of 1199 pixels"):
            load_image(x, "x", max_pixels=1199)
        assert load_image(x, "x", max_pixels=1200).size == (40, 30)
        assert load_image(x, "x", max_pixels=None).size == (40, 30)


def test_recognizer_max_pixels(tmp_path: Path) -> None:
    rec = Recognizer(make_tiny(), device="cpu", max_pixels=1000)
    ok, big = np.zeros((20, 50), np.uint8), np.zeros((20, 51), np.uint8)
    res = rec.predict([ok, big], errors="return")
    assert isinstance(res[0], Prediction) and "over the limit of 1000 pixels" in str(res[1])
    rec.max_pixels = None
    assert all(isinstance(r, Prediction) for r in rec.predict([ok, big]))


def test_big_jpeg_is_decoded_at_reduced_scale() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (200, 400, 3), dtype=np.uint8))  # 80,000 pixels
    jpeg, png = encode(img, "JPEG"), encode(img)
    assert load_image(jpeg, "x", max_pixels=80_000).size == (400, 200)  # within the limit: untouched
    assert load_image(jpeg, "x", max_pixels=25_000).size == (200, 100)  # 1/2 scale: 20,000 pixels
    assert load_image(jpeg, "x", max_pixels=10_000).size == (100, 50)  # 1/4
    assert load_image(jpeg, "x", max_pixels=1_250).size == (50, 25)  # 1/8
    with pytest.raises(InputError, match="400x200 pixels"):
        load_image(jpeg, "x", max_pixels=1_249)  # even 1/8 is over: refused
    with pytest.raises(InputError, match="over the limit of 25000"):
        load_image(png, "x", max_pixels=25_000)  # other formats have no reduced decoding


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc")
def test_decompression_bomb_memory_stays_bounded(tmp_path: Path) -> None:
    """A 100-megapixel PNG of 100 kB: refused from its header; the process' peak memory does not grow by the
    100 MB (gray) to 300 MB (RGB) that decoding it would take. A 10-megapixel image is read, for comparison."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(10_000))
    assert bomb.stat().st_size < 1_000_000
    Image.new("L", (5000, 2000), 255).save(tmp_path / "ten_mp.png")  # 10 MP: 30 MB once RGB
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        torch.set_num_threads(1)
        from str_distill import Recognizer
        from str_distill.preprocess import InputError
        from tests.models.test_ppocr import make_tiny
        def rss_mb(field):  # VmRSS: now; VmHWM: the peak since the last reset
            line = [x for x in open("/proc/self/status") if x.startswith(field)][0]
            return int(line.split()[1]) / 1024
        def growth(x):  # how far the peak rises above the current RSS while reading x
            open("/proc/self/clear_refs", "w").write("5")  # reset the peak
            before = rss_mb("VmRSS:")
            [out] = rec.predict([x], errors="return")
            return out, rss_mb("VmHWM:") - before
        rec = Recognizer(make_tiny(), device="cpu")
        rec.predict([torch.zeros(3, 48, 200)])  # warm up the model
        err, bomb = growth({str(bomb)!r})
        assert isinstance(err, InputError), err
        pred, ten = growth({str(tmp_path / "ten_mp.png")!r})
        print(err, bomb, ten, sep="|")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if "clear_refs" in out.stderr and "Error" in out.stderr:
        pytest.skip("the kernel's peak-RSS record cannot be reset here")
    assert out.returncode == 0, out.stderr[-2000:]
    message, bomb_mb, ten_mb = out.stdout.strip().splitlines()[-1].split("|")
    assert message.startswith(f"input 0 ({bomb}): image of 10000x10000 pixels (100 megapixels) is over the limit")
    assert float(bomb_mb) < 20  # MB: nothing decoded
    assert float(ten_mb) > 60  # the measurement does see decoding: 10 MP as gray, RGB and float32 for the resize


# ------------------------------------------------------------------------------------------------------ odd shapes
@pytest.mark.parametrize("size", [(20000, 1), (10000, 8), (8, 10000), (1, 20000), (1, 1)])
def test_extreme_aspect_ratios_are_read(recs: dict[str, Recognizer], size: tuple[int, int]) -> None:
    w, h = size
    strip = Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
    for rec in recs.values():
        [pred] = rec.predict([strip])
        assert isinstance(pred, Prediction)
    x = recs["ppocr"].preprocessor(strip)
    assert x.shape[1] == 48 and 1 <= x.shape[2] <= 256  # height 48, width capped at max_width (tiny: 256)


def test_every_pil_mode_is_read(recs: dict[str, Recognizer]) -> None:
    src = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 30, 3), dtype=np.uint8))
    modes = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I",
             "I;16", "I;16L", "I;16B", "I;16N", "F"]
    imgs = [src.convert("LA").convert(m) if m == "La" else src.convert(m) for m in modes]
    assert all(isinstance(p, Prediction) for p in recs["ppocr"].predict(imgs))


def test_preprocessing_failure_is_an_input_error(recs: dict[str, Recognizer], monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    rec = Recognizer(make_tiny(), device="cpu")

    def fail(self: object, img: Image.Image) -> torch.Tensor:
        raise MemoryError("cannot allocate")

    monkeypatch.setattr(type(rec.preprocessor), "__call__", fail)
    [err] = rec.predict([np.zeros((8, 8), np.uint8)], errors="return")
    assert str(err) == "input 0: cannot preprocess image (MemoryError: cannot allocate)"


# ------------------------------------------------------------------------------------------------------ files, formats
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
@pytest.mark.timeout(60)
def test_fifos_and_devices_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    for p in (fifo, Path("/dev/zero")):
        if p.exists():
            with pytest.raises(InputError, match="not a regular file"):
                load_image(p, str(p))


def test_only_accepted_formats_are_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    img = Image.new("RGB", (16, 8), "white")
    pcx, tga = encode(img, "PCX"), encode(img, "TGA")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 8\nshowpage\n"  # would run Ghostscript if decoded
    for data in (pcx, tga, eps):
        with pytest.raises(InputError, match="not an image .*accepted formats PNG, JPEG"):
            load_image(data, "x")
    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP", "PPM"):
        assert load_image(encode(img, fmt), "x").size == (16, 8), fmt
    monkeypatch.setattr(pre, "IMAGE_FORMATS", (*pre.IMAGE_FORMATS, "PCX", "NOT-A-FORMAT"))
    assert load_image(pcx, "x").size == (16, 8)
    monkeypatch.setattr(pre, "IMAGE_FORMATS", None)
    assert load_image(tga, "x").size == (16, 8)
