"""Drawing helpers (Pillow only): mask overlays, numbered regions, attention heat maps and labelled panels."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from .training.ccd import CCD, CCDConfig

__all__ = [
    "ccd_panel",
    "PALETTE",
    "attention_panel",
    "colormap",
    "heatmap",
    "label_panel",
    "overlay_mask",
    "regions_image",
    "stack",
    "to_pil",
]

# 12 distinct colours (Tableau-like) for numbered regions
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]  # fmt: skip
_INFERNO = np.array([(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21),
                     (250, 193, 39), (252, 255, 164)], dtype=np.float32)  # fmt: skip


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def to_pil(image: torch.Tensor, scale: int = 1) -> Image.Image:
    """``(3, H, W)`` float in ``[0, 1]`` -> RGB image, enlarged ``scale`` times (nearest neighbour)."""
    a = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(a)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale != 1 else img


def _fit(mask: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A ``(h, w)`` map resized (nearest) to PIL ``size`` ``(W, H)``, as float32 in ``[0, 1]``."""
    m = torch.as_tensor(mask).detach().float().cpu()
    return F.interpolate(m[None, None], size=(size[1], size[0]), mode="nearest")[0, 0].numpy()


def overlay_mask(img: Image.Image, mask: torch.Tensor, color: tuple[int, int, int] = (255, 0, 0), alpha: float = 0.55):
    """Tint the pixels of ``mask`` ``(h, w)`` (bool or ``[0, 1]``, resized to the image) with ``color``."""
    a = np.asarray(img, dtype=np.float32)
    m = _fit(mask, img.size)[..., None] * alpha
    return Image.fromarray((a * (1 - m) + np.array(color, np.float32) * m).round().astype(np.uint8))


def regions_image(img: Image.Image, regions: torch.Tensor, valid: torch.Tensor | None = None) -> Image.Image:
    """Colour each region ``(K, h, w)`` and write its number at its centroid; invalid regions (``valid`` ``(K,)``
    False) are skipped."""
    out = img
    k = regions.shape[0]
    valid = torch.ones(k, dtype=torch.bool) if valid is None else valid
    centres = []
    for i in range(k):
        if not bool(valid[i]) or not bool(regions[i].any()):
            continue
        out = overlay_mask(out, regions[i], PALETTE[i % len(PALETTE)], 0.6)
        m = _fit(regions[i], img.size)
        ys, xs = np.nonzero(m)
        centres.append((i, float(xs.mean()), float(ys.mean())))
    draw = ImageDraw.Draw(out)
    font = _font(max(10, img.height // 3))
    for i, x, y in centres:
        draw.text(
            (x, y), str(i + 1), fill=(255, 255, 255), font=font, anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0)
        )
    return out


def colormap(values: np.ndarray) -> np.ndarray:
    """Map ``[0, 1]`` values ``(...)`` to RGB uint8 ``(..., 3)`` with an inferno-like ramp."""
    v = np.clip(values, 0, 1) * (len(_INFERNO) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_INFERNO) - 2)
    t = (v - lo)[..., None]
    return (_INFERNO[lo] * (1 - t) + _INFERNO[lo + 1] * t).round().astype(np.uint8)


def heatmap(img: Image.Image, attn: torch.Tensor, alpha: float = 0.8) -> Image.Image:
    """Blend the attention map ``(rows, cols)`` (bilinear-upsampled, scaled to its max) over a greyed image."""
    a = torch.as_tensor(attn).detach().float().cpu()
    up = F.interpolate(a[None, None], size=(img.height, img.width), mode="bilinear", align_corners=False)[0, 0].numpy()
    up = up / max(float(up.max()), 1e-12)
    base = np.asarray(img.convert("L").convert("RGB"), dtype=np.float32)
    a = (alpha * (0.4 + 0.6 * up))[..., None]  # strong where attended, the image stays legible elsewhere
    return Image.fromarray((base * (1 - a) + colormap(up).astype(np.float32) * a).round().astype(np.uint8))


def label_panel(title: str, img: Image.Image, pad: int = 4) -> Image.Image:
    """``img`` with ``title`` written above it on white."""
    font = _font(14)
    th = font.getbbox("Ag")[3] + 2 * pad
    out = Image.new("RGB", (img.width + 2 * pad, img.height + th + pad), (255, 255, 255))
    ImageDraw.Draw(out).text((pad, pad), title, fill=(0, 0, 0), font=font)
    out.paste(img, (pad, th))
    return out


