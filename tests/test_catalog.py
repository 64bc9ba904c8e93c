"""catalog.py: date windows, deadlines, providers (local, rustac STAC API), signing, scene choice."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest

from terramind_nyc.dates import resolve_when
from terramind_nyc.deadline import Deadline
from terramind_nyc.imagery.catalog import (
    Catalog,
    choose_s2_scene,
    find_dem,
    get_catalog,
    item_crs,
    make_signer,
    pair_s1,
    planetary_computer_signer,
    redact,
    s2_acquisitions,
    scl_fractions,
    strip_query,
)
from terramind_nyc.errors import (
    CatalogError,
    ChipNodataError,
    DeadlineExceededError,
    InvalidInputError,
    InvalidLocationError,
    NoSceneError,
)
from terramind_nyc.grid import chip_grid
from terramind_nyc.settings import Settings
from terramind_nyc.testing import SCENARIOS, chip_fractions

NOW = datetime(2024, 8, 15, 12, 0, tzinfo=UTC)


def _window(cat: Any, scenario: str) -> tuple[datetime, datetime]:
    return resolve_when(cat.when(scenario), Settings(), now=cat.now)


def _fresh(settings: Settings) -> Catalog:
    """A catalog whose asset URLs are new to GDAL's per-URL cache (a token-like query string)."""
    token = uuid.uuid4().hex

    def signer(href: str) -> str:
        return f"{href}?sig=SECRET{token}" if "://" in href else href

    return get_catalog(settings, signer=signer)


# ----------------------------------------------------------------------------------------
# resolve_when
# ----------------------------------------------------------------------------------------
def test_when_none_is_the_recency_window() -> None:
    s = Settings(recency_days=30)
    start, end = resolve_when(None, s, now=NOW)
    assert end == NOW and start == NOW - timedelta(days=30)
    assert start.tzinfo is not None and end.tzinfo is not None
    # within the hour the window is the same (cache keys are stable); it ends at the next hour
    later = NOW + timedelta(minutes=17, seconds=3)
    assert resolve_when(None, s, now=later) == (NOW + timedelta(hours=1) - timedelta(days=30), NOW + timedelta(hours=1))
    assert resolve_when(None, s, now=later) == resolve_when(None, s, now=later + timedelta(minutes=30))


def test_when_forms() -> None:
    s = Settings(recency_days=10)
    start, end = resolve_when(date(2024, 7, 1), s, now=NOW)
    assert end == datetime(2024, 7, 1, 23, 59, 59, 999999, tzinfo=UTC)
    assert start == end - timedelta(days=10)
    assert resolve_when("2024-07-01", s, now=NOW) == (start, end)
    naive = datetime(2024, 7, 1, 12, 0)
    assert resolve_when(naive, s, now=NOW) == (datetime(2024, 6, 21, 12, tzinfo=UTC), datetime(2024, 7, 1, 12, tzinfo=UTC))
    other_tz = datetime(2024, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=-4)))
    assert resolve_when(other_tz, s, now=NOW)[1] == datetime(2024, 7, 1, 12, tzinfo=UTC)
    assert resolve_when("2024-07-01T12:00:00Z", s, now=NOW)[1] == datetime(2024, 7, 1, 12, tzinfo=UTC)
    a, b = resolve_when("2024-05-01/2024-07-31", s, now=NOW)
    assert a == datetime(2024, 5, 1, tzinfo=UTC) and b.date() == date(2024, 7, 31) and b.hour == 23
    assert resolve_when(("2024-05-01", "2024-07-31"), s, now=NOW) == (a, b)
    assert resolve_when([date(2024, 5, 1), date(2024, 7, 31)], s, now=NOW) == (a, b)
    # open ends: '..' start -> recency_days before the end; '..' end -> now
    a2, b2 = resolve_when("../2024-07-31", s, now=NOW)
    assert b2 == b and a2 == b - timedelta(days=10)
    assert resolve_when("2024-05-01/..", s, now=NOW) == (a, NOW)


def test_when_ending_in_the_future_is_cut_at_now() -> None:
    start, end = resolve_when(("2024-08-01", "2024-12-31"), Settings(), now=NOW)
    assert end == NOW and start == datetime(2024, 8, 1, tzinfo=UTC)
    # today (a date) is fine: its window ends now
    assert resolve_when(NOW.date(), Settings(), now=NOW)[1] == NOW


