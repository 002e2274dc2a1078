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
    from .predictor import Prediction, Recognizer
    from .training.ccd import CCD, CCDConfig

__all__ = [
    "ccd_panel",
    "PALETTE",
    "attention_panel",
    "colormap",
    "ctc_frame_probs",
    "heatmap",
    "label_panel",
    "overlay_mask",
    "plot_ctc_alignment",
    "predictions_panel",
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


# --------------------------------------------------------------------------------------------- CTC and predictions
_CHAR_COLOR, _REPEAT_COLOR, _BLANK_COLOR = (0, 0, 0), (150, 150, 150), (185, 185, 185)
_BAR_CHAR, _BAR_BLANK = (0, 130, 200), (200, 200, 200)


def _as_pil(image: Image.Image | np.ndarray | torch.Tensor) -> Image.Image:
    """A PIL image, a uint8 ``(H, W[, 3])`` array or a ``(3, H, W)`` tensor in ``[0, 1]`` -> RGB PIL image."""
    if isinstance(image, torch.Tensor):
        return to_pil(image)
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).convert("RGB")
    return image.convert("RGB")


def ctc_frame_probs(recognizer: Recognizer, image: object) -> tuple[Image.Image, torch.Tensor]:
    """What a recognizer's CTC head reads in one image, frame by frame.

    Args:
        recognizer: a :class:`~str_distill.Recognizer` whose model has a CTC head (every model family has one).
        image: one input of any kind :meth:`~str_distill.Recognizer.predict` accepts (path, bytes, PIL image,
            numpy array, tensor).

    Returns:
        ``(view, probs)``: ``view``, the network's input as an RGB image (resized, and for variable-width models
        padded to the width the network reads, exactly as in ``predict``, so the ``T`` frames tile it evenly), and
        ``probs``, float32 ``(T, C)``: the softmax of the CTC logits (class 0 is the blank, class ``i`` the
        charset's character ``i - 1``). Greedy CTC decoding of ``probs`` gives ``predict(image, decoding="ctc")``.
    """
    from .preprocess import load_image

    pre = recognizer.preprocessor
    x = pre(load_image(image, "image"))
    if pre.variable_width:
        x = pre.pad(x, pre.padded_width(x.shape[-1]))
    with torch.inference_mode():
        logits = recognizer.model(x[None].to(recognizer.device, recognizer.dtype), "ctc").logits
    pixels = (x * pre.std + pre.mean).clamp(0, 1)
    return to_pil(pixels.flip(0) if pre.bgr else pixels), logits[0].float().softmax(-1).cpu()


