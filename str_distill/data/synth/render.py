"""Synthetic word-crop renderer (Pillow/FreeType for glyphs, OpenCV + NumPy for everything else).

One call to :meth:`WordRenderer.render` makes one cropped word image, deterministically from ``(seed, index)``:

1. draw a face (weighted) and a cached pixel size, sample the text (caps-only faces get upper case only);
2. rasterise the text (optionally with letter spacing) into an alpha mask, add outline / shadow / a
   neighbouring-word distractor as extra alpha channels;
3. curve (``remap``), then rotate / shear / perspective-warp all channels with one ``warpPerspective``;
4. crop around the text box with random margins;
5. pick a background (natural crop from the pack or procedural flat / gradient / noise) and a text colour that
   contrasts with the pixels under the glyphs (visibility check; busy backgrounds are flattened, colours re-picked);
6. composite, resize to the output height, then blur / low resolution / noise / JPEG degradations.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageFont

from .resources import FontFace, ResourcePack
from .text import DEFAULT_MIX, PRINTABLE, TextSampler


@dataclass
class SynthConfig:
    """Knobs of :class:`WordRenderer` (probabilities are per image).

    Attributes:
        height_range: output height range in pixels (inclusive); width follows the text.
        max_len: maximum label length.
        charset: if set, labels only contain these characters.
        fold_case: case-insensitive labels: images keep their case, labels are folded to the charset's case
            (upper case if ``charset`` has upper-case letters only, else lower case).
        text_mix: ``(kind, probability)`` text mix, see :data:`~str_distill.data.synth.text.DEFAULT_MIX`.
        font_sizes: pixel sizes each face is rasterised at (the crop is then resized to the output height).
        font_cache_size: faces x sizes kept open per renderer (LRU; opening costs ~1 ms, ~30 KB each).
        bg_cache_size: decoded backgrounds kept per renderer (LRU; ~0.25 MB each).
        p_natural_bg: probability of a natural background when the pack has some (else procedural).
        min_contrast: minimum luminance difference (0..255) between text and the background under it.
        max_bg_std: busier backgrounds (luminance std under the text) get their contrast reduced.
        p_spacing / spacing_range: letter-spacing probability and extra spacing in units of the font size.
        p_outline / p_shadow: outline (stroke) and drop-shadow probabilities.
        p_distractor: probability of a cut-off neighbouring word at the left or right edge.
        p_curve / max_curve: arc-shaped baseline; sagitta up to ``max_curve`` x text height.
        p_rotation / max_rotation: in-plane rotation (degrees).
        p_shear / max_shear: horizontal shear (italic-like slant), tan of the angle.
        p_perspective / perspective_strength: perspective (one side taller), relative height change.
        margin_range / vmargin_range: horizontal / vertical crop margins in units of the text height.
        p_blur / p_motion_blur / p_noise / p_lowres / p_jpeg: degradation probabilities.
        blur_sigma / noise_sigma / lowres_factor / jpeg_quality: degradation strengths (ranges).
    """

    height_range: tuple[int, int] = (32, 64)
    max_len: int = 25
    charset: str | None = None
    fold_case: bool = False
    text_mix: tuple[tuple[str, float], ...] = DEFAULT_MIX
    font_sizes: tuple[int, ...] = (26, 44)
    font_cache_size: int = 3000
    bg_cache_size: int = 1024
    p_natural_bg: float = 0.75
    min_contrast: float = 80.0
    max_bg_std: float = 38.0
    p_spacing: float = 0.15
    spacing_range: tuple[float, float] = (-0.04, 0.35)
    p_outline: float = 0.12
    p_shadow: float = 0.12
    p_distractor: float = 0.06
    p_curve: float = 0.08
    max_curve: float = 0.45
    p_rotation: float = 0.3
    max_rotation: float = 7.0
    p_shear: float = 0.12
    max_shear: float = 0.3
    p_perspective: float = 0.2
    perspective_strength: float = 0.25
    margin_range: tuple[float, float] = (0.03, 0.35)
    vmargin_range: tuple[float, float] = (0.03, 0.22)
    p_blur: float = 0.2
    p_motion_blur: float = 0.05
    p_noise: float = 0.25
    p_lowres: float = 0.15
    p_jpeg: float = 0.3
    blur_sigma: tuple[float, float] = (0.4, 1.4)
    noise_sigma: tuple[float, float] = (2.0, 12.0)
    lowres_factor: tuple[float, float] = (0.35, 0.7)
    jpeg_quality: tuple[int, int] = (25, 90)

    def __post_init__(self) -> None:
        lo, hi = self.height_range
        if not 8 <= lo <= hi:
            raise ValueError(f"height_range must satisfy 8 <= lo <= hi, got {self.height_range}")
        if self.max_len < 1:
            raise ValueError("max_len must be >= 1")
        if not self.font_sizes:
            raise ValueError("font_sizes must not be empty")
        self.font_sizes = tuple(sorted(int(s) for s in self.font_sizes))

    def replace(self, **changes: Any) -> SynthConfig:
        """A copy with some fields changed."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw.update(changes)
        return SynthConfig(**kw)