@pytest.mark.parametrize("when, match", [
    (date(2024, 9, 1), "future"),
    ("2025-01-01T00:00:00Z", "future"),
    (("2024-09-01", "2024-10-01"), "starts in the future"),
    ("2024-07-31/2024-05-01", "reversed"),
    ((datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)), "reversed"),
    ((datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC)), "empty"),
    ("last tuesday", "not an ISO date"),
    ("", "empty string"),
    (12345, "must be a date"),
    (("2024-01-01", "2024-02-01", "2024-03-01"), "exactly"),
    ("2024-01-01/2024-02-01/2024-03-01", "start/end"),
    ((None, None), "at least one"),
    ("2014-01-01", "before Sentinel-2"),
])
def test_when_rejects_bad_windows(when: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        resolve_when(when, Settings(), now=NOW)


def test_invalid_coordinates_are_rejected_before_any_search() -> None:
    for lat, lon in [(float("nan"), -73.98), (40.7, float("inf")), ("40.7", -73.98), (95.0, -73.98),
                     (-73.98, 40.75), (51.5, -0.12)]:
        with pytest.raises(InvalidLocationError):
            chip_grid(lat, lon)


# ----------------------------------------------------------------------------------------
# Deadline, URLs, signing
# ----------------------------------------------------------------------------------------
def test_deadline() -> None:
    d = Deadline(0.2)
    assert 0.0 < d.remaining() <= 0.2 and not d.expired
    d.check("step", "svc")
    time.sleep(0.25)
    assert d.expired and d.remaining() == 0.0
    with pytest.raises(DeadlineExceededError, match=r"reading X at host:1 did not finish within the 0.2 s deadline"):
        d.check("reading X", "host:1")
    assert isinstance(d.error("a", "b"), TimeoutError)
    forever = Deadline(None)
    assert forever.remaining() == float("inf") and forever.timeout() is None and forever.timeout(3) == 3
    for bad in (0, -1, float("nan"), True, "10"):
        with pytest.raises(InvalidInputError):
            Deadline(bad)  # type: ignore[arg-type]


def test_urls_lose_their_tokens() -> None:
    signed = "https://acct.blob.core.windows.net/c/x/B04.tif?st=2024&se=2025&sig=SECRET%2B"
    assert strip_query(signed) == "https://acct.blob.core.windows.net/c/x/B04.tif"
    assert strip_query("/data/B04.tif") == "/data/B04.tif"
    msg = f"'/vsicurl/{signed}' not recognized; HTTP error for {signed}."
    assert "SECRET" not in redact(msg) and "B04.tif" in redact(msg)


def test_signers() -> None:
    # planetary-computer signs only Azure blob hosts: anything else is returned untouched, with
    # no network call (the test session blocks non-loopback connections)
    for href in ("http://127.0.0.1:8000/cogs/B04.tif", "https://example.org/x.tif", "/data/x.tif"):
        assert planetary_computer_signer(href) == href
        assert make_signer("planetary-computer")(href) == href
        assert make_signer("none")(href) == href

    def mine(h: str) -> str:
        return h + "?k=1"

    assert make_signer(mine) is mine
    with pytest.raises(InvalidInputError):
        make_signer("aws")


def test_get_catalog_reuses_one_client_per_configuration(local_settings: Settings, stac_settings: Settings) -> None:
    a = get_catalog(local_settings)
    assert get_catalog(local_settings.replace(max_cloud=0.5)) is a  # scene limits do not change the client
    assert get_catalog(stac_settings) is get_catalog(stac_settings)
    assert get_catalog(stac_settings) is not a
    assert a.provider == "local" and a.source == "local (items.json)"  # a file name, never a machine path
    c = get_catalog(stac_settings)
    assert c.provider == "stac-api" and c.source.startswith("stac-api (127.0.0.1:")
    assert _fresh(local_settings) is not a


# ----------------------------------------------------------------------------------------
# Searching: local provider and rustac
# ----------------------------------------------------------------------------------------
def test_local_search_filters_and_sorts(fixture_catalog: Any, local_settings: Settings) -> None:
    cat = fixture_catalog.catalog
    c = get_catalog(local_settings)
    g = cat.grid("all_cloudy")
    start, end = _window(cat, "all_cloudy")
    exp = cat.expected["all_cloudy"]
    items = c.search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=start, end=end, deadline=Deadline(5))
    assert [i.id for i in items] == exp["s2_candidates"]  # newest first, this chip's items only
    assert all(isinstance(i, pystac.Item) for i in items)
    kept = c.search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=start, end=end, deadline=Deadline(5),
                    cloud_lt=80)
    assert [i.id for i in kept] == [i for i in exp["s2_candidates"] if i not in exp["prefiltered_ids"]]
    narrow = c.search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=datetime(2024, 6, 1, tzinfo=UTC),
                      end=datetime(2024, 6, 30, 23, 59, tzinfo=UTC), deadline=Deadline(5))
    assert [i.id for i in narrow] == [i for i in exp["s2_candidates"] if "202406" in i]
    assert c.search("sentinel-2-l2a", bbox_4326=(0.0, 0.0, 1.0, 1.0), start=start, end=end, deadline=Deadline(5)) == []
    dem = c.search("cop-dem-glo-30", bbox_4326=g.bounds_4326, start=None, end=None, deadline=Deadline(5))
    assert [i.id for i in dem] == exp["dem_ids"]
    with pytest.raises(InvalidInputError):
        c.search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=start, end=None, deadline=Deadline(5))


