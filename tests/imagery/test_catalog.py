"""imagery/catalog.py: one client per configuration, the STAC search cache, items kept offline,
and the same answers from every provider."""

from __future__ import annotations

from typing import Any

import pytest
from imagery.helpers import fresh, s2_search, window

from terramind_nyc.deadline import Deadline
from terramind_nyc.imagery.catalog import get_catalog
from terramind_nyc.settings import Settings
from terramind_nyc.testing import SCENARIOS


def test_get_catalog_reuses_one_client_per_configuration(local_settings: Settings, stac_settings: Settings) -> None:
    a = get_catalog(local_settings)
    assert get_catalog(local_settings.replace(max_cloud=0.5)) is a  # scene limits do not change the client
    assert get_catalog(stac_settings) is get_catalog(stac_settings)
    assert get_catalog(stac_settings) is not a
    assert a.provider == "local" and a.source == "local (items.json)"  # a file name, never a machine path
    c = get_catalog(stac_settings)
    assert c.provider == "stac-api" and c.source.startswith("stac-api (127.0.0.1:")
    assert fresh(local_settings) is not a


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rustac_and_local_search_agree(fixture_catalog: Any, local_settings: Settings, stac_settings: Settings,
                                       scenario: str) -> None:
    cat = fixture_catalog.catalog
    g = cat.grid(scenario)
    start, end = window(cat, scenario)
    loc, api = get_catalog(local_settings), get_catalog(stac_settings)
    for coll, kw in (("sentinel-2-l2a", {"start": start, "end": end, "cloud_lt": 80.0}),
                     ("sentinel-1-rtc", {"start": start, "end": end}),
                     ("cop-dem-glo-30", {"start": None, "end": None})):
        a = [i.id for i in loc.search(coll, bbox_4326=g.bounds_4326, deadline=Deadline(10), **kw)]
        b = [i.id for i in api.search(coll, bbox_4326=g.bounds_4326, deadline=Deadline(10), **kw)]
        assert a == b, (coll, scenario)


def test_api_items_do_not_reach_back_to_the_api(fixture_catalog: Any, stac_settings: Settings,
                                                 faulty_stac: Any) -> None:
    """Items keep no root/parent/collection links: pystac would fetch them (no timeout) on to_dict()."""
    cat = fixture_catalog.catalog
    start, end = window(cat, "tile_edge")
    items = get_catalog(stac_settings).search("sentinel-2-l2a", bbox_4326=cat.grid("tile_edge").bounds_4326,
                                              start=start, end=end, deadline=Deadline(10))
    faulty_stac.reset()
    for it in items:
        d = it.to_dict()
        assert {lk["rel"] for lk in d["links"]} <= {"self"} and d["assets"]["B04"]["href"].startswith("http")
    assert faulty_stac.requests == []


def test_stac_searches_are_cached(fixture_catalog: Any, stac_settings: Settings, faulty_stac: Any) -> None:
    from terramind_nyc.cache import clear_caches

    clear_caches()
    cat = fixture_catalog.catalog
    c = get_catalog(stac_settings.replace(cache_enabled=True))
    a = s2_search(c, cat, Deadline(10))
    n = len([r for r in faulty_stac.requests if r.path == "/search"])
    b = s2_search(c, cat, Deadline(10))
    assert [i.id for i in a] == [i.id for i in b] and a[0] is not b[0]  # fresh Item objects each time
    assert len([r for r in faulty_stac.requests if r.path == "/search"]) == n