def stack(images: Sequence[Image.Image], columns: int = 1, gap: int = 6) -> Image.Image:
    """Tile images row by row, ``columns`` per row, on white."""
    if not images:
        raise ValueError("stack() needs at least one image")
    cw, ch = max(i.width for i in images), max(i.height for i in images)
    rows = (len(images) + columns - 1) // columns
    out = Image.new("RGB", (columns * cw + (columns + 1) * gap, rows * ch + (rows + 1) * gap), (255, 255, 255))
    for n, im in enumerate(images):
        r, c = divmod(n, columns)
        out.paste(im, (gap + c * (cw + gap), gap + r * (ch + gap)))
    return out


def attention_panel(
    image: torch.Tensor,
    text: str,
    char_probs: Sequence[float],
    attn: torch.Tensor,
    grid: tuple[int, int],
    scale: int = 3,
) -> Image.Image:
    """One heat map per decoded character (and the end-of-sequence step) over the model input.

    Args:
        image: ``(3, H, W)`` in ``[0, 1]``, the model's input.
        text: the decoded string; char_probs: its per-character probabilities.
        attn: ``(T, rows * cols)`` decoder attention, ``T >= len(text)``.
        grid: ``(rows, cols)`` token grid.
    """
    base = to_pil(image, scale)
    tiles = [label_panel(f"input -> {text!r}", base)]
    for t in range(min(attn.shape[0], len(text) + 1)):
        name = f"{t + 1}: {text[t]!r} p={float(char_probs[t]):.2f}" if t < len(text) else f"{t + 1}: <end>"
        tiles.append(label_panel(name, heatmap(base, attn[t].view(*grid))))
    return stack(tiles, columns=2 if len(tiles) > 4 else 1)


def ccd_panel(
    image: torch.Tensor,
    ccd: CCD | None = None,
    cfg: CCDConfig | None = None,
    regions_from: str = "kmeans",
    seed: int = 0,
    scale: int = 3,
) -> Image.Image:
    """What CCD sees in one image: the k-means mask, the predicted mask (with a CCD model), and the numbered
    character regions of view 1 and, carried by the known affine map, of view 2 (same number = a pair).

    Args:
        image: ``(3, H, W)`` in ``[0, 1]`` at the model's input size.
        ccd: a pretrained CCD (its teacher's segmentation head draws the predicted mask), or None.
        cfg: region and view settings (default: ``ccd.cfg`` or :class:`CCDConfig`).
        regions_from: ``"kmeans"`` or ``"predicted"`` (needs ``ccd``): which mask the regions come from.
        seed: seeds the random views.
    """
    from .training.ccd import CCDConfig, kmeans_text_mask, make_views, paired_regions

    cfg = cfg or (ccd.cfg if ccd is not None else CCDConfig())
    x = image[None].float()
    kmeans = kmeans_text_mask(x)
    tiles = [
        label_panel("input", to_pil(image, scale)),
        label_panel("k-means text mask", overlay_mask(to_pil(image, scale), kmeans[0])),
    ]
    mask = kmeans
    if ccd is not None:
        with torch.no_grad():
            _, seg = ccd.teacher(ccd.normalize(x.to(ccd.center.device)))
        pred = seg.cpu().sigmoid() > 0.5
        tiles.append(
            label_panel("predicted text mask (seg head)", overlay_mask(to_pil(image, scale), pred[0], (0, 90, 255)))
        )
        mask = pred if regions_from == "predicted" else kmeans
    elif regions_from != "kmeans":
        raise ValueError("regions_from='predicted' needs a CCD model with a segmentation head")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    view1, view2, theta = make_views(x, cfg.views)
    torch.random.set_rng_state(gen_state)
    r1, r2, pairs = paired_regions(mask, theta, cfg.min_area, cfg.max_regions, cfg.warp_threshold)
    n, m = int(r1[0].flatten(1).any(1).sum()), int(pairs[0].sum())
    view1_img, view2_img = (
        regions_image(to_pil(view1[0], scale), r1[0]),
        regions_image(to_pil(view2[0], scale), r2[0], pairs[0]),
    )
    source = "k-means" if regions_from == "kmeans" else regions_from
    tiles.append(label_panel(f"view 1: {n} regions ({source} mask)", view1_img))
    tiles.append(label_panel(f"view 2 (+ affine): {m} pairs", view2_img))
    return stack(tiles)
