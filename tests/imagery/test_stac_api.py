"""imagery/stac_api.py: what is sent to a STAC API (rustac, pgstac), retries, faults, deadlines."""

from __future__ import annotations

import time
from typing import Any

import pytest
from imagery.helpers import choose, fresh, s2_search, window

from terramind_nyc.deadline import Deadline
from terramind_nyc.errors import CatalogError, DeadlineExceededError, NoSceneError
from terramind_nyc.imagery.catalog import get_catalog
from terramind_nyc.settings import Settings


def test_rustac_ignores_query_so_the_client_filters(fixture_catalog: Any, stac_settings: Settings,
                                                    faulty_stac: Any) -> None:
    """rustac does not advertise QUERY (and answers nothing to it): no `query` is sent; the
    prefilter is applied on the client, and the client sorts newest first."""
    cat = fixture_catalog.catalog
    exp = cat.expected["all_cloudy"]
    start, end = window(cat, "all_cloudy")
    got = get_catalog(stac_settings).search("sentinel-2-l2a", bbox_4326=cat.grid("all_cloudy").bounds_4326,
                                            start=start, end=end, deadline=Deadline(10), cloud_lt=80.0)
    assert [i.id for i in got] == [i for i in exp["s2_candidates"] if i not in exp["prefiltered_ids"]]
    searches = [r for r in faulty_stac.requests if r.path == "/search"]
    assert searches and all(r.status == 200 for r in searches)


@pytest.mark.pgstac
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["cloudy_vs_clear", "tile_edge", "all_cloudy"])
def test_pgstac_sends_query_and_sortby_and_agrees(fixture_catalog: Any, local_settings: Settings,
                                                  pgstac_server: Any, scenario: str) -> None:
    """stac-fastapi-pgstac (Planetary Computer's stack) advertises query and sort: both are sent,
    and the search and the scene choice agree with the local provider's."""
    cat = fixture_catalog.catalog
    s = local_settings.replace(catalog_provider="stac-api", catalog_url=pgstac_server.url)
    api, loc = get_catalog(s), get_catalog(local_settings)
    g = cat.grid(scenario)
    start, end = window(cat, scenario)
    kw: dict[str, Any] = {"bbox_4326": g.bounds_4326, "start": start, "end": end, "deadline": Deadline(20),
                          "cloud_lt": 80.0}
    assert [i.id for i in api.search("sentinel-2-l2a", **kw)] == [i.id for i in loc.search("sentinel-2-l2a", **kw)]
    assert api.backend.supports["QUERY"] and api.backend.supports["SORT"]  # type: ignore[attr-defined]
    exp = cat.expected[scenario]
    if not exp["s2_ids"]:
        with pytest.raises(NoSceneError):
            choose(g, api, start=start, end=end, settings=s, deadline=Deadline(20))
        return
    choice = choose(g, fresh(s), start=start, end=end, settings=s, deadline=Deadline(20))
    assert sorted(i.id for i in choice.items) == sorted(exp["s2_ids"])


@pytest.mark.parametrize("status", [500, 503, 429])
def test_stac_transient_errors_are_retried(fixture_catalog: Any, stac_settings: Settings, faulty_stac: Any,
                                           status: int) -> None:
    cat = fixture_catalog.catalog
    c = get_catalog(stac_settings)
    s2_search(c, cat, Deadline(10))  # client opened
    faulty_stac.reset()
    faulty_stac.faults.fail(status, "/search", times=2, retry_after=0.1)
    got = s2_search(c, cat, Deadline(10))
    assert [i.id for i in got] == cat.expected["clear"]["s2_ids"]
    assert [r.status for r in faulty_stac.requests if r.path == "/search"] == [status, status, 200]


def test_stac_errors_after_retries_name_the_service(fixture_catalog: Any, stac_settings: Settings,
                                                    faulty_stac: Any) -> None:
    cat = fixture_catalog.catalog
    c = get_catalog(stac_settings)
    faulty_stac.faults.fail(502, "/search", times=None)
    with pytest.raises(CatalogError, match=r"searching sentinel-2-l2a at stac-api \(127\.0\.0\.1:\d+\) failed.*"
                                           r"try again later"):
        s2_search(c, cat, Deadline(10))
    assert len([r for r in faulty_stac.requests if r.path == "/search"]) == stac_settings.http_retries + 1
    faulty_stac.faults.clear()
    faulty_stac.faults.fail(400, "/search", times=1)
    with pytest.raises(CatalogError, match="refused the search"):
        s2_search(c, cat, Deadline(10))


def test_stac_truncated_answer_is_retried(fixture_catalog: Any, stac_settings: Settings, faulty_stac: Any) -> None:
    cat = fixture_catalog.catalog
    c = get_catalog(stac_settings)
    for short in (False, True):  # connection dies mid-body / a short, invalid JSON body
        faulty_stac.faults.truncate("/search", nbytes=50, times=1, short_file=short)
        assert [i.id for i in s2_search(c, cat, Deadline(10))] == cat.expected["clear"]["s2_ids"]
    faulty_stac.faults.truncate("/search", nbytes=50)
    with pytest.raises(CatalogError, match="JSONDecodeError|IncompleteRead|Connection broken"):
        s2_search(c, cat, Deadline(10))


def test_stac_hang_ends_at_the_deadline(fixture_catalog: Any, stac_settings: Settings, faulty_stac: Any) -> None:
    cat = fixture_catalog.catalog
    c = get_catalog(stac_settings.replace(http_timeout_s=30.0))  # only the deadline can end it
    faulty_stac.faults.hang("/search")
    t = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=r"searching sentinel-2-l2a at stac-api .* 1\.5 s deadline"):
        s2_search(c, cat, Deadline(1.5))
    assert time.monotonic() - t < 1.5 + 1.0
    # release the hung search; its abandoned thread retries once, then ends (not in the next test)
    faulty_stac.faults.clear()
    t_end = time.monotonic() + 5
    while time.monotonic() < t_end and not any(r.status == 200 for r in faulty_stac.requests):
        time.sleep(0.05)


def test_stac_unreachable_is_a_catalog_error(fixture_catalog: Any) -> None:
    from terramind_nyc.testing import free_port

    s = Settings(catalog_provider="stac-api", catalog_url=f"http://127.0.0.1:{free_port()}", signer="none",
                 http_timeout_s=1.0, http_retries=1, http_backoff_s=0.01, cache_enabled=False)
    with pytest.raises(CatalogError, match=r"opening the STAC API stac-api \(127\.0\.0\.1"):
        s2_search(get_catalog(s), fixture_catalog.catalog, Deadline(10))
