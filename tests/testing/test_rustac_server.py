"""StacServer (``rustac serve``): searches over the fixture items, and what it ignores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from testing.helpers import get, ids, search

from terramind_nyc.testing import StacServer


def test_rustac_searches_by_collection_bbox_and_datetime(fixture_catalog: Any, stac_server: StacServer) -> None:
    cat = fixture_catalog.catalog
    bbox = list(cat.grid("clear").bounds_4326)
    exp = cat.expected["clear"]
    got = ids(search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox,
                     datetime="2024-05-01T00:00:00Z/2024-07-31T23:59:59Z", limit=100))
    assert got == exp["s2_ids"]
    got = ids(search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100))
    assert sorted(got) == sorted(exp["s2_candidates"])
    got = ids(search(stac_server.url, collections=["sentinel-1-rtc"], bbox=bbox, limit=100))
    assert sorted(got) == sorted(exp["s1_ids"])
    got = ids(search(stac_server.url, collections=["cop-dem-glo-30"], bbox=bbox, limit=100))
    assert got == exp["dem_ids"]
    # GET form, and the collections endpoint
    status, _, body = get(stac_server.url + "/search?collections=sentinel-1-rtc&bbox="
                          + ",".join(map(str, cat.grid("no_s1").bounds_4326)))
    assert status == 200 and json.loads(body)["features"] == []
    status, _, body = get(stac_server.url + "/collections")
    assert {c["id"] for c in json.loads(body)["collections"]} == {"sentinel-2-l2a", "sentinel-1-rtc",
                                                                    "cop-dem-glo-30"}


def test_rustac_query_filter_sortby_behaviour(fixture_catalog: Any, stac_server: StacServer) -> None:
    """Pin what rustac does with the extensions it lacks (so the client must not rely on them).

    rustac 0.9 advertises no query/filter/sort conformance. It ignores `sortby`, but a POST
    search carrying `query` or `filter` returns NO items at all (not "ignored"): a client must
    check /conformance and filter on its own side when the server lacks the extension.
    """
    cat = fixture_catalog.catalog
    _status, _, body = get(stac_server.url + "/conformance")
    conf = " ".join(json.loads(body)["conformsTo"])
    assert "item-search" in conf
    assert "#query" not in conf and "filter" not in conf and "#sort" not in conf
    bbox = list(cat.grid("all_cloudy").bounds_4326)
    every = ids(search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100))
    assert sorted(every) == sorted(cat.expected["all_cloudy"]["s2_candidates"])
    asc = ids(search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100,
                     sortby=[{"field": "properties.eo:cloud_cover", "direction": "asc"}]))
    assert asc == every  # sortby ignored
    assert search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100,
                  query={"eo:cloud_cover": {"lt": 80}})["features"] == []
    assert search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100, **{
        "filter-lang": "cql2-json", "filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 80]}},
    )["features"] == []


def test_stac_server_rejects_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        StacServer(tmp_path / "nope.json")
