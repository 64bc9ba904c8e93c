"""imagery/scene_choice.py: the S2 scene judged on the chip's SCL, and why none qualifies."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest
from imagery.helpers import choose, fresh, window

from terramind_nyc.dates import resolve_when
from terramind_nyc.deadline import Deadline
from terramind_nyc.errors import ChipError, ChipNodataError, NoSceneError
from terramind_nyc.imagery.catalog import get_catalog
from terramind_nyc.imagery.scene_choice import scl_fractions
from terramind_nyc.settings import Settings
from terramind_nyc.testing import chip_fractions


def _choose(cat: Any, scenario: str, s: Settings) -> Any:
    start, end = window(cat, scenario)
    return choose(cat.grid(scenario), fresh(s), start=start, end=end, settings=s, deadline=Deadline(20))


def test_cloudy_vs_clear_picks_the_clear_older_scene(fixture_catalog: Any, local_settings: Settings) -> None:
    cat = fixture_catalog.catalog
    exp = cat.expected["cloudy_vs_clear"]
    choice = _choose(cat, "cloudy_vs_clear", local_settings)
    assert [i.id for i in choice.items] == exp["s2_ids"]
    newest = exp["s2_candidates"][0]
    # the newest scene has the lowest scene-wide cloud cover, but the chip is cloudy in it
    assert cat.item_facts[newest]["eo:cloud_cover"] < choice.items[0].properties["eo:cloud_cover"]
    assert choice.checked[0].item_ids == (newest,) and choice.checked[0].reason == "cloud"
    assert choice.cloud_fraction == pytest.approx(exp["chip_cloud_fraction"], abs=1e-6)
    assert choice.nodata_fraction == pytest.approx(exp["chip_nodata_fraction"], abs=1e-6)
    assert choice.datetime.isoformat().startswith(exp["s2_datetime"][:19])
    assert choice.scl.dtype == np.uint8 and choice.scl.shape == cat.grid("cloudy_vs_clear").shape
    assert scl_fractions(choice.scl) == pytest.approx(chip_fractions(choice.scl))


def test_tile_edge_items_of_one_acquisition_are_one_candidate(fixture_catalog: Any, local_settings: Settings) -> None:
    cat = fixture_catalog.catalog
    exp = cat.expected["tile_edge"]
    choice = _choose(cat, "tile_edge", local_settings)
    assert sorted(i.id for i in choice.items) == sorted(exp["s2_ids"])
    assert choice.nodata_fraction == 0.0 and (choice.scl != 0).all()
    # the older scene that alone covers the chip is not picked
    assert choice.datetime.date() == date(2024, 7, 16)


def test_every_scene_too_cloudy(fixture_catalog: Any, local_settings: Settings) -> None:
    cat = fixture_catalog.catalog
    with pytest.raises(NoSceneError, match=r"<= 20% cloud.* among 3 scene\(s\).*least cloudy: 45%.*"
                                           r"widen the window .*recency_days.* raise `max_cloud`") as info:
        _choose(cat, "all_cloudy", local_settings)
    assert info.value.reason == "cloud"  # candidates exist, none clear enough
    # with a looser limit the least cloudy one is chosen (the >80% scene stays prefiltered)
    choice = _choose(cat, "all_cloudy", local_settings.replace(max_cloud=0.5))
    assert choice.cloud_fraction == pytest.approx(0.45, abs=0.02)


def test_no_scene_in_the_window_says_how_to_widen(fixture_catalog: Any, local_settings: Settings) -> None:
    cat = fixture_catalog.catalog
    s = local_settings
    start, end = resolve_when(("2023-01-01", "2023-03-01"), s, now=cat.now)
    with pytest.raises(NoSceneError, match=r"no Sentinel-2 scene over this chip from 2023-01-01 to 2023-03-01.*"
                                           r"widen the window \(`when`, or `recency_days`=120\)") as info:
        choose(cat.grid("clear"), get_catalog(s), start=start, end=end, settings=s, deadline=Deadline(5))
    assert info.value.reason == "empty"  # no candidate at all


def test_mostly_nodata_chip(fixture_catalog: Any, local_settings: Settings) -> None:
    cat = fixture_catalog.catalog
    with pytest.raises(ChipNodataError, match=r"covers enough of this chip.* 2[0-9]% of it.*`max_nodata`"):
        _choose(cat, "mostly_nodata", local_settings)


def test_scl_read_failures_keep_their_kind(fixture_catalog: Any, local_settings: Settings) -> None:
    """The SCL reader is passed in: one that always fails gives a ChipError with the first failure's
    kind and status, after every candidate was tried."""
    cat = fixture_catalog.catalog
    calls: list[str] = []

    def failing(item: Any, grid: Any, *, settings: Settings) -> np.ndarray:
        calls.append(item.id)
        raise ChipError(f"reading the SCL of {item.id} failed (HTTP response code: 503)", kind="server", status=503)

    start, end = window(cat, "cloudy_vs_clear")
    with pytest.raises(ChipError, match=r"the SCL band of every candidate Sentinel-2 scene \(\d+\) failed") as info:
        choose(cat.grid("cloudy_vs_clear"), fresh(local_settings), start=start, end=end, settings=local_settings,
               deadline=Deadline(20), read_scl=failing)
    assert info.value.kind == "server" and info.value.status == 503
    assert isinstance(info.value.__cause__, ChipError) and len(calls) >= 2
