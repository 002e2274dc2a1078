"""The OCR pipeline with the bundled detector and recognizer on rendered images whose text and boxes are known."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from str_distill.ocr import OCR, OCRResult, TextDetector, crop_box
from str_distill.ocr.evaluate import polygon_iou, rect_iou
from str_distill.preprocess import InputError

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
LINES = [("OPEN DAILY", (60, 80)), ("FRESH COFFEE", (60, 260)), ("2024", (520, 440))]


def _font(size: int) -> ImageFont.FreeTypeFont:
    if not FONT.is_file():
        pytest.skip(f"{FONT} is not installed (Debian: fonts-dejavu-core)")
    return ImageFont.truetype(str(FONT), size)


def render(lines: list[tuple[str, tuple[int, int]]] = LINES, size: tuple[int, int] = (800, 560), angle: float = 0.0
           ) -> tuple[Image.Image, list[tuple[str, np.ndarray]]]:
    """Dark text on a light, slightly textured background; returns the image and each line's true box (4 points,
    rotated with the image about its centre when ``angle`` is set)."""
    rng = np.random.default_rng(0)
    bg = (np.full((size[1], size[0], 3), (236, 228, 210), np.float32) + rng.normal(0, 4, (size[1], size[0], 3)))
    img = Image.fromarray(bg.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    font = _font(56)
    truth = []
    for text, (x, y) in lines:
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
        draw.text((x, y), text, font=font, fill=(30, 30, 40))
        truth.append((text, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)))
    if angle:
        img = img.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(236, 228, 210))
        c = np.array([size[0] / 2, size[1] / 2], np.float32)
        t = np.radians(angle)
        rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]], np.float32)  # PIL rotates counter-clockwise
        truth = [(text, (box - c) @ rot.T + c) for text, box in truth]
    return img, truth


@pytest.fixture(scope="module")
def ocr() -> OCR:
    try:
        return OCR.from_pretrained(local_files_only=True)
    except Exception as e:  # the bundled detector is missing from this checkout
        pytest.skip(f"bundled OCR weights not available: {e}")


def _check(results: list[OCRResult], truth: list[tuple[str, np.ndarray]], min_iou: float) -> None:
    assert [r.text for r in results] == [t for t, _ in truth]  # also the reading order
    for r, (_, box) in zip(results, truth):
        assert r.polygon.shape == (4, 2) and r.polygon.dtype == np.float32
        assert polygon_iou(r.polygon, box) >= min_iou, (r.text, r.polygon.tolist(), box.tolist())
        assert 0.5 <= r.confidence <= 1 and 0 < r.box_score <= 1
        assert r.char_probs.shape == (len(r.text),)


def test_reads_rendered_lines_in_reading_order(ocr: OCR) -> None:
    img, truth = render()
    _check(ocr(img)[0], truth, 0.6)  # the DB box is grown beyond the glyphs' tight box by design


def test_rotated_text_gets_rotated_boxes(ocr: OCR) -> None:
    img, truth = render([("OPEN DAILY", (150, 200)), ("FRESH COFFEE", (150, 330))], angle=12)
    res = ocr(img)[0]
    _check(res, truth, 0.5)
    for r in res:
        top = r.polygon[1] - r.polygon[0]
        assert np.degrees(np.arctan2(-top[1], top[0])) == pytest.approx(12, abs=3)


def test_empty_image_gives_no_results(ocr: OCR) -> None:
    blank = np.full((300, 400, 3), 200, np.uint8)
    assert ocr([blank, Image.fromarray(blank)]) == [[], []]


def test_every_input_type_and_errors(ocr: OCR, tmp_path: Path) -> None:
    img, truth = render([("HELLO", (40, 60))], size=(300, 200))  # detected at 1120x736: the short side goes to 736
    path = tmp_path / "hello.png"
    img.save(path)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    arr = np.array(img)
    tensor = torch.from_numpy(arr).permute(2, 0, 1)
    out = ocr([str(path), path, buf.getvalue(), img, arr, tensor, tensor[None].repeat(2, 1, 1, 1)])
    assert len(out) == 8
    assert all([r.text for r in res] == ["HELLO"] for res in out)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.png"):
        ocr([str(path), str(bad)])
    res = ocr([str(bad), str(path)], errors="return")
    assert isinstance(res[0], InputError) and res[0].index == 0 and [r.text for r in res[1]] == ["HELLO"]
    with pytest.raises(ValueError, match="errors"):
        ocr([str(path)], errors="ignore")  # type: ignore[arg-type]


def test_huge_image_refused_or_downscaled(ocr: OCR) -> None:
    with pytest.raises(InputError, match="pixels"):
        ocr(np.zeros((6000, 5000, 3), np.uint8))  # 30 MP > max_pixels (25 MP)
    img, truth = render([("OPEN DAILY", (300, 400)), ("2024", (1800, 1600))], size=(4000, 3000))
    x = ocr.detector.input_tensor(np.asarray(img))
    assert tuple(x.shape) == (1, 3, 1504, 1984)  # detected at the long side's cap, 2000 (multiples of 32)
    res = ocr(img)[0]
    assert [r.text for r in res] == ["OPEN DAILY", "2024"]  # boxes come back in full-resolution coordinates
    assert rect_iou(res[1].bbox, tuple(truth[1][1][0]) + tuple(truth[1][1][2])) > 0.5


def test_swapping_models_by_object(ocr: OCR) -> None:
    det = TextDetector(ocr.detector.model, box_thresh=0.99)  # a stricter box threshold finds fewer boxes
    img, _ = render()
    strict = OCR(det, ocr.recognizer)(img)[0]
    assert len(strict) <= 3
    with pytest.raises(TypeError, match="not a text detector"):
        TextDetector(ocr.recognizer.model)
    with pytest.raises(TypeError, match="unknown post-processing"):
        TextDetector(ocr.detector.model, threshold=0.1)


def test_crop_box_rotates_tall_crops() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    img[10:90, 40:60] = 255
    tall = crop_box(img, np.array([[40, 10], [60, 10], [60, 90], [40, 90]], np.float32))
    assert tall.shape[:2] == (20, 80)  # 80 high, 20 wide -> turned: 20 high, 80 wide
    wide = crop_box(img, np.array([[10, 40], [90, 40], [90, 60], [10, 60]], np.float32))
    assert wide.shape[:2] == (20, 80)
