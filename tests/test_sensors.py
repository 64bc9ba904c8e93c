"""The sensor facts and the S2 offset rule, written once (terramind_nyc.sensors)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from terramind_nyc.sensors import (
    MODALITIES,
    MODALITY_BANDS,
    READER_S2_OFFSET,
    S2_BANDS,
    S2_OFFSET_FROM,
    SCL_CLOUD,
    SCL_NODATA,
    S2OffsetRule,
    baseline_has_offset,
    s2_offset_dn,
)


def test_band_orders_and_scl_classes():
    assert S2_BANDS == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    assert "B10" not in S2_BANDS and len(set(S2_BANDS)) == 12
    assert tuple(MODALITY_BANDS) == MODALITIES == ("S2L2A", "S1RTC", "DEM")
    assert MODALITY_BANDS["S1RTC"] == ("vv", "vh")
    assert set(SCL_CLOUD) == {3, 8, 9, 10} and set(SCL_NODATA) == {0, 1}


@pytest.mark.parametrize(("baseline", "expected"), [("04.00", True), ("05.11", True), ("4", True),
                                                    ("03.01", False), ("02.14", False), (None, None),
                                                    ("n/a", None)])
def test_baseline_has_offset(baseline, expected):
    assert baseline_has_offset(baseline) is expected


def test_offset_by_baseline_else_by_date():
    before = datetime(2022, 1, 24, tzinfo=UTC)
    assert s2_offset_dn("04.00", before) == 1000  # the baseline decides when present
    assert s2_offset_dn("02.14", datetime(2024, 1, 1, tzinfo=UTC)) == 0
    assert s2_offset_dn(None, S2_OFFSET_FROM) == 1000  # no baseline: the date decides
    assert s2_offset_dn(None, before) == 0
    assert s2_offset_dn("garbage", None) == 0
    assert s2_offset_dn("05.00", None, S2OffsetRule(offset_dn=500, from_baseline="05.00")) == 500


def test_rules_compare_by_meaning():
    assert READER_S2_OFFSET.same_as(S2OffsetRule(1000, "4.0", 0))
    assert not READER_S2_OFFSET.same_as(S2OffsetRule(offset_dn=0))
    assert not READER_S2_OFFSET.same_as(S2OffsetRule(from_baseline="not a number"))
    assert "1000 DN" in READER_S2_OFFSET.describe() and "04.00" in READER_S2_OFFSET.describe()
