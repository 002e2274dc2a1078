"""Measuring whole-image OCR: box agreement between two detectors, end-to-end word recall.

Word recall (the benchmark's definition): a ground-truth word is found when some result's axis-aligned bounding
rectangle overlaps the word's box with IoU >= 0.5 and its text, lower-cased and filtered to ``[0-9a-z]``, equals the
word's; a line result counts too when one of its tokens (split at characters outside ``[0-9a-zA-Z]``) equals the
word and the result's rectangle covers the word's box (at least ``cover`` of the word box's area inside it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["box_agreement", "normalize_word", "polygon_iou", "rect_iou", "word_found", "word_recall"]

_KEEP = re.compile(r"[^0-9a-z]")
_SPLIT = re.compile(r"[^0-9a-zA-Z]+")


def normalize_word(text: str) -> str:
    """Lower-case, keep only ``[0-9a-z]``."""
    return _KEEP.sub("", text.lower())


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two convex polygons ``(N, 2)`` (e.g. 4-point boxes)."""
    a32, b32 = a.astype(np.float32).reshape(-1, 2), b.astype(np.float32).reshape(-1, 2)
    ua, ub = abs(cv2.contourArea(a32)), abs(cv2.contourArea(b32))
    if ua <= 0 or ub <= 0:
        return 0.0
    inter, _ = cv2.intersectConvexConvex(a32, b32)
    return float(inter / (ua + ub - inter)) if inter > 0 else 0.0


def rect_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two axis-aligned rectangles ``(x0, y0, x1, y1)``."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_agreement(ours: np.ndarray, ref: np.ndarray, min_iou: float = 0.9) -> tuple[bool, float]:
    """Do two box sets ``(K, 4, 2)`` agree: same count and a one-to-one matching (greedy by IoU) with every pair
    at IoU >= ``min_iou``? Returns ``(agree, worst IoU of the matching)`` (``1.0`` for two empty sets)."""
    if len(ours) != len(ref):
        return False, 0.0
    if len(ref) == 0:
        return True, 1.0
    iou = np.array([[polygon_iou(a, b) for b in ref] for a in ours])
    worst, used_a, used_b = 1.0, set(), set()
    for flat in np.argsort(-iou, axis=None):
        i, j = divmod(int(flat), len(ref))
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        worst = min(worst, float(iou[i, j]))
    return worst >= min_iou, worst


def word_found(word: str, box: Sequence[float], results: Sequence[tuple[Sequence[float], str]],
               min_iou: float = 0.5, cover: float = 0.5) -> bool:
    """Is ground-truth ``word`` (box ``(x0, y0, x1, y1)``) found among ``results`` (``(rect, text)`` pairs)?"""
    target = normalize_word(word)
    if not target:
        return False
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    for rect, text in results:
        if normalize_word(text) == target and rect_iou(rect, box) >= min_iou:
            return True
        if target in {normalize_word(t) for t in _SPLIT.split(text)}:
            ix = max(0.0, min(rect[2], box[2]) - max(rect[0], box[0]))
            iy = max(0.0, min(rect[3], box[3]) - max(rect[1], box[1]))
            if ix * iy / area >= cover:
                return True
    return False


def word_recall(samples: Sequence[tuple[Sequence[tuple[Sequence[float], str]],
                                        Sequence[tuple[Sequence[float], str]]]]) -> tuple[int, int]:
    """``(found, total)`` over images given as ``(ground truth [(box, word)], results [(rect, text)])``; words whose
    normalized form is empty are not counted."""
    found = total = 0
    for truth, results in samples:
        for box, word in truth:
            if not normalize_word(word):
                continue
            total += 1
            found += word_found(word, box, results)
    return found, total
