"""imagery/scenes.py: acquisitions (tile edges, reprocessed duplicates), S1 pairing, DEM tiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pystac
from imagery.helpers import window

from terramind_nyc.deadline import Deadline
from terramind_nyc.imagery.catalog import get_catalog
from terramind_nyc.imagery.scenes import find_dem, pick_s1, s2_acquisitions
from terramind_nyc.settings import Settings
from terramind_nyc.testing import SCENARIOS


def test_s1_pairing_and_dem(fixture_catalog: Any, local_settings: Settings) -> None:
    """The S1 pass is picked, as read_chip does, among the S1 items of the S2 window widened by
    ``s1_window_days`` (searched before the S2 date is known)."""
    cat = fixture_catalog.catalog
    s = local_settings
    c = get_catalog(s)
    w = timedelta(days=s.s1_window_days)

    def s1_items(scenario: str) -> list[pystac.Item]:
        start, end = window(cat, scenario)
        return c.search(s.s1_collection, bbox_4326=cat.grid(scenario).bounds_4326, start=start - w, end=end + w,
                        deadline=Deadline(5))

    for scenario in SCENARIOS:
        exp = cat.expected[scenario]
        if exp["s2_datetime"] is None:
            continue
        g = cat.grid(scenario)
        s2_dt = datetime.fromisoformat(exp["s2_datetime"])
        got = pick_s1(g, s1_items(scenario), s2_dt, settings=s)
        assert (None if got is None else [i.id for i in got]) == (None if exp["s1_id"] is None else [exp["s1_id"]])
        dem = find_dem(g, c, settings=s, deadline=Deadline(5))
        assert (None if dem is None else [i.id for i in dem]) == (exp["dem_ids"] or None)
    # out of the pairing window: nothing, though the search holds S1 items around other dates
    exp = cat.expected["clear"]
    far = datetime(2024, 6, 1, tzinfo=UTC)
    items = s1_items("clear")
    assert items and pick_s1(cat.grid("clear"), items, far, settings=s) is None


def _item(iid: str, dt: str, **props: Any) -> pystac.Item:
    return pystac.Item(iid, None, None, datetime.fromisoformat(dt), properties=dict(props))


def test_acquisition_grouping() -> None:
    items = [
        _item("S2A_MSIL2A_20240716T153821_R011_T18TWL_20240717T005128", "2024-07-16T15:38:21+00:00",
              platform="Sentinel-2A", **{"s2:processing_baseline": "05.10"}),
        _item("S2A_MSIL2A_20240716T153821_R011_T18TXL_20240717T005128", "2024-07-16T15:38:24+00:00",
              platform="Sentinel-2A", **{"s2:processing_baseline": "05.10"}),
        # a reprocessed duplicate of the TWL tile: the newer baseline wins
        _item("S2A_MSIL2A_20240716T153821_R011_T18TWL_20240901T000000", "2024-07-16T15:38:21+00:00",
              platform="Sentinel-2A", **{"s2:processing_baseline": "05.11"}),
        _item("S2B_MSIL2A_20240716T154819_R054_T18TWL_20240717T000000", "2024-07-16T15:48:19+00:00",
              platform="Sentinel-2B"),
        _item("S2A_MSIL2A_20240706T153821_R011_T18TWL_20240707T005128", "2024-07-06T15:38:21+00:00",
              platform="Sentinel-2A"),
    ]
    groups = s2_acquisitions(items)
    assert [[i.id[-27:] for i in g] for g in groups] == [
        ["R011_T18TWL_20240901T000000", "R011_T18TXL_20240717T005128"],
        ["R054_T18TWL_20240717T000000"],
        ["R011_T18TWL_20240707T005128"],
    ]
