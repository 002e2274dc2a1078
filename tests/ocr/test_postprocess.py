"""DB post-processing on probability maps whose text regions are known: boxes, rotation, unclip, order, limits."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from str_distill.ocr.evaluate import box_agreement, polygon_iou, rect_iou, word_found, word_recall
from str_distill.ocr.pipeline import detector_input_size
from str_distill.ocr.postprocess import DBParams, db_boxes, order_points, reading_order, unclip

PRE = {"max_side_len": 2000, "limit_side_len": 736, "limit_type": "min", "size_multiple": 32}


def _map(h: int, w: int, rects: list[tuple[float, float, float, float, float]], p: float = 0.9) -> np.ndarray:
    """A probability map with filled rotated rectangles ``(cx, cy, w, h, angle)``."""
    m = np.zeros((h, w), np.float32)
    for cx, cy, rw, rh, a in rects:
        pts = cv2.boxPoints(((cx, cy), (rw, rh), a)).astype(np.int32)
        cv2.fillPoly(m, [pts], p)
    return m


def test_empty_map_has_no_boxes() -> None:
    boxes, scores = db_boxes(np.zeros((64, 96), np.float32), DBParams(), (96, 64))
    assert boxes.shape == (0, 4, 2) and scores.shape == (0,)
    assert reading_order(boxes) == []


def test_axis_aligned_region_is_grown_by_the_unclip_distance() -> None:
    rw, rh = 200, 20
    m = _map(128, 320, [(160, 64, rw, rh, 0)])
    boxes, scores = db_boxes(m, DBParams(dilate=False), (320, 128))
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.9, abs=0.01)
    b = boxes[0]
    # the contour spans rw+1 x rh+1 pixels; unclip grows each side by area * 1.6 / perimeter
    d = (rw * rh) * 1.6 / (2 * (rw + rh))
    assert b[1, 0] - b[0, 0] == pytest.approx(rw + 2 * d, abs=2.5)
    assert b[3, 1] - b[0, 1] == pytest.approx(rh + 2 * d, abs=2.5)
    assert b[0, 0] < b[1, 0] and b[0, 1] < b[3, 1]  # top-left, top-right, bottom-right, bottom-left


def test_boxes_scale_to_the_image_size() -> None:
    m = _map(128, 320, [(160, 64, 200, 20, 0)])
    small, _ = db_boxes(m, DBParams(), (320, 128))
    big, _ = db_boxes(m, DBParams(), (640, 256))
    assert np.abs(big[0] - 2 * small[0]).max() <= 2.0


@pytest.mark.parametrize("angle", [10.0, -20.0, 35.0])
def test_rotated_region_gives_a_rotated_box(angle: float) -> None:
    m = _map(400, 400, [(200, 200, 220, 30, angle)])
    boxes, _ = db_boxes(m, DBParams(unclip_ratio=0.0, dilate=False), (400, 400))
    assert len(boxes) == 1
    top = boxes[0][1] - boxes[0][0]
    got = np.degrees(np.arctan2(top[1], top[0]))
    assert got == pytest.approx(angle, abs=2.0)
    truth = cv2.boxPoints(((200, 200), (220, 30), angle))
    assert polygon_iou(boxes[0], truth) > 0.9


def test_low_scoring_and_tiny_regions_are_dropped() -> None:
    m = _map(128, 320, [(80, 40, 100, 20, 0)], p=0.4) + _map(128, 320, [(250, 100, 2, 2, 0)], p=0.9)
    boxes, _ = db_boxes(m, DBParams(thresh=0.3, box_thresh=0.5, dilate=False), (320, 128))
    assert len(boxes) == 0  # the first scores 0.4 < 0.5, the second (3x3 pixels) is under min_size
    boxes, _ = db_boxes(m, DBParams(thresh=0.3, box_thresh=0.3, dilate=False), (320, 128))
    assert len(boxes) == 1


def test_max_candidates_bounds_the_work() -> None:
    rects = [(20 + 40 * i, 30 + 60 * j, 30, 12, 0) for i in range(8) for j in range(4)]
    m = _map(256, 352, rects)
    assert len(db_boxes(m, DBParams(), (352, 256))[0]) == 32
    assert len(db_boxes(m, DBParams(max_candidates=5), (352, 256))[0]) == 5


def test_unclip_of_a_square() -> None:
    sq = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.float32)
    pts = unclip(sq, 2.0)  # distance = 100 * 2 / 40 = 5
    assert pts[:, 0].min() == pytest.approx(-5, abs=0.01) and pts[:, 0].max() == pytest.approx(15, abs=0.01)
    assert np.linalg.norm(pts - [5, 5], axis=1).max() <= np.hypot(5, 5) + 5 + 1e-6


def test_order_points() -> None:
    pts = np.array([[10, 10], [0, 0], [0, 10], [10, 0]], np.float32)
    assert order_points(pts).tolist() == [[0, 0], [10, 0], [10, 10], [0, 10]]


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def test_reading_order_keeps_lines_together() -> None:
    # line 1: three words, the right one slightly higher (tilted line); line 2 below; a lone box at the bottom
    boxes = np.stack([_box(300, 12, 380, 42), _box(10, 20, 100, 50), _box(150, 16, 260, 46),
                      _box(200, 100, 300, 130), _box(20, 104, 150, 134), _box(50, 300, 90, 320)])
    assert reading_order(boxes) == [1, 2, 0, 4, 3, 5]


def test_reading_order_separates_stacked_lines() -> None:
    boxes = np.stack([_box(0, 40, 100, 70), _box(0, 0, 100, 30)])
    assert reading_order(boxes) == [1, 0]


def test_detector_input_size_rules() -> None:
    assert detector_input_size(1280, 800, PRE) == (1280, 800)  # short side >= 736: kept, multiples of 32
    assert detector_input_size(640, 480, PRE) == (992, 736)  # scaled up so the short side is 736
    assert detector_input_size(4000, 3000, PRE) == (1984, 1504)  # capped at 2000 (then rounded to 32)
    w, h = detector_input_size(20000, 100, PRE)  # a thin strip: never beyond the cap
    assert w <= 2016 and h >= 32
    assert detector_input_size(10, 10, PRE) == (736, 736)


def test_box_agreement_and_word_recall() -> None:
    a = np.stack([_box(0, 0, 100, 20), _box(0, 50, 80, 70)])
    assert box_agreement(a, a[::-1].copy()) == (True, pytest.approx(1.0))
    assert not box_agreement(a, a[:1])[0]
    assert not box_agreement(a, a + 5)[0]
    assert rect_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    line = [((0, 0, 200, 20), "Hello, World!")]
    assert word_found("WORLD", (100, 0, 200, 20), line)  # a token of a covering line
    assert not word_found("WORLD", (300, 0, 400, 20), line)  # not covered
    assert word_found("hello", (0, 0, 90, 20), [((0, 0, 100, 20), "HELLO")])
    assert word_recall([([((0, 0, 90, 20), "hello"), ((0, 0, 1, 1), "--")], [((0, 0, 100, 20), "hello")])]) == (1, 1)


def test_unclip_gives_pyclipper_boxes() -> None:
    """Rotated boxes fitted to our offset equal those fitted to pyclipper's (what RapidOCR and PaddleOCR call),
    with the distance computed as they compute it (shapely's area and length)."""
    pyclipper = pytest.importorskip("pyclipper")
    from str_distill.ocr.postprocess import _mini_box

    rng = np.random.default_rng(0)
    for t in range(300):
        cx, cy = rng.uniform(20, 500, 2)
        box = cv2.boxPoints(((cx, cy), (rng.uniform(3, 200), rng.uniform(3, 40)), rng.uniform(-90, 90) if t % 2 else 0))
        box, _ = _mini_box(box.astype(np.float32))
        x, y = box[:, 0].astype(np.float64), box[:, 1].astype(np.float64)
        area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        off = pyclipper.PyclipperOffset()
        off.AddPath(box, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        ref = np.array(off.Execute(area * 1.6 / np.linalg.norm(box - np.roll(box, -1, 0), axis=1).sum()))
        ours = unclip(box, 1.6)
        assert np.abs(_mini_box(ref.reshape(-1, 2))[0] - _mini_box(ours)[0]).max() < 1e-3, box.tolist()
