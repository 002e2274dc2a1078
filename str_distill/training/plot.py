"""Loss and accuracy curves drawn with Pillow (no matplotlib): ``curves.png`` next to ``metrics.jsonl``.

Top panel: training losses (total and each term) against the step, on a log scale when they span more than a
decade. Bottom panel: accuracy in percent: teacher-forced training accuracy and the validation word accuracy
of every validation set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

__all__ = ["nice_ticks", "plot_curves", "read_metrics"]

PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]
LOSS_KEYS = ("loss", "ar", "parallel", "cloze", "ctc")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL metrics log; malformed lines (e.g. a line cut by a crash) are skipped."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values (1, 2, 5 x 10^k steps) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 10000:
        return f"{v / 1000:g}k"
    if abs(v) < 0.01:
        return f"{v:.0e}"
    return f"{v:g}"


class _Panel:
    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], font: Any) -> None:
        self.draw, self.box, self.font = draw, box, font

    def render(
        self,
        series: list[tuple[str, list[tuple[float, float]]]],
        title: str,
        ylabel: str,
        xrange: tuple[float, float],
        log_y: bool = False,
        yrange: tuple[float, float] | None = None,
    ) -> None:
        d, (x0, y0, x1, y1), font = self.draw, self.box, self.font
        d.text((x0, y0 - 22), title, fill=(0, 0, 0), font=font)
        d.rectangle((x0, y0, x1, y1), outline=(0, 0, 0))
        pts = [p for _, s in series for p in s if math.isfinite(p[1]) and (p[1] > 0 or not log_y)]
        if not pts:
            d.text((x0 + 10, y0 + 10), "no data yet", fill=(120, 120, 120), font=font)
            return
        xs_lo, xs_hi = xrange
        if yrange is not None:
            lo, hi = yrange
        else:
            lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
            if hi == lo:
                lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
        tf = (lambda v: math.log10(v)) if log_y else (lambda v: v)
        tlo, thi = tf(lo), tf(hi)
        pad = 0.04 * (thi - tlo)
        tlo, thi = tlo - pad, thi + pad

        def sx(x: float) -> float:
            return x0 + (x - xs_lo) / max(xs_hi - xs_lo, 1e-12) * (x1 - x0)

        def sy(y: float) -> float:
            return y1 - (tf(y) - tlo) / max(thi - tlo, 1e-12) * (y1 - y0)

        grid = (225, 225, 225)
        for t in nice_ticks(xs_lo, xs_hi):
            x = sx(t)
            d.line((x, y0, x, y1), fill=grid)
            d.text((x - 10, y1 + 4), _fmt(t), fill=(0, 0, 0), font=font)
        if log_y:
            yt = [10.0**k * m for k in range(math.floor(tlo) - 1, math.ceil(thi) + 1) for m in (1, 2, 5)]
            yt = [v for v in yt if tlo <= math.log10(v) <= thi]
        else:
            yt = [v for v in nice_ticks(tlo, thi) if tlo <= v <= thi]
        for t in yt:
            y = sy(t)
            d.line((x0, y, x1, y), fill=grid)
            d.text((x0 - 44, y - 7), _fmt(t), fill=(0, 0, 0), font=font)
        d.text(((x0 + x1) // 2 - 12, y1 + 20), "step", fill=(0, 0, 0), font=font)
        d.text((x0 + 4, y0 + 4), ylabel, fill=(90, 90, 90), font=font)
        legend = []
        for i, (name, s) in enumerate(series):
            color = PALETTE[i % len(PALETTE)]
            good = [(sx(x), sy(y)) for x, y in s if math.isfinite(y) and (y > 0 or not log_y)]
            if len(good) >= 2:
                d.line(good, fill=color, width=2 if i == 0 else 1, joint="curve")
            for px, py in good if len(good) < 30 else []:
                d.ellipse((px - 2, py - 2, px + 2, py + 2), fill=color)
            if good:
                legend.append((name, color))
        ly = y0 + 6
        lx = x1 - 170
        for name, color in legend:
            d.line((lx, ly + 7, lx + 18, ly + 7), fill=color, width=3)
            d.text((lx + 24, ly), name, fill=(0, 0, 0), font=font)
            ly += 16


def plot_curves(
    records: Sequence[dict[str, Any]], path: str | Path, title: str = "", size: tuple[int, int] = (1000, 760)
) -> Path:
    """Draw the training curves of ``records`` (from :func:`read_metrics`) into a PNG at ``path``.

    Uses records of ``type`` ``"train"`` (keys ``step``, ``loss``, ``ar``, ``parallel``, ``cloze``, ``ctc``,
    ``train_acc``) and ``"val"`` (keys ``step``, ``set``, ``accuracy``).
    """
    w, h = size
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = _font(13)
    draw.text((20, 10), title or "training curves", fill=(0, 0, 0), font=_font(16))
    train = [r for r in records if r.get("type") == "train" and "step" in r]
    val = [r for r in records if r.get("type") == "val" and "step" in r and "accuracy" in r]
    steps = [r["step"] for r in train] + [r["step"] for r in val]
    xr = (0.0, float(max(steps) if steps else 1))
    loss_series = [(k, [(r["step"], float(r[k])) for r in train if k in r]) for k in LOSS_KEYS]
    loss_series = [(k, s) for k, s in loss_series if s]
    vals = [y for _, s in loss_series for _, y in s if y > 0 and math.isfinite(y)]
    log_y = bool(vals) and max(vals) / min(vals) > 10
    _Panel(draw, (70, 60, w - 30, h // 2 - 40), font).render(loss_series, "training loss", "loss", xr, log_y)
    train_acc = [(r["step"], 100 * float(r["train_acc"])) for r in train if "train_acc" in r]
    acc_series = [("train (teacher-forced)", train_acc)]
    for name in sorted({r.get("set", "val") for r in val}):
        pts = [(r["step"], 100 * float(r["accuracy"])) for r in val if r.get("set", "val") == name]
        acc_series.append((f"val {name}", pts))
    acc_series = [(k, s) for k, s in acc_series if s]
    top = max((y for _, s in acc_series for _, y in s if math.isfinite(y)), default=100.0)
    upper = 100.0 if top > 60 else max(10.0, 10.0 * math.ceil(top / 10.0) + 10.0)  # zoom in while accuracy is low
    _Panel(draw, (70, h // 2 + 30, w - 30, h - 50), font).render(
        acc_series, "word accuracy (%)", "%", xr, yrange=(0.0, upper)
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out