class _Font:
    __slots__ = ("font", "size", "cap_top", "space")

    def __init__(self, face: FontFace, size: int) -> None:
        self.font = ImageFont.truetype(face.path, size, index=face.index, layout_engine=ImageFont.Layout.BASIC)
        self.size = size
        self.cap_top = self.font.getbbox("H", anchor="ls")[1]  # negative: above the baseline
        self.space = max(1.0, self.font.getlength(" "))


def _lum(c: tuple[float, float, float]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


class WordRenderer:
    """Renders ``(image, label)`` pairs, deterministic for ``(seed, index)``.

    Args:
        pack: fonts, backgrounds and words (:meth:`ResourcePack.load`).
        config: rendering knobs.
        seed: stream seed; ``render(i)`` depends only on ``(seed, i)``, the pack and the config.
    """

    def __init__(self, pack: ResourcePack, config: SynthConfig | None = None, seed: int = 0) -> None:
        self.pack = pack
        self.config = config = config or SynthConfig()
        self.seed = int(seed)
        self.sampler = TextSampler(
            pack.words,
            seed=seed,
            max_len=config.max_len,
            charset=config.charset,
            fold_case=config.fold_case,
            mix=config.text_mix,
        )
        cs = config.charset
        upper_ok = cs is None or config.fold_case or any(c.isupper() for c in cs)
        weights = [max(0.0, f.weight) if (upper_ok or not f.caps_only) else 0.0 for f in pack.fonts]
        if not pack.fonts or sum(weights) <= 0:
            raise ValueError("no font face usable with this config (caps-only faces need upper case in charset)")
        self._weights = weights
        self._fold = None
        if config.fold_case:
            only_upper = cs is not None and any(c.isupper() for c in cs) and not any(c.islower() for c in cs)
            self._fold = str.upper if only_upper else str.lower
        acc, self._cum = 0.0, []
        for w in weights:
            acc += w
            self._cum.append(acc)
        self._fonts: OrderedDict[tuple[int, int], _Font] = OrderedDict()
        self._bgs: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bad_faces: set[int] = set()
        self._bank: np.ndarray | None = None  # Gaussian noise bank, drawn on first use

    # ================================================================== public
    def render(self, index: int) -> tuple[np.ndarray, str]:
        """Render sample ``index``: (uint8 RGB array H x W x 3, label)."""
        r = random.Random(f"{self.seed}:{int(index)}")
        for _ in range(8):
            try:
                out = self._render(r)
            except (OSError, ValueError, cv2.error):  # broken face / degenerate geometry: draw again
                continue
            if out is not None:
                return out
        raise RuntimeError(f"could not render sample {index} (seed {self.seed})")

    def __call__(self, index: int) -> tuple[np.ndarray, str]:
        return self.render(index)

    def warm_up(self) -> int:
        """Open every (face, size) and decode every background up to the cache sizes; returns the count.

        Optional: caches also fill lazily. Takes ~1 ms per face and size.
        """
        n = 0
        for fi, w in enumerate(self._weights):
            if w <= 0:
                continue
            for size in self.config.font_sizes:
                if len(self._fonts) >= self.config.font_cache_size:
                    break
                try:
                    self._font(fi, size)
                    n += 1
                except OSError:
                    break
        for bi in range(min(len(self.pack.backgrounds), self.config.bg_cache_size)):
            if bi not in self._bgs:
                self._bgs[bi] = self.pack.decode_background(bi)
                n += 1
        return n

    # ================================================================ pipeline
    def _render(self, r: random.Random) -> tuple[np.ndarray, str] | None:
        cfg = self.config
        nr = np.random.default_rng(r.getrandbits(64))
        h_out = r.randint(*cfg.height_range)
        fi = self._pick_face(r)
        face = self.pack.fonts[fi]
        size = self._pick_size(h_out, r)
        font = self._font(fi, size)
        text = self._text(r, face)
        label = self._fold(text) if self._fold is not None else text

        # ---- glyph layers: text (0), outline (1), shadow (2), distractor (3)
        pad = int(0.25 * size) + 4
        tmask, box, base_m = self._draw_text(font, text, r, pad)
        chans = [tmask]
        x0, y0, x1, y1 = box  # text box in mask coordinates (ink, extended to cap height / baseline)
        text_h = float(y1 - y0)
        outline = r.random() < cfg.p_outline
        shadow = r.random() < cfg.p_shadow
        distract_side = 0
        if outline:
            k = max(1, round(size * r.uniform(0.03, 0.08)))
            kern = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
            chans.append(cv2.dilate(tmask, kern))
        if shadow:
            src = chans[-1]
            dx = round(size * r.uniform(0.03, 0.09)) * (1 if r.random() < 0.75 else -1)
            dy = round(size * r.uniform(0.03, 0.09)) * (1 if r.random() < 0.8 else -1)
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            sh = cv2.warpAffine(src, m, (src.shape[1], src.shape[0]))
            sig = r.uniform(0.0, 0.06) * size
            if sig > 0.6:
                sh = cv2.GaussianBlur(sh, (0, 0), sig)
            chans.append(sh)
        n_glyph = len(chans)
        if r.random() < cfg.p_distractor:
            chans, box, distract_side = self._add_distractor(chans, box, base_m, font, face, r, pad)
            x0, y0, x1, y1 = box
        layers = chans[0] if len(chans) == 1 else np.dstack(chans)

        # ---- geometry
        curved = r.random() < cfg.p_curve
        if curved:
            layers, (x0, y0, x1, y1) = self._curve(layers, (x0, y0, x1, y1), text_h, r)
        layers, (x0, y0, x1, y1) = self._warp(layers, (x0, y0, x1, y1), text_h, r, use_ink=curved)
        if layers.ndim == 2:
            layers = layers[:, :, None]

        # ---- crop with margins
        ml = r.uniform(*cfg.margin_range) * text_h
        mr = r.uniform(*cfg.margin_range) * text_h
        if distract_side < 0:  # exactly a thin slice of the neighbour, whatever the usual margin
            ml = self._distractor_margin(layers[:, :, -1], x0, y0, y1, -1, r, size, ml)
        elif distract_side > 0:
            mr = self._distractor_margin(layers[:, :, -1], x1, y0, y1, 1, r, size, mr)
        mt = r.uniform(*cfg.vmargin_range) * text_h
        mb = r.uniform(*cfg.vmargin_range) * text_h
        cx0, cy0 = int(math.floor(x0 - ml)), int(math.floor(y0 - mt))
        cx1, cy1 = int(math.ceil(x1 + mr)), int(math.ceil(y1 + mb))
        crop = _crop_padded(layers, cx0, cy0, cx1, cy1)
        hc, wc = crop.shape[:2]
        if hc < 4 or wc < 4:
            return None

        alpha = np.multiply(crop, np.float32(1.0 / 255.0), dtype=np.float32)
        a_text = alpha[:, :, 0]
        a_out = alpha[:, :, 1] if outline else None
        a_sh = alpha[:, :, n_glyph - 1] if shadow else None
        if distract_side:
            a_text = np.maximum(a_text, alpha[:, :, -1])
        sel = a_text > 0.5
        if not sel.any():
            return None

        # ---- background + colours (visibility check)
        bg = self._background(hc, wc, r, nr)
        img = self._colour_and_composite(bg, a_text, a_out, a_sh, sel, r)

        # ---- output size + degradations
        w_out = max(1, round(wc * h_out / hc))
        interp = cv2.INTER_AREA if h_out < hc else cv2.INTER_LINEAR
        img = cv2.resize(img, (w_out, h_out), interpolation=interp)
        img = self._degrade(img, r, nr)
        return np.ascontiguousarray(img), label

    # ================================================================== pieces
    _NOISE_BANK = 1 << 20

    def _gaussian(self, shape: tuple[int, ...], nr: np.random.Generator) -> np.ndarray:
        """Standard normal float32 noise of ``shape``: a window at a random offset into a bank of 2^20 values
        drawn once per renderer (25x cheaper than drawing per image; deterministic for the seed)."""
        n = int(np.prod(shape))
        if n > self._NOISE_BANK // 2:
            return nr.standard_normal(shape, dtype=np.float32)
        bank = self._bank
        if bank is None:
            bank = self._bank = np.random.default_rng([self.seed, 4242]).standard_normal(
                self._NOISE_BANK, dtype=np.float32)
        o = int(nr.integers(self._NOISE_BANK - n + 1))
        return bank[o : o + n].reshape(shape)
    def _pick_face(self, r: random.Random) -> int:
        total = self._cum[-1]
        for _ in range(16):
            i = bisect.bisect_right(self._cum, r.random() * total)
            i = min(i, len(self._cum) - 1)
            if i not in self._bad_faces:
                return i
        raise ValueError("only broken faces drawn")

    def _pick_size(self, h_out: int, r: random.Random) -> int:
        """Font size so that the crop (text + margins, ~1.2-1.5x the size) is close to the output height."""
        want = h_out * r.uniform(0.6, 0.85)
        return min(self.config.font_sizes, key=lambda s: abs(s - want))

    def _font(self, fi: int, size: int) -> _Font:
        key = (fi, size)
        f = self._fonts.get(key)
        if f is not None:
            self._fonts.move_to_end(key)
            return f
        try:
            f = _Font(self.pack.fonts[fi], size)
        except OSError:
            self._bad_faces.add(fi)
            raise
        self._fonts[key] = f
        if len(self._fonts) > self.config.font_cache_size:
            self._fonts.popitem(last=False)
        return f

    def _text(self, r: random.Random, face: FontFace) -> str:
        missing = face.missing
        text = ""
        for _ in range(6):
            text = self.sampler.sample(r, upper=face.caps_only, kinds=face.kinds or None)
            if not missing or not any(c in missing for c in text):
                return text
        text = " ".join("".join(c for c in text if c not in missing).split())
        if text:
            return text
        cs = self.config.charset
        pool = [c for c in (cs or PRINTABLE) if c.strip() and c not in missing and not (face.caps_only and c.islower())]
        return r.choice(pool) if pool else "0"

    def _draw_text(
        self, font: _Font, text: str, r: random.Random, pad: int
    ) -> tuple[np.ndarray, tuple[int, int, int, int], int]:
        """Rasterise ``text``; returns the mask, the text box (x0, y0, x1, y1) and the baseline row.

        The box spans the ink horizontally and [cap height or ink top, baseline or ink bottom] vertically, so
        x-height-only words keep a natural crop height.
        """
        cfg = self.config
        ft = font.font
        spacing = 0.0
        if r.random() < cfg.p_spacing and len(text) > 1:
            spacing = r.uniform(*cfg.spacing_range) * font.size
        pieces: list[tuple[np.ndarray, int, int]] = []  # (glyph bitmap, x, y) relative to origin on the baseline
        if spacing:
            x = 0.0
            for c in text:
                core, (ox, oy) = ft.getmask2(c, mode="L", anchor="ls")
                if core.size[0] and core.size[1]:
                    pieces.append((_core_to_array(core), int(round(x)) + ox, oy))
                x += ft.getlength(c) + spacing
        else:
            core, (ox, oy) = ft.getmask2(text, mode="L", anchor="ls")
            if core.size[0] and core.size[1]:
                pieces.append((_core_to_array(core), ox, oy))
        if not pieces:
            raise ValueError("empty rendering")
        left = min(px for _, px, _ in pieces)
        right = max(px + g.shape[1] for g, px, _ in pieces)
        top = min(font.cap_top, min(py for _, _, py in pieces))
        bottom = max(0, max(py + g.shape[0] for g, _, py in pieces))
        h = bottom - top + 2 * pad
        mask = np.zeros((h, right - left + 2 * pad), np.uint8)
        for g, px, py in pieces:
            y0, x0 = py - top + pad, px - left + pad
            dst = mask[y0 : y0 + g.shape[0], x0 : x0 + g.shape[1]]
            np.maximum(dst, g, out=dst)
        cols = np.flatnonzero(mask.max(axis=0) > 40)
        if cols.size == 0:
            raise ValueError("empty rendering")
        return mask, (int(cols[0]), pad, int(cols[-1]) + 1, h - pad), pad - top

    def _add_distractor(
        self,
        chans: list[np.ndarray],
        box: tuple[int, int, int, int],
        base_m: int,
        font: _Font,
        face: FontFace,
        r: random.Random,
        pad: int,
    ) -> tuple[list[np.ndarray], tuple[int, int, int, int], int]:
        """Append a channel with another word next to the main one (same baseline), left or right."""
        dmask, dbox, base_d = self._draw_text(font, self._text(r, face), r, pad)
        hm, hd = chans[0].shape[0], dmask.shape[0]
        top_m, top_d = max(0, base_d - base_m), max(0, base_m - base_d)
        h = max(hm + top_m, hd + top_d)
        gap = int(font.space * r.uniform(0.6, 1.2))
        side = -1 if r.random() < 0.5 else 1
        seg = dmask[:, dbox[0] : dbox[2]]
        dw = seg.shape[1]
        wm = chans[0].shape[1]
        if side < 0:
            off_m = max(0, dw + gap + pad - box[0])
            d_x = off_m + box[0] - gap - dw
        else:
            off_m = 0
            d_x = box[2] + gap
        new_w = max(off_m + wm, d_x + dw + pad)
        out = []
        for c in chans:
            o = np.zeros((h, new_w), np.uint8)
            o[top_m : top_m + hm, off_m : off_m + wm] = c
            out.append(o)
        d = np.zeros((h, new_w), np.uint8)
        d[top_d : top_d + hd, d_x : d_x + dw] = seg
        out.append(d)
        return out, (box[0] + off_m, box[1] + top_m, box[2] + off_m, box[3] + top_m), side

    @staticmethod
    def _distractor_margin(
        dch: np.ndarray, edge: float, y0: float, y1: float, side: int, r: random.Random, size: int, default: float
    ) -> float:
        """Margin that shows a thin slice (well under half a glyph) of the neighbouring word."""
        cols = np.flatnonzero(dch[max(0, int(y0)) : max(int(y0) + 1, int(y1))].max(axis=0) > 40)
        if cols.size == 0:
            return default
        near = cols[::-1] if side < 0 else cols  # ink columns, nearest to the main word first
        steps = np.flatnonzero(np.abs(np.diff(near)) > 1)
        run = (int(steps[0]) + 1) if steps.size else near.size  # width of the nearest glyph (or glyph run)
        gap = (edge - near[0]) if side < 0 else (near[0] - edge)
        return max(0.0, float(gap)) + min(r.uniform(0.03, 0.15) * size, 0.45 * run)

    def _curve(
        self, layers: np.ndarray, box: tuple[int, int, int, int], text_h: float, r: random.Random
    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        amp = r.uniform(0.15, 1.0) * self.config.max_curve * text_h * (1 if r.random() < 0.5 else -1)
        x0, y0, x1, y1 = box
        # the sagitta is relative to the text width: long words bend more in absolute pixels
        extra = int(math.ceil(abs(amp))) + 2
        layers = cv2.copyMakeBorder(layers, extra, extra, 0, 0, cv2.BORDER_CONSTANT, value=0)
        h, w = layers.shape[:2]
        cx = (x0 + x1) / 2.0
        half = max(1.0, (x1 - x0) / 2.0)
        xs = np.arange(w, dtype=np.float32)
        u = np.clip((xs - cx) / half, -1.2, 1.2)
        dy = (amp * (1.0 - u * u)).astype(np.float32)  # >0: centre moves down
        map_x = np.broadcast_to(xs[None, :], (h, w)).astype(np.float32)
        map_y = np.arange(h, dtype=np.float32)[:, None] - dy[None, :]
        layers = cv2.remap(layers, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        lo = min(0.0, amp)
        hi = max(0.0, amp)
        return layers, (x0, int(y0 + extra + lo), x1, int(math.ceil(y1 + extra + hi)))

    def _warp(
        self, layers: np.ndarray, box: tuple[int, int, int, int], text_h: float, r: random.Random, use_ink: bool
    ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        cfg = self.config
        rot = r.random() < cfg.p_rotation
        shear = r.random() < cfg.p_shear
        persp = r.random() < cfg.p_perspective
        if not (rot or shear or persp):
            return layers, tuple(float(v) for v in box)  # type: ignore[return-value]
        h, w = layers.shape[:2]
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        pts = src - np.float32([cx, cy])
        if persp:  # one side taller than the other, plus a little corner jitter
            f = 1.0 + r.uniform(-1.0, 1.0) * cfg.perspective_strength
            span = max(1.0, (box[2] - box[0]) / 2.0)
            s = 1.0 + (f - 1.0) * np.clip(pts[:, 0] / span, -1.5, 1.5)
            pts[:, 1] *= s
            pts += np.float32([[r.uniform(-1, 1), r.uniform(-1, 1)] for _ in range(4)]) * (0.05 * text_h)
        if shear:
            k = r.uniform(-1.0, 1.0) * cfg.max_shear
            pts[:, 0] -= k * pts[:, 1]
        if rot:
            a = math.radians(r.uniform(-1.0, 1.0) * cfg.max_rotation)
            ca, sa = math.cos(a), math.sin(a)
            pts = pts @ np.float32([[ca, sa], [-sa, ca]])
        minxy = pts.min(axis=0)
        pts = pts - minxy + 1.0
        ow, oh = int(math.ceil(pts[:, 0].max())) + 2, int(math.ceil(pts[:, 1].max())) + 2
        if ow * oh > 4_000_000:
            raise ValueError("warp too large")
        m = cv2.getPerspectiveTransform(src, pts.astype(np.float32))
        out = cv2.warpPerspective(
            layers, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        if use_ink:
            bx = _ink_box(out[:, :, 0] if out.ndim == 3 else out)
        else:
            corners = np.float32([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])
            tc = cv2.perspectiveTransform(corners[None], m)[0]
            bx = (float(tc[:, 0].min()), float(tc[:, 1].min()), float(tc[:, 0].max()), float(tc[:, 1].max()))
        return out, bx

    # ------------------------------------------------------------ background
    def _background(self, h: int, w: int, r: random.Random, nr: np.random.Generator) -> np.ndarray:
        cfg = self.config
        if self.pack.backgrounds and r.random() < cfg.p_natural_bg:
            return self._natural_bg(h, w, r)
        return _procedural_bg(h, w, r, nr)

    def _natural_bg(self, h: int, w: int, r: random.Random) -> np.ndarray:
        bi = r.randrange(len(self.pack.backgrounds))
        src = self._bgs.get(bi)
        if src is None:
            src = self.pack.decode_background(bi)
            self._bgs[bi] = src
            if len(self._bgs) > self.config.bg_cache_size:
                self._bgs.popitem(last=False)
        else:
            self._bgs.move_to_end(bi)
        bh, bw = src.shape[:2]
        zmin = max(h / bh, w / bw)
        z = max(zmin, 0.35) * r.uniform(1.0, 2.2)
        rh, rw = min(bh, h / z), min(bw, w / z)
        y = r.uniform(0, bh - rh)
        x = r.uniform(0, bw - rw)
        y0, x0 = int(y), int(x)
        y1, x1 = max(y0 + 1, min(bh, int(round(y + rh)))), max(x0 + 1, min(bw, int(round(x + rw))))
        region = src[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if (y1 - y0) > h else cv2.INTER_LINEAR
        bg = cv2.resize(region, (w, h), interpolation=interp)
        if r.random() < 0.5:
            bg = np.ascontiguousarray(bg[:, ::-1])
        return bg

    # -------------------------------------------------------- colour/compose
    def _colour_and_composite(
        self,
        bg: np.ndarray,
        a_text: np.ndarray,
        a_out: np.ndarray | None,
        a_sh: np.ndarray | None,
        sel: np.ndarray,
        r: random.Random,
    ) -> np.ndarray:
        """Pick colours that stand out from the pixels under the glyphs, then alpha-blend shadow, outline, text."""
        cfg = self.config
        region = (a_out > 0.5 if a_out is not None else sel).view(np.uint8)
        m, sd = _masked_mean_std(_gray(bg), region)
        if sd > cfg.max_bg_std:  # busy background: flatten it towards its mean
            bg = _flatten(bg, cfg.max_bg_std / sd * r.uniform(0.5, 1.0))
            m, sd = _masked_mean_std(_gray(bg), region)

        tc = _pick_colour(r, m, cfg.min_contrast + sd)
        out = bg
        if a_sh is not None:
            dark = _lum(tc) > 100 or r.random() < 0.7
            out = _blend(out, (0.0, 0.0, 0.0) if dark else (255.0, 255.0, 255.0), a_sh * r.uniform(0.35, 0.8))
        if a_out is not None:
            oc = _pick_colour(r, _lum(tc), cfg.min_contrast + 20)
            out = _blend(out, oc, a_out)
            if abs(_lum(oc) - _lum(tc)) < cfg.min_contrast:
                tc = _extreme_colour(r, _lum(oc))
        else:  # visibility check against the pixels actually under the glyphs
            under = _gray(out)[sel].astype(np.float32)
            thr = 0.6 * cfg.min_contrast
            if float((np.abs(under - _lum(tc)) >= thr).mean()) < 0.9:
                tc = _extreme_colour(r, float(np.median(under)))
                if float((np.abs(under - _lum(tc)) >= thr).mean()) < 0.9:  # still poor: flatten strongly
                    out = _flatten(out, 0.25)
                    tc = _extreme_colour(r, float(_gray(out)[sel].mean()))
        a = a_text if r.random() < 0.8 else a_text * r.uniform(0.85, 1.0)
        return _blend(out, tc, a)

    # ----------------------------------------------------------- degradation
    def _degrade(self, img: np.ndarray, r: random.Random, nr: np.random.Generator) -> np.ndarray:
        cfg = self.config
        h, w = img.shape[:2]
        if r.random() < cfg.p_blur:
            img = cv2.GaussianBlur(img, (0, 0), r.uniform(*cfg.blur_sigma))
        if r.random() < cfg.p_motion_blur:
            n = r.choice((3, 5, 7))
            kern = np.zeros((n, n), np.float32)
            kern[n // 2, :] = 1.0 / n
            rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), r.uniform(0, 180), 1.0)
            kern = cv2.warpAffine(kern, rot, (n, n))
            kern /= max(1e-6, float(kern.sum()))
            img = cv2.filter2D(img, -1, kern)
        if r.random() < cfg.p_lowres:
            f = r.uniform(*cfg.lowres_factor)
            sw, sh = max(2, round(w * f)), max(4, round(h * f))
            small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
            up = cv2.INTER_NEAREST if r.random() < 0.2 else cv2.INTER_LINEAR
            img = cv2.resize(small, (w, h), interpolation=up)
        if r.random() < cfg.p_noise:
            sigma = r.uniform(*cfg.noise_sigma)
            noise = self._gaussian((h, w, 1 if r.random() < 0.5 else 3), nr) * sigma
            img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if r.random() < cfg.p_jpeg:
            q = r.randint(*cfg.jpeg_quality)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img


# ====================================================================== helpers
def _masked_mean_std(gray: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation of the ``uint8`` pixels of ``gray`` where ``mask`` is non-zero."""
    mean, std = cv2.meanStdDev(gray, mask=mask)
    return float(mean[0, 0]), float(std[0, 0])


def _gray(img: np.ndarray) -> np.ndarray:
    """Luma (uint8, BT.601 weights) of an RGB image."""
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _core_to_array(core: Any) -> np.ndarray:
    """Pillow's internal "L" bitmap (from ``FreeTypeFont.getmask2``) as a (H, W) uint8 array."""
    try:
        return np.asarray(Image.Image()._new(core))  # no copy through PNG/bytes; private but long-stable API
    except Exception:  # noqa: BLE001 - future Pillow: go through the public (slower) sequence protocol
        w, h = core.size
        return np.fromiter(iter(core), dtype=np.uint8, count=w * h).reshape(h, w)


def _blend(img: np.ndarray, colour: tuple[float, float, float], alpha: np.ndarray) -> np.ndarray:
    """``img * (1 - alpha) + colour * alpha`` for uint8 RGB ``img`` and float32 ``alpha`` in [0, 1] (one pass)."""
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    solid = np.empty_like(img)
    solid[:] = np.clip(np.round(colour), 0, 255).astype(np.uint8)
    return cv2.blendLinear(img, solid, 1.0 - alpha, alpha)


def _flatten(img: np.ndarray, k: float) -> np.ndarray:
    """Scale the contrast of ``img`` around its mean colour by ``k`` (0: flat, 1: unchanged)."""
    mean = img.reshape(-1, 3).mean(axis=0)
    solid = np.empty_like(img)
    solid[:] = np.clip(np.round(mean), 0, 255).astype(np.uint8)
    return cv2.addWeighted(img, float(k), solid, 1.0 - float(k), 0.0)


def _crop_padded(a: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """``a[y0:y1, x0:x1]`` with zero padding where the window leaves the array."""
    h, w = a.shape[:2]
    pl, pt, pr, pb = max(0, -x0), max(0, -y0), max(0, x1 - w), max(0, y1 - h)
    if pl or pt or pr or pb:
        a = cv2.copyMakeBorder(a, pt, pb, pl, pr, cv2.BORDER_CONSTANT, value=0)
        if a.ndim == 2:
            a = a[:, :, None]
        x0, x1, y0, y1 = x0 + pl, x1 + pl, y0 + pt, y1 + pt
    return a[y0:y1, x0:x1]


def _ink_box(a: np.ndarray, thr: int = 40) -> tuple[float, float, float, float]:
    rows = np.flatnonzero(a.max(axis=1) > thr)
    cols = np.flatnonzero(a.max(axis=0) > thr)
    if rows.size == 0 or cols.size == 0:
        raise ValueError("text vanished")
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def _rand_colour(r: random.Random) -> tuple[float, float, float]:
    u = r.random()
    if u < 0.35:  # greyish
        g = r.uniform(0, 255)
        return (g + r.uniform(-12, 12), g + r.uniform(-12, 12), g + r.uniform(-12, 12))
    return (r.uniform(0, 255), r.uniform(0, 255), r.uniform(0, 255))


def _pick_colour(r: random.Random, bg_lum: float, need: float) -> tuple[float, float, float]:
    """A random colour whose luminance differs from ``bg_lum`` by at least ``need`` (if possible)."""
    for _ in range(10):
        c = _rand_colour(r)
        if abs(_lum(c) - bg_lum) >= need:
            return c
    return _extreme_colour(r, bg_lum)


def _extreme_colour(r: random.Random, bg_lum: float) -> tuple[float, float, float]:
    """Dark text on light backgrounds, light text on dark ones, with a slight random tint."""
    if bg_lum >= 128:
        base = r.uniform(0, 40)
        return (base + r.uniform(0, 25), base + r.uniform(0, 25), base + r.uniform(0, 25))
    base = r.uniform(215, 240)
    return (base + r.uniform(0, 15), base + r.uniform(0, 15), base + r.uniform(0, 15))


def _procedural_bg(h: int, w: int, r: random.Random, nr: np.random.Generator) -> np.ndarray:
    u = r.random()
    c1 = np.float32(_rand_colour(r))
    if u < 0.35:  # flat
        bg = np.empty((h, w, 3), np.float32)
        bg[:] = c1
    elif u < 0.75:  # linear gradient
        c2 = np.float32(_rand_colour(r)) if r.random() < 0.6 else c1 * r.uniform(0.6, 1.3)
        a = r.uniform(0, 2 * math.pi)
        xs = np.linspace(-0.5, 0.5, w, dtype=np.float32) * math.cos(a) * (w / max(h, w))
        ys = np.linspace(-0.5, 0.5, h, dtype=np.float32) * math.sin(a) * (h / max(h, w))
        t = xs[None, :] + ys[:, None]
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        bg = c1 + (c2 - c1) * t[:, :, None]
    else:  # smooth noise (blotchy paper / wall)
        cell = r.choice((4, 8, 16))
        small = nr.standard_normal((h // cell + 2, w // cell + 2, 1 if r.random() < 0.6 else 3), dtype=np.float32)
        tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        if tex.ndim == 2:
            tex = tex[:, :, None]
        bg = c1 + tex * r.uniform(8, 40)
        if r.random() < 0.5:
            bg = bg + nr.standard_normal((h, w, 1), dtype=np.float32) * r.uniform(2, 10)
    return np.clip(bg, 0, 255).astype(np.uint8)


__all__ = ["SynthConfig", "WordRenderer", "PRINTABLE"]


def measure_throughput(
    pack: ResourcePack | str | None = None,
    n: int = 1000,
    warmup: int = 200,
    seed: int = 0,
    config: SynthConfig | None = None,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Single-process rendering speed: images per CPU-second (process time) and per wall-second.

    ``threads`` sets OpenCV's thread count first (1 = one core, as in a DataLoader worker; None = leave it).

    The first ``warmup`` images (cold font / background caches) are timed separately, then the caches are
    filled (:meth:`WordRenderer.warm_up`) and ``n`` images are timed.
    """
    import time

    if threads is not None:
        cv2.setNumThreads(threads)
    rp = pack if isinstance(pack, ResourcePack) else ResourcePack.load(pack)
    renderer = WordRenderer(rp, config or SynthConfig(), seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(warmup):  # cold caches
        renderer.render(i)
    c_cold = time.process_time()
    opened = renderer.warm_up()
    t1, c1 = time.perf_counter(), time.process_time()
    pixels = 0
    for i in range(warmup, warmup + n):
        img, _ = renderer.render(i)
        pixels += img.shape[0] * img.shape[1]
    t2, c2 = time.perf_counter(), time.process_time()
    return {
        "pack": rp.summary(),
        "images": n,
        "images_per_cpu_second": round(n / max(1e-9, c2 - c1), 1),
        "images_per_wall_second": round(n / max(1e-9, t2 - t1), 1),
        "cold_cache_images_per_cpu_second": round(warmup / max(1e-9, c_cold - c0), 1) if warmup else None,
        "cache_fill_cpu_seconds": round(c1 - c_cold, 2),
        "cache_entries_filled": opened,
        "warmup_wall_seconds": round(t1 - t0, 2),
        "mean_pixels": round(pixels / max(1, n)),
    }
