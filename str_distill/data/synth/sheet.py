"""Contact sheet: a PNG grid of rendered samples with their labels underneath, for eyeballing the renderer."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .render import SynthConfig, WordRenderer
from .resources import ResourcePack


def _label_font(size: int = 13) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow without FreeType / old Pillow
        return ImageFont.load_default()


def make_contact_sheet(
    renderer: WordRenderer,
    n: int = 64,
    start: int = 0,
    cols: int = 4,
    cell_width: int = 240,
    cell_height: int = 48,
) -> Image.Image:
    """Render samples ``start .. start + n - 1`` into a grid; each cell shows the image (scaled to fit) and
    ``repr(label)`` below it, plus the sample index."""
    if n < 1:
        raise ValueError("n must be >= 1")
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    font = _label_font()
    text_h = 18
    pad = 6
    cw, ch = cell_width + 2 * pad, cell_height + text_h + 2 * pad
    sheet = Image.new("RGB", (cols * cw, rows * ch), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k in range(n):
        idx = start + k
        img, label = renderer.render(idx)
        im = Image.fromarray(img)
        scale = min(cell_height / im.height, cell_width / im.width)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
        x, y = (k % cols) * cw + pad, (k // cols) * ch + pad
        sheet.paste(im, (x, y))
        draw.rectangle((x - 1, y - 1, x + im.width, y + im.height), outline=(200, 200, 200))
        draw.text((x, y + cell_height + 2), f"{idx}: {label!r}", fill=(0, 0, 160), font=font)
    return sheet


def write_contact_sheet(
    out: str | os.PathLike[str],
    n: int = 64,
    seed: int = 0,
    pack: str | os.PathLike[str] | ResourcePack | None = None,
    config: SynthConfig | None = None,
    cols: int = 4,
) -> Path:
    """Render ``n`` samples of stream ``seed`` and save the contact sheet as PNG; returns the path."""
    rp = pack if isinstance(pack, ResourcePack) else ResourcePack.load(pack)
    renderer = WordRenderer(rp, config or SynthConfig(), seed=seed)
    sheet = make_contact_sheet(renderer, n=n, cols=cols)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path
