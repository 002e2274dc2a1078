"""Image loading (every input type, every bad input) and the model-input transform."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from str_distill.models import ViTConfig
from str_distill.preprocess import InputError, Preprocessor, iter_inputs, load_image


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (20, 50, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------------ input types
def test_paths_bytes_and_pil(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "w.png"
    Image.fromarray(rgb).save(path)
    data = path.read_bytes()
    for x in (str(path), path, data, bytearray(data), memoryview(data), Image.fromarray(rgb), Image.open(path)):
        img = load_image(x, "x")
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), rgb)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "YCbCr", "I;16", "I", "F", "1", "HSV"])
def test_pil_modes(mode: str, rgb: np.ndarray) -> None:
    src = Image.fromarray(rgb)
    img = src.convert(mode) if mode not in ("I;16", "I", "F") else Image.fromarray(rgb[:, :, 0]).convert(mode)
    out = load_image(img, "x")
    assert out.mode == "RGB" and out.size == (50, 20)


def test_alpha_composited_on_white() -> None:
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 3] = 0  # fully transparent black
    a[0, 0] = (0, 0, 0, 255)
    a[1, 1] = (0, 0, 0, 128)
    out = np.asarray(load_image(Image.fromarray(a, "RGBA"), "x"))
    assert out[0, 0].tolist() == [0, 0, 0] and out[2, 2].tolist() == [255, 255, 255]
    assert 120 <= out[1, 1, 0] <= 135
    la = np.asarray(load_image(Image.fromarray(a[..., [0, 3]], "LA"), "x"))
    assert la[2, 2].tolist() == [255, 255, 255] and la[0, 0].tolist() == [0, 0, 0]
    assert np.asarray(load_image(a, "x"))[2, 2].tolist() == [255, 255, 255]  # (H, W, 4) arrays too


def test_palette_with_transparency() -> None:
    p = Image.new("P", (3, 3), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((1, 1), 1)
    p.info["transparency"] = 0
    out = np.asarray(load_image(p, "x"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [255, 0, 0]


def test_sixteen_bit_png_file(tmp_path: Path) -> None:
    a = np.array([[0, 65535], [257 * 100, 257 * 7]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    out = np.asarray(load_image(path, "x"))[..., 0]
    assert out.tolist() == [[0, 255], [100, 7]]


EIGHT_BIT_IN_WIDE_TYPES: dict[str, Callable[[np.ndarray], object]] = {
    'L.convert("I")': lambda g: Image.fromarray(g).convert("I"),
    'L.convert("I;16")': lambda g: Image.fromarray(g).convert("I;16"),
    'L.convert("I;16B")': lambda g: Image.fromarray(g).convert("I;16B"),
    "int32 array -> PIL I": lambda g: Image.fromarray(g.astype(np.int32)),
    "uint16 (H, W)": lambda g: g.astype(np.uint16),
    "uint16 (H, W, 3)": lambda g: np.dstack([g, g, g]).astype(np.uint16),
    "big-endian uint16": lambda g: g.astype(">u2"),
}


@pytest.mark.parametrize("case", list(EIGHT_BIT_IN_WIDE_TYPES))
def test_eight_bit_values_in_sixteen_bit_types_are_kept(case: str) -> None:
    """0-255 data in an "I"/"I;16" image or a uint16 array is 8-bit data: read as is, never darkened 257 times."""
    g = np.tile(np.arange(0, 256, 5, dtype=np.uint8), (6, 1))  # 0..255, max 255
    out = np.asarray(load_image(EIGHT_BIT_IN_WIDE_TYPES[case](g), "x"))
    assert np.array_equal(out[..., 0], g) and np.array_equal(out[..., 2], g), case


@pytest.mark.parametrize("case", ["PIL I", "PIL I;16", "PIL I;16B", "uint16 array", "16-bit PNG"])
def test_full_range_sixteen_bit_is_scaled(case: str, tmp_path: Path) -> None:
    """Any value above 255 makes the data 16-bit: 65535 -> 255 (so 256 -> 1, the documented boundary)."""
    a = np.array([[0, 65535, 257 * 100], [256, 257 * 7, 1000]])
    x = {"PIL I": Image.fromarray(a.astype(np.int32)), "PIL I;16": Image.fromarray(a.astype(np.uint16)),
         "PIL I;16B": Image.fromarray(a.astype(">u2")), "uint16 array": a.astype(np.uint16)}.get(case)
    if x is None:
        x = tmp_path / "deep.png"
        Image.fromarray(a.astype(np.uint16)).save(x)
    assert np.asarray(load_image(x, "x"))[..., 0].tolist() == [[0, 255, 100], [1, 7, 4]]


def test_sixteen_bit_out_of_range_is_an_error() -> None:
    with pytest.raises(InputError, match="do not fit 16 bits"):
        load_image(Image.fromarray(np.array([[-1, 300]], np.int32)), "x")
    with pytest.raises(InputError, match="do not fit 16 bits"):
        load_image(Image.fromarray(np.array([[0, 70000]], np.int32)), "x")


@pytest.mark.parametrize("shape", [(20, 50), (20, 50, 1), (20, 50, 3), (20, 50, 4)])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float64", "bool"])
def test_numpy_shapes_and_dtypes(shape: tuple[int, ...], dtype: str) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, shape, dtype=np.uint8)
    if len(shape) == 3 and shape[2] == 4:
        base[..., 3] = 255
    x = {"uint8": base, "uint16": base.astype(np.uint16) * 257, "float32": base.astype(np.float32) / 255,
         "float64": base / 255.0, "bool": base > 127}[dtype]
    out = np.asarray(load_image(x, "x"))
    assert out.shape == (20, 50, 3)
    gray = base if base.ndim == 2 else base[..., 0]
    expect = (gray > 127) * 255 if dtype == "bool" else gray
    assert np.array_equal(out[..., 0], expect)


def test_numpy_float_range_and_strides() -> None:
    a = np.full((4, 6), 1.0004, np.float32)  # rounding overshoot: clipped
    assert np.asarray(load_image(a, "x")).max() == 255
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0] = 200
    assert np.asarray(load_image(bgr[:, :, ::-1], "x"))[0, 0].tolist() == [0, 0, 200]  # negative strides are fine


def test_tensors(rgb: np.ndarray) -> None:
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    for t in (chw, chw.float() / 255, chw.double() / 255, chw.half() / 255):
        assert np.array_equal(np.asarray(load_image(t, "x")), rgb) or t.dtype == torch.half
    assert np.asarray(load_image(chw[:1], "x")).shape == (20, 50, 3)
    assert np.asarray(load_image(chw[0], "x")).shape == (20, 50, 3)  # (H, W)
    rgba = torch.cat([chw, torch.full((1, 20, 50), 255, dtype=torch.uint8)])
    assert np.array_equal(np.asarray(load_image(rgba, "x")), rgb)


def test_iter_inputs_expands_batches_and_singletons(rgb: np.ndarray) -> None:
    batch = torch.rand(3, 3, 8, 8)
    items = list(iter_inputs(["a.png", batch, rgb]))
    assert [(i, n) for i, n, _ in items] == [(0, "a.png"), (1, "input 1[0]"), (1, "input 1[1]"), (1, "input 1[2]"),
                                            (2, "input 2")]
    assert len(list(iter_inputs(batch))) == 3
    assert [n for _, n, _ in iter_inputs("word.png")] == ["word.png"]
    assert len(list(iter_inputs(rgb))) == 1
    assert list(iter_inputs(x for x in [])) == []
    with pytest.raises(TypeError, match="iterable"):
        iter_inputs(3)


def test_exif_orientation_applied() -> None:
    img = Image.new("RGB", (40, 10), "white")
    img.paste((255, 0, 0), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    data = png_bytes(img, "JPEG", exif=exif.tobytes(), quality=100)
    out = load_image(data, "x")
    assert out.size == (10, 40)
    assert np.asarray(out)[2, -3, 0] > 200 and np.asarray(out)[2, -3, 1] < 80  # the red corner moved top-right
    assert load_image(Image.open(io.BytesIO(data)), "x").size == (10, 40)


# ------------------------------------------------------------------------------------------------------ bad inputs
def bad_inputs(tmp_path: Path) -> dict[str, tuple[object, str]]:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = png_bytes(Image.fromarray(np.zeros((30, 30, 3), np.uint8) + 90))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good[: len(good) // 2])
    return {
        "missing file": (str(tmp_path / "missing.png"), "no such file"),
        "directory": (tmp_path, "directory"),
        "not an image": (str(text), "not an image"),
        "0-byte file": (str(empty), "empty file (0 bytes)"),
        "0 bytes": (b"", "empty image data (0 bytes)"),
        "garbage bytes": (b"\x00\x01garbage", "not an image"),
        "truncated png file": (str(trunc), "not a readable image"),
        "truncated png bytes": (good[: len(good) // 2], "not a readable image"),
        "0x0 PIL": (Image.new("RGB", (0, 0)), "empty image"),
        "0xN array": (np.zeros((0, 5, 3), np.uint8), "empty image"),
        "int64 array": (np.zeros((4, 4), np.int64), "dtype int64"),
        "complex array": (np.zeros((4, 4), np.complex64), "dtype complex64"),
        "2-channel array": (np.zeros((4, 4, 2), np.uint8), "shape"),
        "4-D array": (np.zeros((1, 4, 4, 3), np.uint8), "shape"),
        "NaN array": (np.full((4, 4), np.nan, np.float32), "NaN"),
        "0-255 float": (np.full((4, 4), 200.0), "divide by 255"),
        "NaN tensor": (torch.full((3, 4, 4), float("nan")), "NaN"),
        "(3, 0, 0) tensor": (torch.zeros(3, 0, 0), "empty image (tensor of shape (3, 0, 0))"),
        "(0, 5) tensor": (torch.zeros(0, 5, dtype=torch.uint8), "empty image (tensor of shape (0, 5))"),
        "5-D tensor": (torch.zeros(1, 1, 3, 4, 4), "shape"),
        "1-D tensor": (torch.zeros(5), "shape"),
        "HWC tensor": (torch.zeros(8, 8, 3), "permute"),
        "int64 tensor": (torch.zeros(3, 4, 4, dtype=torch.long), "dtype torch.int64"),
        "complex tensor": (torch.zeros(3, 4, 4, dtype=torch.complex64), "dtype torch.complex64"),
        "None": (None, "unsupported input type"),
        "int": (7, "unsupported input type"),
    }


def test_bad_inputs_name_the_input(tmp_path: Path) -> None:
    for case, (x, reason) in bad_inputs(tmp_path).items():
        with pytest.raises(InputError) as e:
            load_image(x, f"input {case}")
        assert str(e.value).startswith(f"input {case}: "), case
        assert reason in str(e.value), (case, str(e.value))
        assert e.value.name == f"input {case}"


def test_error_message_names_index_and_path(tmp_path: Path) -> None:
    empty = tmp_path / "x.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as e:
        load_image(str(empty), str(empty), index=3)
    assert str(e.value) == f"input 3 ({empty}): empty file (0 bytes)"
    assert (e.value.name, e.value.index, e.value.reason) == (str(empty), 3, "empty file (0 bytes)")
    with pytest.raises(InputError, match=r"^input 4 \(.*nope\.png\): no such file$"):
        load_image(tmp_path / "nope.png", str(tmp_path / "nope.png"), index=4)
    err = InputError("a.png", "bad")
    assert str(err) == "a.png: bad"
    err.index = 2  # what predict does once it knows the position: the message follows
    assert str(err) == "input 2 (a.png): bad"
    assert str(pickle.loads(pickle.dumps(err))) == "input 2 (a.png): bad"
    assert str(InputError("input 2", "bad", 2)) == "input 2: bad"  # names that are the index are not repeated
    assert str(InputError("input 2[1]", "bad", 2)) == "input 2[1]: bad"


# ------------------------------------------------------------------------------------------------------ transform
def test_preprocessor_output_and_normalization(tiny_config: ViTConfig) -> None:
    pre = Preprocessor(tiny_config)
    white = pre(Image.new("RGB", (77, 19), "white"))
    assert white.shape == (3, 32, 128) and white.dtype == torch.float32
    assert torch.allclose(white, torch.ones_like(white))  # (1 - 0.5) / 0.5
    cfg = ViTConfig.from_dict({**tiny_config.to_dict(), "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    black = Preprocessor(cfg)(Image.new("RGB", (10, 10)))
    assert torch.allclose(black[:, 0, 0], -torch.tensor([0.485 / 0.229, 0.456 / 0.224, 0.406 / 0.225]))
    with pytest.raises(ValueError, match="RGB"):
        pre(Image.new("L", (10, 10)))


@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "area", "nearest"])
def test_interpolation_from_config(tiny_config: ViTConfig, rgb: np.ndarray, interp: str) -> None:
    cfg = ViTConfig.from_dict({**tiny_config.to_dict(), "interpolation": interp})
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "area": Image.BOX, "nearest": Image.NEAREST}
    expect = np.asarray(Image.fromarray(rgb).resize((128, 32), resample[interp]), np.float32) / 255
    got = Preprocessor(cfg)(Image.fromarray(rgb)) * 0.5 + 0.5
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), expect, atol=1e-6)


def test_keep_aspect_ratio_pads_with_border_colour(tiny_config: ViTConfig) -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 255))  # 2:1 crop into a 4:1 input: 64x32 content + padding
    img.paste((255, 255, 0), (5, 5, 35, 15))
    out = Preprocessor(tiny_config, keep_aspect_ratio=True).resize(img)
    a = np.asarray(out)
    assert out.size == (128, 32)
    assert a[16, 32].tolist() == [255, 255, 0]  # content starts at the left
    assert a[16, 100].tolist() == [0, 0, 255]  # padding = border colour
    wide = Preprocessor(tiny_config, keep_aspect_ratio=True).resize(Image.new("RGB", (400, 20), "red"))
    assert wide.size == (128, 32) and np.asarray(wide)[16, 64].tolist() == [255, 0, 0]


def test_rotate_tall(tiny_config: ViTConfig) -> None:
    tall = Image.new("RGB", (10, 40), "white")
    tall.paste((0, 0, 0), (0, 0, 10, 5))  # black band at the top
    rotated = np.asarray(Preprocessor(tiny_config, rotate_tall=True).resize(tall))
    assert rotated[16, 2].tolist() == [0, 0, 0] and rotated[16, 120].tolist() == [255, 255, 255]  # top -> left
    stretched = np.asarray(Preprocessor(tiny_config).resize(tall))
    assert stretched[0, 64].tolist() == [0, 0, 0] and stretched[31, 64].tolist() == [255, 255, 255]
    square = Image.new("RGB", (30, 40), "white")  # not clearly taller than wide: unchanged
    assert np.asarray(Preprocessor(tiny_config, rotate_tall=True).resize(square)).shape == (32, 128, 3)