def test_local_folder_of_items_and_relative_hrefs(fixture_catalog: Any, tmp_path: Path) -> None:
    cat = fixture_catalog.catalog
    folder = tmp_path / "items"
    for it in cat.items():
        sub = folder / it["collection"]
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{it['id']}.json").write_text(json.dumps(it))
    (folder / "notes.json").write_text(json.dumps({"type": "Collection", "id": "x"}))  # not an item: ignored
    s = Settings(catalog_provider="local", catalog_path=str(folder), signer="none", cache_enabled=False)
    g = cat.grid("clear")
    start, end = _window(cat, "clear")
    got = get_catalog(s).search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=start, end=end,
                                deadline=Deadline(5))
    assert [i.id for i in got] == [i for i in cat.expected["clear"]["s2_candidates"]
                                   if cat.item_facts[i]["datetime"] >= "2024-05"]
    # an item file with relative hrefs resolves them against its own folder
    it = dict(cat.item(cat.expected["clear"]["s2_ids"][0]))
    it["assets"] = {"B04": {**it["assets"]["B04"], "href": "./B04.tif"}}
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "item.json").write_text(json.dumps(it))
    s1 = s.replace(catalog_path=str(tmp_path / "one" / "item.json"))
    (one,) = get_catalog(s1).search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=start, end=end,
                                    deadline=Deadline(5))
    assert Path(one.assets["B04"].href) == (tmp_path / "one" / "B04.tif").resolve()


def test_local_catalog_errors(tmp_path: Path) -> None:
    g = chip_grid(40.7484, -73.9857)
    with pytest.raises(CatalogError, match="does not exist"):
        get_catalog(Settings(catalog_provider="local", catalog_path=str(tmp_path / "nope.json"))).search(
            "sentinel-2-l2a", bbox_4326=g.bounds_4326, start=None, end=None, deadline=Deadline(5))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CatalogError, match="not readable JSON"):
        get_catalog(Settings(catalog_provider="local", catalog_path=str(tmp_path / "bad.json"))).search(
            "sentinel-2-l2a", bbox_4326=g.bounds_4326, start=None, end=None, deadline=Deadline(5))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rustac_and_local_search_agree(fixture_catalog: Any, local_settings: Settings, stac_settings: Settings,
                                       scenario: str) -> None:
    cat = fixture_catalog.catalog
    g = cat.grid(scenario)
    start, end = _window(cat, scenario)
    loc, api = get_catalog(local_settings), get_catalog(stac_settings)
    for coll, kw in (("sentinel-2-l2a", {"start": start, "end": end, "cloud_lt": 80.0}),
                     ("sentinel-1-rtc", {"start": start, "end": end}),
                     ("cop-dem-glo-30", {"start": None, "end": None})):
        a = [i.id for i in loc.search(coll, bbox_4326=g.bounds_4326, deadline=Deadline(10), **kw)]
        b = [i.id for i in api.search(coll, bbox_4326=g.bounds_4326, deadline=Deadline(10), **kw)]
        assert a == b, (coll, scenario)


def test_rustac_ignores_query_so_the_client_filters(fixture_catalog: Any, stac_settings: Settings,
                                                    faulty_stac: Any) -> None:
    """rustac does not advertise QUERY (and answers nothing to it): no `query` is sent; the
    prefilter is applied on the client, and the client sorts newest first."""
    cat = fixture_catalog.catalog
    exp = cat.expected["all_cloudy"]
    start, end = _window(cat, "all_cloudy")
    got = get_catalog(stac_settings).search("sentinel-2-l2a", bbox_4326=cat.grid("all_cloudy").bounds_4326,
                                            start=start, end=end, deadline=Deadline(10), cloud_lt=80.0)
    assert [i.id for i in got] == [i for i in exp["s2_candidates"] if i not in exp["prefiltered_ids"]]
    searches = [r for r in faulty_stac.requests if r.path == "/search"]
    assert searches and all(r.status == 200 for r in searches)


