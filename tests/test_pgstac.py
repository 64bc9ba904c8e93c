"""The same searches against stac-fastapi-pgstac (the stack Planetary Computer runs) as against rustac.

PostgreSQL + PostGIS + pgstac + stac-fastapi-pgstac are started from scratch by the
``pgstac_server`` fixture (about 4-6 s); the module skips when they are not installed
(``tests/run.sh`` / ``.ci/run`` install them). Unlike rustac, pgstac implements ``query``,
``filter`` (cql2) and ``sortby``; with ``eo:cloud_cover`` registered as a numeric queryable it
compares and sorts it as a number.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import warnings
from typing import Any

import pytest

from terramind_nyc.testing import SCENARIOS, FaultProxy, PgstacServer, StacServer

pytestmark = [pytest.mark.pgstac, pytest.mark.slow]

COLLECTIONS = ("sentinel-2-l2a", "sentinel-1-rtc", "cop-dem-glo-30")


def _search(url: str, **params: Any) -> dict[str, Any]:
    req = urllib.request.Request(url + "/search", data=json.dumps(params).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # pragma: no cover - shows the server's reason
        raise AssertionError(f"{e.code}: {e.read()[:500]!r}") from None


def _ids(doc: dict[str, Any]) -> list[str]:
    return [f["id"] for f in doc["features"]]


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_bbox_datetime_search_agrees_with_rustac(fixture_catalog: Any, stac_server: StacServer,
                                                 pgstac_server: PgstacServer, scenario: str, collection: str) -> None:
    cat = fixture_catalog.catalog
    start, end = cat.when(scenario)
    params = {"collections": [collection], "bbox": list(cat.grid(scenario).bounds_4326), "limit": 100}
    if collection != "cop-dem-glo-30":
        params["datetime"] = f"{start}T00:00:00Z/{end}T23:59:59Z"
    pg = sorted(_ids(_search(pgstac_server.url, **params)))
    rs = sorted(_ids(_search(stac_server.url, **params)))
    assert pg == rs
    exp = cat.expected[scenario]
    want = {"sentinel-2-l2a": exp["s2_candidates"], "sentinel-1-rtc": exp["s1_ids"],
            "cop-dem-glo-30": exp["dem_ids"]}[collection]
    facts = cat.item_facts
    in_window = [i for i in want if collection == "cop-dem-glo-30" or start <= facts[i]["datetime"][:10] <= end]
    assert pg == sorted(in_window)


def test_intersects_search(fixture_catalog: Any, pgstac_server: PgstacServer) -> None:
    cat = fixture_catalog.catalog
    w, s, e, n = cat.grid("tile_edge").bounds_4326
    poly = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    got = _ids(_search(pgstac_server.url, collections=["sentinel-2-l2a"], intersects=poly, limit=100))
    assert sorted(got) == sorted(cat.expected["tile_edge"]["s2_candidates"])


def test_query_prefilter_is_applied_server_side(fixture_catalog: Any, pgstac_server: PgstacServer) -> None:
    cat = fixture_catalog.catalog
    exp = cat.expected["all_cloudy"]
    got = _ids(_search(pgstac_server.url, collections=["sentinel-2-l2a"], bbox=list(cat.grid("all_cloudy").bounds_4326),
                       query={"eo:cloud_cover": {"lte": 80}}, limit=100))
    assert sorted(got) == sorted(set(exp["s2_candidates"]) - set(exp["prefiltered_ids"]))


def test_cql2_filter_and_sort_are_numeric(fixture_catalog: Any, pgstac_server: PgstacServer) -> None:
    """eo:cloud_cover is a registered numeric queryable: 18.4 sorts after 6.2 (not as text)."""
    cat = fixture_catalog.catalog
    bbox = list(cat.grid("clear").bounds_4326)
    doc = _search(pgstac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100,
                  sortby=[{"field": "properties.eo:cloud_cover", "direction": "asc"}])
    cc = [f["properties"]["eo:cloud_cover"] for f in doc["features"]]
    assert cc == sorted(cc) and len(cc) == len(cat.expected["clear"]["s2_candidates"])
    doc = _search(pgstac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100, **{
        "filter-lang": "cql2-json", "filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}})
    assert doc["features"] and all(f["properties"]["eo:cloud_cover"] < 10 for f in doc["features"])


def test_newest_first_sort(fixture_catalog: Any, pgstac_server: PgstacServer) -> None:
    cat = fixture_catalog.catalog
    for scenario in ("clear", "cloudy_vs_clear", "all_cloudy"):
        doc = _search(pgstac_server.url, collections=["sentinel-2-l2a"], bbox=list(cat.grid(scenario).bounds_4326),
                      sortby=[{"field": "properties.datetime", "direction": "desc"}], limit=100)
        assert _ids(doc) == cat.expected[scenario]["s2_candidates"]


def test_items_come_back_whole(fixture_catalog: Any, pgstac_server: PgstacServer) -> None:
    cat = fixture_catalog.catalog
    iid = cat.expected["tile_edge"]["s2_ids"][1]
    doc = _search(pgstac_server.url, ids=[iid], collections=["sentinel-2-l2a"])
    (item,) = doc["features"]
    src = cat.item(iid)
    assert item["assets"].keys() == src["assets"].keys()
    assert item["assets"]["B04"]["href"] == src["assets"]["B04"]["href"]
    assert item["properties"]["s2:processing_baseline"] == src["properties"]["s2:processing_baseline"]
    assert item["properties"].get("proj:code") == src["properties"].get("proj:code")


def test_pystac_client_pages_filters_and_sorts(fixture_catalog: Any, pgstac_server: PgstacServer) -> None:
    """pystac-client 0.9 accepts pgstac's query conformance, but matches sort only against
    ``v1.0.*`` URIs while stac-fastapi-pgstac 7 advertises ``v1.1.0/item-search#sort``: it warns
    ``DoesNotConformTo('SORT')`` and still sends ``sortby``, which the server applies."""
    from pystac_client import Client

    cat = fixture_catalog.catalog
    client = Client.open(pgstac_server.url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search = client.search(collections=["sentinel-2-l2a"], bbox=cat.grid("cloudy_vs_clear").bounds_4326,
                               datetime="2024-05-01/2024-07-31", query={"eo:cloud_cover": {"lt": 80}},
                               sortby="+properties.eo:cloud_cover", limit=1)
        items = list(search.items())
    messages = {str(w.message) for w in caught}
    assert not any("QUERY" in m or "FILTER" in m for m in messages), messages
    cc = [i.properties["eo:cloud_cover"] for i in items]
    assert cc == sorted(cc)
    assert sorted(i.id for i in items) == sorted(cat.expected["cloudy_vs_clear"]["s2_candidates"])


def test_fault_proxy_in_front_of_pgstac(fixture_catalog: Any, pgstac_server: PgstacServer) -> None:
    cat = fixture_catalog.catalog
    with FaultProxy(pgstac_server.url) as proxy:
        proxy.faults.fail(500, "/search", times=1)
        with pytest.raises(AssertionError, match="500"):
            _search(proxy.url, collections=["sentinel-2-l2a"], limit=1)
        doc = _search(proxy.url, collections=["sentinel-2-l2a"], bbox=list(cat.grid("clear").bounds_4326), limit=1)
        assert len(doc["features"]) == 1
        nxt = [lk["href"] for lk in doc["links"] if lk["rel"] == "next"]
        assert nxt and all(lk["href"].startswith(proxy.url) for lk in doc["links"])