def plot_ctc_alignment(
    image: Image.Image | np.ndarray | torch.Tensor,
    probs: torch.Tensor | np.ndarray,
    charset: str | Sequence[str],
    *,
    scale: int = 2,
    title: str | None = None,
) -> Image.Image:
    """Draw a CTC alignment: which class each output frame picks, where in the image, and how sure it is.

    Frame ``t`` covers the ``t``-th of ``T`` equal columns of the image. Three rows, frames left to right:

    * the image, enlarged ``scale`` times, with the column of every frame that emits a character tinted blue (the
      first frame of a run of one non-blank class: the frame that greedy CTC decoding keeps);
    * each frame's most probable class: an emitted character in black, a repeat of it in grey, the blank as a dot;
    * one bar per frame, as high as that class's probability (blue: a character, grey: the blank).

    Args:
        image: the network's input as the frames see it, e.g. the ``view`` of :func:`ctc_frame_probs` (a PIL
            image, a uint8 ``(H, W[, 3])`` array or a ``(3, H, W)`` tensor in ``[0, 1]``).
        probs: ``(T, C)`` per-frame class probabilities (the softmax of the CTC logits), ``C = len(charset) + 1``.
        charset: the characters; class 0 is the blank and class ``i > 0`` is ``charset[i - 1]`` (the layout of
            :class:`~str_distill.Tokenizer`, e.g. ``recognizer.model.tokenizer.charset``).
        scale: enlargement of the image (nearest neighbour), at least 1.
        title: written above the picture (e.g. the decoded text and its confidence).

    Returns:
        An RGB image.

    Raises:
        ValueError: ``probs`` is not ``(T, len(charset) + 1)`` with ``T >= 1``, or ``scale < 1``.
    """
    p = torch.as_tensor(probs).detach().float().cpu()
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] != len(charset) + 1:
        raise ValueError(f"probs must be (T, len(charset) + 1) = (T, {len(charset) + 1}), got {tuple(p.shape)}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    img = _as_pil(image)
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    pmax, ids = (v.tolist() for v in p.max(-1))
    frames = len(ids)
    emitted = [i != 0 and (t == 0 or ids[t - 1] != i) for t, i in enumerate(ids)]
    img = overlay_mask(img, torch.tensor([emitted], dtype=torch.float32), _BAR_CHAR, 0.22)

    fw = img.width / frames
    font = _font(int(min(18, max(9, fw * 0.9))))
    char_h, bar_h, gap = font.getbbox("Ag")[3] + 6, 28, 3
    out = Image.new("RGB", (img.width, img.height + char_h + bar_h + 2 * gap), (255, 255, 255))
    out.paste(img, (0, 0))
    draw = ImageDraw.Draw(out)
    y_char = img.height + gap + char_h / 2
    bar_top, bar_bottom = img.height + 2 * gap + char_h, out.height - 1
    draw.line([(0, bar_top), (out.width, bar_top)], fill=(235, 235, 235))  # probability 1
    for t, (cls, prob) in enumerate(zip(ids, pmax)):
        x0, x1 = t * fw, (t + 1) * fw
        if cls == 0:
            glyph, color = "\u00b7", _BLANK_COLOR
        else:
            glyph, color = charset[cls - 1], _CHAR_COLOR if emitted[t] else _REPEAT_COLOR
        draw.text(((x0 + x1) / 2, y_char), glyph, fill=color, font=font, anchor="mm")
        top = bar_bottom - prob * (bar_bottom - bar_top)
        draw.rectangle([x0 + 1, top, max(x0 + 1, x1 - 2), bar_bottom], fill=_BAR_BLANK if cls == 0 else _BAR_CHAR)
    draw.line([(0, bar_bottom), (out.width, bar_bottom)], fill=(120, 120, 120))
    return label_panel(title, out) if title else out


def predictions_panel(
    images: Sequence[Image.Image | np.ndarray | torch.Tensor],
    predictions: Sequence[Prediction],
    labels: Sequence[str | None] | None = None,
    *,
    height: int = 48,
    columns: int = 2,
) -> Image.Image:
    """A grid of word images, each with its predicted text and confidence written above it.

    Args:
        images: the images that were read (PIL images, uint8 arrays or ``(3, H, W)`` tensors in ``[0, 1]``),
            shown at ``height`` pixels with their aspect ratio kept.
        predictions: one :class:`~str_distill.Prediction` (anything with ``text`` and ``confidence``) per image.
        labels: the expected texts (``None`` for unknown ones): a correct reading is captioned in green, a wrong one
            in red followed by the expected text.
        height: the height of each image in the grid.
        columns: images per row.

    Returns:
        An RGB image.

    Raises:
        ValueError: no images, or ``predictions`` (or ``labels``) of another length than ``images``.
    """
    if not images or len(predictions) != len(images) or (labels is not None and len(labels) != len(images)):
        raise ValueError("predictions_panel() needs one prediction (and label, if given) per image, and an image")
    font, pad = _font(15), 4
    tiles = []
    for n, (image, pred) in enumerate(zip(images, predictions)):
        img = _as_pil(image)
        img = img.resize((max(1, round(img.width * height / img.height)), height), Image.Resampling.BICUBIC)
        caption, color = f"{pred.text}  {pred.confidence:.2f}", (0, 0, 0)
        expected = labels[n] if labels is not None else None
        if expected is not None:
            ok = pred.text == expected
            color = (0, 130, 40) if ok else (200, 20, 20)
            caption += "" if ok else f"  (expected {expected})"
        th = font.getbbox("Ag")[3] + 2 * pad
        tile = Image.new("RGB", (max(img.width, int(font.getlength(caption))) + 2 * pad, height + th + pad), "white")
        ImageDraw.Draw(tile).text((pad, pad), caption, fill=color, font=font)
        tile.paste(img, (pad, th))
        tiles.append(tile)
    return stack(tiles, columns=columns)