def test_api_items_do_not_reach_back_to_the_api(fixture_catalog: Any, stac_settings: Settings,
                                                 faulty_stac: Any) -> None:
    """Items keep no root/parent/collection links: pystac would fetch them (no timeout) on to_dict()."""
    cat = fixture_catalog.catalog
    start, end = _window(cat, "tile_edge")
    items = get_catalog(stac_settings).search("sentinel-2-l2a", bbox_4326=cat.grid("tile_edge").bounds_4326,
                                              start=start, end=end, deadline=Deadline(10))
    faulty_stac.reset()
    for it in items:
        d = it.to_dict()
        assert {lk["rel"] for lk in d["links"]} <= {"self"} and d["assets"]["B04"]["href"].startswith("http")
    assert faulty_stac.requests == []


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
    start, end = _window(cat, scenario)
    kw: dict[str, Any] = {"bbox_4326": g.bounds_4326, "start": start, "end": end, "deadline": Deadline(20),
                          "cloud_lt": 80.0}
    assert [i.id for i in api.search("sentinel-2-l2a", **kw)] == [i.id for i in loc.search("sentinel-2-l2a", **kw)]
    assert api._supports["QUERY"] and api._supports["SORT"]  # type: ignore[attr-defined]
    exp = cat.expected[scenario]
    if not exp["s2_ids"]:
        with pytest.raises(NoSceneError):
            choose_s2_scene(g, api, start=start, end=end, settings=s, deadline=Deadline(20))
        return
    choice = choose_s2_scene(g, _fresh(s), start=start, end=end, settings=s, deadline=Deadline(20))
    assert sorted(i.id for i in choice.items) == sorted(exp["s2_ids"])


# ----------------------------------------------------------------------------------------
# Network faults at the STAC API
# ----------------------------------------------------------------------------------------
def _s2_search(c: Catalog, cat: Any, deadline: Deadline) -> list[pystac.Item]:
    start, end = _window(cat, "clear")
    return c.search("sentinel-2-l2a", bbox_4326=cat.grid("clear").bounds_4326, start=start, end=end,
                    deadline=deadline)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_stac_transient_errors_are_retried(fixture_catalog: Any, stac_settings: Settings, faulty_stac: Any,
                                           status: int) -> None:
    cat = fixture_catalog.catalog
    c = get_catalog(stac_settings)
    _s2_search(c, cat, Deadline(10))  # client opened
    faulty_stac.reset()
    faulty_stac.faults.fail(status, "/search", times=2, retry_after=0.1)
    got = _s2_search(c, cat, Deadline(10))
    assert [i.id for i in got] == cat.expected["clear"]["s2_ids"]
    assert [r.status for r in faulty_stac.requests if r.path == "/search"] == [status, status, 200]


def test_stac_errors_after_retries_name_the_service(fixture_catalog: Any, stac_settings: Settings,
                                                    faulty_stac: Any) -> None:
    cat = fixture_catalog.catalog
    c = get_catalog(stac_settings)
    faulty_stac.faults.fail(502, "/search", times=None)
    with pytest.raises(CatalogError, match=r"searching sentinel-2-l2a at stac-api \(127\.0\.0\.1:\d+\) failed.*"
                                           r"try again later"):
        _s2_search(c, cat, Deadline(10))
    assert len([r for r in faulty_stac.requests if r.path == "/search"]) == stac_settings.http_retries + 1
    faulty_stac.faults.clear()
    faulty_stac.faults.fail(400, "/search", times=1)
    with pytest.raises(CatalogError, match="refused the search"):
        _s2_search(c, cat, Deadline(10))


def test_stac_truncated_answer_is_retried(fixture_catalog: Any, stac_settings: Settings, faulty_stac: Any) -> None:
    cat = fixture_catalog.catalog
    c = get_catalog(stac_settings)
    for short in (False, True):  # connection dies mid-body / a short, invalid JSON body
        faulty_stac.faults.truncate("/search", nbytes=50, times=1, short_file=short)
        assert [i.id for i in _s2_search(c, cat, Deadline(10))] == cat.expected["clear"]["s2_ids"]
    faulty_stac.faults.truncate("/search", nbytes=50)
    with pytest.raises(CatalogError, match="JSONDecodeError|IncompleteRead|Connection broken"):
        _s2_search(c, cat, Deadline(10))


