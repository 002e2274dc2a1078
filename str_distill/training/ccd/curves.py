"""Curves of a CCD pretraining run (``OUT/curves.png``), drawn with Pillow from the records of ``OUT/log.jsonl``.

Three panels against the step:

* **losses**: ``loss``, ``distill`` and ``seg``;
* **collapse watch**, all on a 0-1 scale: the teacher's mean target entropy ("entropy") and the entropy of its mean
  target over the batch ("batch entropy"), both divided by ``log(out_dim)`` (their maximum), and the mean cosine
  similarity between the bottleneck features of different regions, for the student and the teacher. Uniform
  collapse drives the entropy towards 1; collapse to one prototype drives the batch entropy towards 0; both drive
  the cosines towards 1;
* **masks**: IoU of the segmentation head with the k-means mask and the fraction of batches using the predicted
  mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ..plot import _font, _Panel

__all__ = ["plot_pretrain_curves"]

LOSS_KEYS = ("loss", "distill", "seg")


def _series(records: Sequence[dict[str, Any]], key: str, scale: float = 1.0) -> list[tuple[float, float]]:
    return [(float(r["step"]), float(r[key]) * scale) for r in records if isinstance(r.get(key), (int, float))]


def plot_pretrain_curves(
    records: Sequence[dict[str, Any]],
    path: str | Path,
    out_dim: int,
    title: str = "",
    size: tuple[int, int] = (1000, 1020),
) -> Path:
    """Draw the curves of a pretraining log into a PNG at ``path``.

    Args:
        records: ``log.jsonl`` records (:func:`~str_distill.training.plot.read_metrics`); each needs ``step``.
            ``None`` values (no region in the batch) leave gaps.
        out_dim: prototypes of the DINO head (the entropies are divided by ``log(out_dim)``).
        title: heading of the picture.

    Returns:
        ``path``.
    """
    w, h = size
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = _font(13)
    draw.text((20, 10), title or "CCD pretraining", fill=(0, 0, 0), font=_font(16))
    recs = [r for r in records if isinstance(r.get("step"), (int, float))]
    xr = (0.0, float(max((r["step"] for r in recs), default=1)))
    max_h = math.log(out_dim) if out_dim > 1 else 1.0
    panel_h = (h - 60) // 3
    boxes = [(70, 60 + i * panel_h + 30, w - 30, 60 + (i + 1) * panel_h - 40) for i in range(3)]

    losses = [(k, _series(recs, k)) for k in LOSS_KEYS]
    losses = [(k, s) for k, s in losses if s]
    vals = [y for _, s in losses for _, y in s if y > 0 and math.isfinite(y)]
    log_y = bool(vals) and max(vals) / min(vals) > 10
    _Panel(draw, boxes[0], font).render(losses, "losses", "loss", xr, log_y)

    watch = [
        ("entropy / log P", _series(recs, "teacher_entropy", 1 / max_h)),
        ("batch entropy / log P", _series(recs, "teacher_batch_entropy", 1 / max_h)),
        ("cosine, student", _series(recs, "feature_cosine")),
        ("cosine, teacher", _series(recs, "teacher_feature_cosine")),
    ]
    watch = [(k, s) for k, s in watch if s]
    _Panel(draw, boxes[1], font).render(
        watch,
        f"collapse watch, P = {out_dim} (entropy -> 1: uniform; batch entropy -> 0: one prototype; cosine -> 1)",
        "",
        xr,
        yrange=(0.0, 1.0),
    )

    masks = [("seg IoU vs k-means", _series(recs, "seg_iou")), ("predicted mask", _series(recs, "predicted_mask"))]
    masks = [(k, s) for k, s in masks if s]
    _Panel(draw, boxes[2], font).render(masks, "character masks", "", xr, yrange=(0.0, 1.0))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out
