"""WorldCover -> 5-class mapping and mask range checks (training/labels.py)."""

from __future__ import annotations

import numpy as np
import pytest

from training.errors import LabelError
from training.labels import IGNORE_INDEX, WORLDCOVER_TO_CLASS, check_mask, map_worldcover, worldcover_lut

CLASSES = ["water", "developed", "forest", "herbaceous", "other"]


def test_every_worldcover_code_maps_as_design_section_3_says() -> None:
    codes = np.array([[0, 10, 20, 30, 40, 50], [60, 70, 80, 90, 95, 100]], dtype=np.uint8)
    out = map_worldcover(codes, CLASSES)
    expected = np.array([[-1, 2, 2, 3, 3, 1], [4, 4, 0, 0, 0, 4]], dtype=np.int8)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.int8


def test_order_comes_from_the_class_list_not_from_the_mapping() -> None:
    reordered = ["other", "herbaceous", "forest", "developed", "water"]
    out = map_worldcover(np.array([80, 50, 10], dtype=np.uint8), reordered)
    np.testing.assert_array_equal(out, [4, 3, 2])


def test_unknown_codes_are_ignored() -> None:
    out = map_worldcover(np.array([11, 255, 0], dtype=np.uint8), CLASSES)
    np.testing.assert_array_equal(out, [IGNORE_INDEX] * 3)


def test_a_class_without_codes_or_a_code_without_class_is_refused() -> None:
    with pytest.raises(LabelError, match="receive no WorldCover code"):
        worldcover_lut(CLASSES + ["snow"])
    with pytest.raises(LabelError, match="lack"):
        worldcover_lut(["water", "developed"])
    assert set(WORLDCOVER_TO_CLASS.values()) == set(CLASSES)


def test_check_mask_accepts_range_and_ignore_and_names_bad_values() -> None:
    check_mask(np.array([[-1, 0, 4]]), 5, name="lulc")
    with pytest.raises(LabelError, match=r"values \[5, 7\].*0\.\.4"):
        check_mask(np.array([[5, 0, 7]]), 5, name="lulc", where="chip x")
    with pytest.raises(LabelError, match=r"\[-3\]"):
        check_mask(np.array([-3]), 2, name="buildings")