def test_stac_hang_ends_at_the_deadline(fixture_catalog: Any, stac_settings: Settings, faulty_stac: Any) -> None:
    cat = fixture_catalog.catalog
    c = get_catalog(stac_settings.replace(http_timeout_s=30.0))  # only the deadline can end it
    faulty_stac.faults.hang("/search")
    t = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=r"searching sentinel-2-l2a at stac-api .* 1\.5 s deadline"):
        _s2_search(c, cat, Deadline(1.5))
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
        _s2_search(get_catalog(s), fixture_catalog.catalog, Deadline(10))


def test_stac_searches_are_cached(fixture_catalog: Any, stac_settings: Settings, faulty_stac: Any) -> None:
    from terramind_nyc.cache import clear_caches

    clear_caches()
    cat = fixture_catalog.catalog
    c = get_catalog(stac_settings.replace(cache_enabled=True))
    a = _s2_search(c, cat, Deadline(10))
    n = len([r for r in faulty_stac.requests if r.path == "/search"])
    b = _s2_search(c, cat, Deadline(10))
    assert [i.id for i in a] == [i.id for i in b] and a[0] is not b[0]  # fresh Item objects each time
    assert len([r for r in faulty_stac.requests if r.path == "/search"]) == n


# ----------------------------------------------------------------------------------------
# Scene choice
# ----------------------------------------------------------------------------------------
def _choose(cat: Any, scenario: str, s: Settings) -> Any:
    start, end = _window(cat, scenario)
    return choose_s2_scene(cat.grid(scenario), _fresh(s), start=start, end=end, settings=s, deadline=Deadline(20))


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
                                           r"widen the window .*recency_days.* raise `max_cloud`"):
        _choose(cat, "all_cloudy", local_settings)
    # with a looser limit the least cloudy one is chosen (the >80% scene stays prefiltered)
    choice = _choose(cat, "all_cloudy", local_settings.replace(max_cloud=0.5))
    assert choice.cloud_fraction == pytest.approx(0.45, abs=0.02)


def test_no_scene_in_the_window_says_how_to_widen(fixture_catalog: Any, local_settings: Settings) -> None:
    cat = fixture_catalog.catalog
    s = local_settings
    start, end = resolve_when(("2023-01-01", "2023-03-01"), s, now=cat.now)
    with pytest.raises(NoSceneError, match=r"no Sentinel-2 scene over this chip from 2023-01-01 to 2023-03-01.*"
                                           r"widen the window \(`when`, or `recency_days`=120\)"):
        choose_s2_scene(cat.grid("clear"), get_catalog(s), start=start, end=end, settings=s, deadline=Deadline(5))


def test_mostly_nodata_chip(fixture_catalog: Any, local_settings: Settings) -> None:
    cat = fixture_catalog.catalog
    with pytest.raises(ChipNodataError, match=r"covers enough of this chip.* 2[0-9]% of it.*`max_nodata`"):
        _choose(cat, "mostly_nodata", local_settings)


def test_s1_pairing_and_dem(fixture_catalog: Any, local_settings: Settings) -> None:
    cat = fixture_catalog.catalog
    s = local_settings
    c = get_catalog(s)
    for scenario in SCENARIOS:
        exp = cat.expected[scenario]
        if exp["s2_datetime"] is None:
            continue
        g = cat.grid(scenario)
        s2_dt = datetime.fromisoformat(exp["s2_datetime"])
        got = pair_s1(g, c, s2_dt, settings=s, deadline=Deadline(5))
        assert (None if got is None else [i.id for i in got]) == (None if exp["s1_id"] is None else [exp["s1_id"]])
        dem = find_dem(g, c, settings=s, deadline=Deadline(5))
        assert (None if dem is None else [i.id for i in dem]) == (exp["dem_ids"] or None)
    # out of the pairing window: nothing
    exp = cat.expected["clear"]
    far = datetime(2024, 6, 1, tzinfo=UTC)
    assert pair_s1(cat.grid("clear"), c, far, settings=s, deadline=Deadline(5)) is None


def test_proj_epsg_and_proj_code_are_both_read() -> None:
    a = {"properties": {"proj:epsg": 32618}, "assets": {"B04": {}}}
    b = {"properties": {"proj:code": "EPSG:32618"}, "assets": {"B04": {}}}
    c = {"properties": {"proj:epsg": 32618}, "assets": {"B04": {"proj:code": "EPSG:32619"}}}
    assert item_crs(a) == item_crs(b) == item_crs(a, "B04") == item_crs(b, "B04") == "EPSG:32618"
    assert item_crs(c, "B04") == "EPSG:32619" and item_crs({"properties": {}}) is None


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
