"""The fine-tuning ship rule (``recipes/finetune/compare.py``): a worse model is refused, and says why."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("ft_compare", REPO / "recipes" / "finetune" / "compare.py")
assert spec is not None and spec.loader is not None
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)

ORIGINAL = {"val/36": 90.0, "IIIT5K/36": 97.27, "IIIT5K/94": 84.23}


def test_better_everywhere_ships() -> None:
    assert compare.ship_decision({"val/36": 91.0, "IIIT5K/36": 97.4, "IIIT5K/94": 84.0}, ORIGINAL) == (True, [])


def test_worse_models_are_refused_with_the_reason() -> None:
    ok, why = compare.ship_decision({"val/36": 92.0, "IIIT5K/36": 97.0, "IIIT5K/94": 84.5}, ORIGINAL)
    assert not ok and len(why) == 1 and "IIIT5K 97.00 %" in why[0]
    ok, why = compare.ship_decision({"val/36": 90.0, "IIIT5K/36": 97.5, "IIIT5K/94": 84.5}, ORIGINAL)
    assert not ok and "validation" in why[0]  # equal is not better
    ok, why = compare.ship_decision({"val/36": 95.0, "IIIT5K/36": 98.0, "IIIT5K/94": 83.8}, ORIGINAL)
    assert not ok and "0.3 point" in why[0]
