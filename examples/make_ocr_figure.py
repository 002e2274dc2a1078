"""Draw the whole-image reading figure: a scene read by ``OCR.from_pretrained()``, each line boxed and labelled.

    python examples/make_ocr_figure.py                        # renders a scene, writes docs/img/ocr.jpg
    python examples/make_ocr_figure.py --image my_photo.jpg -o read.png   # any photo of yours

The repository ships no third-party photographs, so the default input is a scene this script renders with Pillow
(a shop front: signs at several sizes, one tilted, one in perspective, a price in a corner, JPEG-compressed like a
camera picture). The same script and weights give the same files.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
try:
    import str_distill  # noqa: F401
except ImportError:  # running from a source checkout that was not pip-installed
    sys.path.insert(0, str(HERE.parent))

FONTS = Path("/usr/share/fonts/truetype/dejavu")


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / name), size)


def _sign(text: str, font: ImageFont.FreeTypeFont, fg: tuple[int, int, int], bg: tuple[int, int, int],
          pad: int = 18) -> Image.Image:
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    img = Image.new("RGBA", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), bg + (255,))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, img.width - 1, img.height - 1], outline=tuple(max(0, c - 60) for c in bg) + (255,), width=4)
    d.text((pad - x0, pad - y0), text, font=font, fill=fg)
    return img


def render_scene() -> Image.Image:
    """A 1280x800 shop front: brick-like wall, a door, four signs, a window poster."""
    rng = np.random.default_rng(7)
    w, h = 1280, 800
    wall = np.zeros((h, w, 3), np.float32) + np.array([150, 92, 70], np.float32)
    for y in range(0, h, 28):  # brick rows
        wall[y : y + 3] = (205, 195, 180)
        off = 0 if (y // 28) % 2 else 45
        for x in range(off, w, 90):
            wall[y : y + 28, x : x + 3] = (205, 195, 180)
    wall += rng.normal(0, 9, wall.shape)
    img = Image.fromarray(wall.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    d = ImageDraw.Draw(img)
    d.rectangle([880, 330, 1120, 800], fill=(60, 45, 40))  # door
    d.rectangle([120, 330, 700, 640], fill=(170, 190, 200))  # window
    board = _sign("CORNER BAKERY", _font("DejaVuSerif-Bold.ttf", 96), (250, 240, 215), (40, 70, 60), pad=26)
    img.paste(board, (120, 90), board)
    poster = _sign("Fresh bread every morning", _font("DejaVuSans.ttf", 34), (30, 30, 30), (250, 250, 240))
    img.paste(poster, (170, 380), poster)
    sale = _sign("SALE 30%", _font("DejaVuSans-Bold.ttf", 60), (255, 255, 255), (200, 30, 40))
    sale = sale.rotate(8, expand=True, resample=Image.Resampling.BICUBIC)
    img.paste(sale, (300, 470), sale)
    opening = _sign("OPEN 7 DAYS", _font("DejaVuSans-Bold.ttf", 40), (20, 20, 20), (240, 200, 60))
    src = np.array(opening)  # a door sign seen at an angle: perspective
    import cv2

    hh, ww = src.shape[:2]
    m = cv2.getPerspectiveTransform(np.float32([[0, 0], [ww, 0], [ww, hh], [0, hh]]),
                                    np.float32([[0, 0], [ww * 0.9, 18], [ww * 0.9, hh + 6], [0, hh]]))
    warped = Image.fromarray(cv2.warpPerspective(src, m, (ww, hh + 24)))
    img.paste(warped, (895, 420), warped)
    price = _sign("Coffee 2.50", _font("DejaVuSans.ttf", 30), (255, 255, 255), (35, 35, 35))
    img.paste(price, (960, 250), price)
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, 3, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, help="a photo to read (default: the rendered scene)")
    ap.add_argument("-o", "--output", type=Path, default=HERE.parent / "docs" / "img" / "ocr.jpg")
    ap.add_argument("--detector", default=None, help="detector weights (default: ppocrv6-det-small)")
    ap.add_argument("--model", default=None, help="recognizer weights (default: ppocrv6-small)")
    args = ap.parse_args()

    import torch

    from str_distill.ocr import OCR
    from str_distill.ocr.draw import draw_results

    torch.set_num_threads(1)
    if args.image is None:
        buf = io.BytesIO()
        render_scene().save(buf, format="JPEG", quality=88)  # compressed like a camera picture
        image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    else:
        with Image.open(args.image) as im:
            image = im.convert("RGB")
    ocr = OCR.from_pretrained(args.detector, args.model, device="cpu")
    results = ocr(image)[0]
    for r in results:
        print(f"{r.text}\t{r.confidence:.3f}\t{r.polygon.astype(int).tolist()}")
    drawn = draw_results(image, results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.output.suffix.lower() in (".jpg", ".jpeg"):
        drawn.save(args.output, quality=85, optimize=True)
    else:
        drawn.save(args.output, optimize=True)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
