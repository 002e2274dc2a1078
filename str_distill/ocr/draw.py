"""Draw OCR results on the image (Pillow only): each box outlined, its text on a label above it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..viz import PALETTE, _font

__all__ = ["draw_results"]


def draw_results(image: Image.Image | np.ndarray, results: Sequence[Any], width: int | None = None,
                 show_text: bool = True) -> Image.Image:
    """An RGB copy of ``image`` with every result's polygon outlined and (``show_text``) its text and confidence on
    a filled label at the box's top-left corner.

    Args:
        image: a PIL image or an RGB ``(H, W, 3)`` uint8 array.
        results: :class:`~str_distill.ocr.OCRResult` objects (anything with ``polygon``, ``text``,
            ``confidence``); a :class:`~str_distill.ocr.Detection`'s boxes can be drawn as objects with empty text.
        width: outline width in pixels (default: about 1/400 of the image's long side, at least 2).
    """
    img = (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).convert("RGB").copy()
    lw = width or max(2, round(max(img.size) / 400))
    font = _font(max(12, round(max(img.size) / 60)))
    draw = ImageDraw.Draw(img)
    for i, r in enumerate(results):
        color = PALETTE[i % len(PALETTE)]
        pts = [tuple(map(float, p)) for p in np.asarray(r.polygon)]
        draw.line([*pts, pts[0]], fill=color, width=lw, joint="curve")
        if show_text and r.text:
            label = f"{r.text} {r.confidence:.2f}"
            x, y = pts[0]
            left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
            tw, th = right - left, bottom - top
            y0 = y - th - 2 * lw if y - th - 2 * lw >= 0 else y + lw
            draw.rectangle([x, y0, x + tw + 2 * lw, y0 + th + 2 * lw], fill=color)
            luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
            draw.text((x + lw - left, y0 + lw - top), label, font=font,
                      fill=(0, 0, 0) if luminance > 140 else (255, 255, 255))
    return img
