"""DB post-processing: text probability map -> rotated 4-point boxes, scored, grown back, in reading order.

Written with OpenCV and numpy only. The steps are those of the published DB detectors (as PaddleOCR and RapidOCR
run them): binarize the map at ``thresh`` (optionally dilated by a 2x2 kernel), take the outer contours, fit each a
minimum-area rotated rectangle, score it by the mean probability inside it (``box_thresh``), grow it by the
"unclip" offset (distance ``area * unclip_ratio / perimeter``, round joins), fit a rectangle again, and scale it to
image coordinates.

The offset ("unclip") needs no polygon-clipping library: a box is convex, so its round-joined offset is its edges
moved out along their normals joined by arcs, which :func:`unclip` builds vertex by vertex on integer coordinates as
the Clipper library does (RapidOCR and PaddleOCR call it through ``pyclipper``), so that the boxes agree to the
pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["DBParams", "db_boxes", "order_points", "reading_order", "unclip"]


@dataclass(frozen=True)
class DBParams:
    """Post-processing parameters (a detector record's ``postprocessing``; see :class:`PPOCRDetConfig`)."""

    thresh: float = 0.3
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    max_candidates: int = 1000
    min_size: int = 3
    dilate: bool = True


def _mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum-area rectangle of ``points`` ``(N, 2)``: corners ``(4, 2)`` float32 (top-left first, clockwise in
    image coordinates) and its short side."""
    rect = cv2.minAreaRect(points.reshape(-1, 1, 2).astype(np.float32))
    pts = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = sorted(pts[:2], key=lambda p: p[1])
    right = sorted(pts[2:], key=lambda p: p[1])
    box = np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)
    return box, float(min(rect[1]))


def _score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside ``box`` (filled as integer polygon, as OpenCV rasterizes it)."""
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = box - np.array([xmin, ymin], dtype=np.float32)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _round(v: np.ndarray) -> np.ndarray:
    """Round half away from zero (as integer-coordinate clipping libraries do)."""
    return np.where(v < 0, np.ceil(v - 0.5), np.floor(v + 0.5))


def unclip(box: np.ndarray, ratio: float, arc_tolerance: float = 0.25) -> np.ndarray:
    """Grow a convex polygon ``(N, 2)`` outward by ``area * ratio / perimeter`` with round joins.

    The offset polygon is built as the Clipper library builds it (which RapidOCR and PaddleOCR call through
    ``pyclipper``): the corners truncated to integers, every edge moved out along its normal, each corner's arc
    approximated by the fewest chords whose sagitta is within ``arc_tolerance`` (0.25 px), every vertex rounded to
    an integer. Rotated rectangles fitted to the result then agree with theirs to the pixel.

    Returns:
        The vertices ``(M, 2)`` float64 of the grown polygon.
    """
    src = box.astype(np.float64).reshape(-1, 2)
    x, y = src[:, 0], src[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    length = float(np.linalg.norm(src - np.roll(src, -1, 0), axis=1).sum())
    d = area * ratio / length if length > 0 else 0.0  # from the exact corners; the offset runs on integer ones
    pts = np.trunc(src)
    keep = np.any(pts != np.roll(pts, 1, 0), axis=1)  # drop repeated corners
    pts = pts[keep] if keep.any() else pts[:1]
    x, y = pts[:, 0], pts[:, 1]
    signed = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    if len(pts) < 3 or signed == 0:
        return pts
    if signed < 0:  # normals (dy, -dx) point outward for a positive shoelace area
        pts = pts[::-1]
    if d <= 0:
        return pts
    tol = min(arc_tolerance, d * 0.25) if arc_tolerance > 0 else 0.25
    steps = min(np.pi / np.arccos(1 - tol / d), d * np.pi)
    step_sin, step_cos, steps_per_rad = np.sin(2 * np.pi / steps), np.cos(2 * np.pi / steps), steps / (2 * np.pi)
    edge = np.roll(pts, -1, 0) - pts
    normals = np.stack([edge[:, 1], -edge[:, 0]], 1) / np.linalg.norm(edge, axis=1, keepdims=True)
    out: list[np.ndarray] = []
    n = len(pts)
    for j in range(n):
        k = (j - 1) % n
        nk, nj = normals[k], normals[j]
        sin_a = float(nk[0] * nj[1] - nj[0] * nk[1])
        cos_a = float(nk[0] * nj[0] + nk[1] * nj[1])
        if abs(sin_a * d) < 1.0 and cos_a > 0:  # nearly straight: one point
            out.append(_round(pts[j] + nk * d))
            continue
        sin_a = max(-1.0, min(1.0, sin_a))
        if sin_a * d < 0:  # a concave corner (not in a convex box): the two edge points and the vertex
            out += [_round(pts[j] + nk * d), pts[j].copy(), _round(pts[j] + nj * d)]
            continue
        a = np.arctan2(sin_a, cos_a)
        vx, vy = float(nk[0]), float(nk[1])
        for _ in range(max(int(_round(np.array(steps_per_rad * abs(a)))), 1)):
            out.append(_round(pts[j] + np.array([vx, vy]) * d))
            vx, vy = vx * step_cos - step_sin * vy, vx * step_sin + vy * step_cos
        out.append(_round(pts[j] + nj * d))
    return np.array(out, dtype=np.float64)


def db_boxes(prob: np.ndarray, params: DBParams, dest_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of one probability map.

    Args:
        prob: ``(H, W)`` float probability map (the detector's input size).
        params: thresholds and unclip ratio.
        dest_size: ``(width, height)`` of the image the boxes are returned for (coordinates are scaled to it).

    Returns:
        ``(boxes, scores)``: ``(K, 4, 2)`` float32 corners (top-left, top-right, bottom-right, bottom-left; integer
        pixel positions inside the image) and ``(K,)`` float32 mean probabilities, in contour order (see
        :func:`reading_order`).
    """
    h, w = prob.shape
    dest_w, dest_h = dest_size
    bitmap = (prob > params.thresh).astype(np.uint8)
    if params.dilate:
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores = [], []
    for contour in contours[: params.max_candidates]:
        box, short = _mini_box(contour.reshape(-1, 2))
        if short < params.min_size:
            continue
        score = _score(prob, box)
        if score < params.box_thresh:
            continue
        box, short = _mini_box(unclip(box, params.unclip_ratio))
        if short < params.min_size + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / w * dest_w), 0, dest_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / h * dest_h), 0, dest_h)
        box = order_points(box)
        box[:, 0] = np.clip(box[:, 0], 0, dest_w - 1)
        box[:, 1] = np.clip(box[:, 1], 0, dest_h - 1)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        boxes.append(box)
        scores.append(score)
    if not boxes:
        return np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32)
    return np.stack(boxes).astype(np.float32), np.array(scores, np.float32)


def order_points(pts: np.ndarray) -> np.ndarray:
    """Four corners ``(4, 2)`` as top-left, top-right, bottom-right, bottom-left (by x, then y within each side)."""
    xs = pts[np.argsort(pts[:, 0], kind="stable")]
    left = xs[:2][np.argsort(xs[:2, 1], kind="stable")]
    right = xs[2:][np.argsort(xs[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def reading_order(boxes: np.ndarray) -> list[int]:
    """Indices of ``boxes`` ``(K, 4, 2)`` in reading order: lines top to bottom, boxes left to right in a line.

    Boxes are taken top to bottom (by their vertical centre); a box joins the current line when its vertical centre
    lies within the line's vertical span (the union of its boxes' extents, shrunk by a quarter of the typical box
    height), so that boxes of one text line stay together even when the line is slightly tilted.
    """
    if len(boxes) == 0:
        return []
    top, bottom = boxes[:, :, 1].min(1), boxes[:, :, 1].max(1)
    cy, left = (top + bottom) / 2, boxes[:, :, 0].min(1)
    order = np.argsort(cy, kind="stable")
    lines: list[list[int]] = []
    span = (0.0, 0.0)
    for i in order.tolist():
        hgt = bottom[i] - top[i]
        if lines and span[0] <= cy[i] <= span[1]:
            lines[-1].append(i)
            span = (min(span[0], top[i] + hgt / 4), max(span[1], bottom[i] - hgt / 4))
        else:
            lines.append([i])
            span = (top[i] + hgt / 4, bottom[i] - hgt / 4)
    return [i for line in lines for i in sorted(line, key=lambda j: left[j])]
