"""chips.py: co-registered S2/S1/DEM reads on the chip grid, units, mosaics, faults, provenance."""

from __future__ import annotations

import json
import logging
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from terramind_nyc.dates import iso_z, resolve_when
from terramind_nyc.deadline import Deadline
from terramind_nyc.imagery.catalog import Catalog, get_catalog
from terramind_nyc.imagery.reader import (
    DEM_BANDS,
    MODALITIES,
    S1_BANDS,
    S2_BANDS,
    Chip,
    gdal_options,
    read_chip,
    s2_offset,
)
from terramind_nyc.errors import (
    ChipError,
    ChipNodataError,
    DeadlineExceededError,
    InvalidInputError,
    MissingModalityWarning,
    NoSceneError,
)
from terramind_nyc.grid import ChipGrid
from terramind_nyc.settings import Settings
from terramind_nyc.testing import S1_NODATA, S2_RESOLUTION, fixture_elevation
from terramind_nyc.testing import S2_BANDS as FIXTURE_S2_BANDS

SECRET = "SECRET"


def _library_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the library itself logged (the loopback servers log request lines, queries included;
    rasterio's DEBUG records name datasets by their full URL, which is outside the library)."""
    return "\n".join(r.getMessage() for r in caplog.records
                     if r.name.startswith("terramind_nyc") and not r.name.startswith("terramind_nyc.testing"))


def _fresh(settings: Settings, token: str | None = None) -> Catalog:
    """A catalog whose asset URLs carry a unique token-like query: new to GDAL's per-URL cache,
    and a stand-in for a signed URL that must never show up in results, errors or logs."""
    tok = token or uuid.uuid4().hex

    def signer(href: str) -> str:
        return f"{href}?sig={SECRET}{tok}" if "://" in href else href

    return get_catalog(settings, signer=signer)


def _read(fx: Any, scenario: str, settings: Settings, *, when: Any = None, deadline: Deadline | None = None,
          catalog: Catalog | None = None) -> Chip:
    cat = fx.catalog
    return read_chip(cat.grid(scenario, settings), when=when if when is not None else cat.when(scenario),
                     settings=settings, deadline=deadline, catalog=catalog or _fresh(settings))


def _local_file(fx: Any, href: str) -> Path:
    cat = fx.catalog
    return cat.root / href.split("?")[0][len(cat.base_url) + 1:]


def _source_on_grid(fx: Any, item_id: str, asset: str, grid: ChipGrid) -> np.ndarray:
    """The asset's pixels under a 10 m-aligned grid, read straight from the file (no resampling)."""
    path = _local_file(fx, fx.catalog.item(item_id)["assets"][asset]["href"])
    with rasterio.open(path) as ds:
        k = round(grid.resolution / ds.res[0]) if ds.res[0] < grid.resolution else 1
        assert k == 1
        col = round((grid.bounds[0] - ds.transform.c) / ds.res[0])
        row = round((ds.transform.f - grid.bounds[3]) / ds.res[0])
        return ds.read(1, window=((row, row + grid.height), (col, col + grid.width)))


def _settle(server: Any, quiet_s: float = 0.3, limit_s: float = 5.0) -> None:
    """Release hung requests and wait until reads abandoned at a deadline stop arriving, so they
    do not land in the next test's request log."""
    server.faults.clear()
    t_end = time.monotonic() + limit_s
    n = -1
    while time.monotonic() < t_end and n != server.request_count:
        n = server.request_count
        time.sleep(quiet_s)


def _quiet(fn: Any, *a: Any, **k: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingModalityWarning)
        return fn(*a, **k)


# ----------------------------------------------------------------------------------------
# A clear chip: shapes, units, values
# ----------------------------------------------------------------------------------------
def test_band_order_is_design_order() -> None:
    assert S2_BANDS == FIXTURE_S2_BANDS  # the fixture's independent copy of DESIGN's order
    assert len(S2_BANDS) == 12 and "B10" not in S2_BANDS
    assert S1_BANDS == ("vv", "vh") and DEM_BANDS == ("data",) and MODALITIES == ("S2L2A", "S1RTC", "DEM")


def test_clear_chip(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    cat = fx.catalog
    exp = cat.expected["clear"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of any kind for a complete chip
        chip = _read(fx, "clear", local_settings)
    g = cat.grid("clear")
    assert chip.grid == g and chip.missing == () and dict(chip.notes) == {}
    assert chip.arrays["S2L2A"].shape == (12, 224, 224) and chip.arrays["S2L2A"].dtype == np.float32
    assert chip.arrays["S1RTC"].shape == (2, 224, 224) and chip.arrays["S1RTC"].dtype == np.float32
    assert chip.arrays["DEM"].shape == (1, 224, 224) and chip.arrays["DEM"].dtype == np.float32
    for m in MODALITIES:
        assert chip.masks[m].dtype == np.bool_ and chip.masks[m].shape == (224, 224)
        assert chip.masks[m].all() and np.isfinite(chip.arrays[m]).all()
    assert chip.scl is not None and chip.scl.dtype == np.uint8 and chip.scl.shape == (224, 224)
    p = chip.provenance["S2L2A"]
    assert p.item_ids == tuple(exp["s2_ids"]) and p.datetimes == (exp["s2_datetime"],)
    assert p.processing_baselines == (exp["s2_baseline"],) and p.offset_removed is True and p.offsets_dn == (1000,)
    assert p.cloud_fraction == pytest.approx(exp["chip_cloud_fraction"], abs=1e-6)
    assert p.nodata_fraction == 0.0 and p.bands == S2_BANDS and p.provider == "local"
    assert chip.provenance["S1RTC"].item_ids == (exp["s1_id"],)
    assert chip.provenance["DEM"].item_ids == tuple(exp["dem_ids"])
    assert chip.nbytes == sum(a.nbytes for a in chip.arrays.values()) + sum(
        m.nbytes for m in chip.masks.values()) + chip.scl.nbytes
    assert chip.provider == "local (items.json)"
    rgb = chip.rgb()
    assert rgb is not None and rgb.shape == (3, 224, 224) and rgb.dtype == np.uint8 and rgb.max() > 0


def test_s2_values_equal_the_source_minus_the_offset(fixture_catalog: Any, local_settings: Settings) -> None:
    """10 m bands are the source DN exactly (offset removed, clipped at 0); 20 and 60 m bands
    are bilinear-interpolated, so they stay within the range of their source neighbourhood."""
    fx = fixture_catalog
    chip = _read(fx, "clear", local_settings)
    iid = fx.catalog.expected["clear"]["s2_ids"][0]
    g = chip.grid
    for i, b in enumerate(S2_BANDS):
        if S2_RESOLUTION[b] == 10:
            src = _source_on_grid(fx, iid, b, g).astype(np.float32)
            np.testing.assert_array_equal(chip.arrays["S2L2A"][i], np.maximum(src - 1000, 0), err_msg=b)
        else:
            path = _local_file(fx, fx.catalog.item(iid)["assets"][b]["href"])
            with rasterio.open(path) as ds:
                a = ds.read(1).astype(np.float32) - 1000
            arr = chip.arrays["S2L2A"][i]
            assert a.min() - 1e-3 <= arr.min() and arr.max() <= a.max() + 1e-3, b


def test_offset_follows_the_processing_baseline(fixture_catalog: Any, local_settings: Settings) -> None:
    """The clear scenario has older 04.00 and 02.14 scenes: 04.00 loses 1000 DN, 02.14 nothing."""
    fx = fixture_catalog
    facts = fx.catalog.item_facts
    for when, baseline, offset in ((("2022-04-01", "2022-04-30"), "04.00", 1000),
                                   (("2021-08-01", "2021-08-31"), "02.14", 0)):
        chip = _quiet(_read, fx, "clear", local_settings, when=when)
        p = chip.provenance["S2L2A"]
        (iid,) = p.item_ids
        assert facts[iid]["baseline"] == baseline and p.processing_baselines == (baseline,)
        assert p.offsets_dn == (offset,) and p.offset_removed is (offset > 0)
        src = _source_on_grid(fx, iid, "B04", chip.grid).astype(np.float32)
        np.testing.assert_array_equal(chip.arrays["S2L2A"][S2_BANDS.index("B04")], np.maximum(src - offset, 0))


def test_s2_offset_rule() -> None:
    import pystac

    def item(b: str | None, dt: str = "2024-07-01T00:00:00Z") -> pystac.Item:
        props: dict[str, Any] = {"datetime": dt}
        if b is not None:
            props["s2:processing_baseline"] = b
        return pystac.Item.from_dict({"type": "Feature", "stac_version": "1.0.0", "id": "x", "geometry": None,
                                      "properties": props, "links": [], "assets": {}})

    assert [s2_offset(item(b)) for b in ("02.14", "03.01", "04.00", "05.10", "05.11")] == [0, 0, 1000, 1000, 1000]
    # baseline decides, not the date: an old scene reprocessed to 05.00 carries the offset
    assert s2_offset(item("05.00", "2018-05-01T00:00:00Z")) == 1000
    assert s2_offset(item("02.12", "2023-05-01T00:00:00Z")) == 0
    # no baseline at all: the date rule, with a warning in the log
    assert s2_offset(item(None, "2021-01-01T00:00:00Z")) == 0 and s2_offset(item(None)) == 1000


def test_s1_is_db_of_the_linear_source(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    chip = _read(fx, "clear", local_settings)
    iid = fx.catalog.expected["clear"]["s1_id"]
    for i, pol in enumerate(S1_BANDS):
        lin = _source_on_grid(fx, iid, pol, chip.grid).astype(np.float64)
        assert (lin != S1_NODATA).all()
        db = 10 * np.log10(np.maximum(lin, 1e-6))
        assert np.abs(chip.arrays["S1RTC"][i] - db).max() < 1e-4, pol
    assert chip.provenance["S1RTC"].units.startswith("dB")
    assert chip.provenance["S1RTC"].time_offset_days == pytest.approx(2.29, abs=0.01)
    assert -30 < float(np.median(chip.arrays["S1RTC"][1])) < 0


def test_dem_is_read_from_the_4326_item(fixture_catalog: Any, local_settings: Settings) -> None:
    from pyproj import Transformer

    fx = fixture_catalog
    chip = _read(fx, "clear", local_settings)
    g = chip.grid
    assert chip.provenance["DEM"].source_crs == ("EPSG:4326",)
    rr, cc = np.mgrid[0:g.height, 0:g.width]
    lon, lat = Transformer.from_crs(g.crs, "EPSG:4326", always_xy=True).transform(
        g.bounds[0] + (cc + 0.5) * g.resolution, g.bounds[3] - (rr + 0.5) * g.resolution)
    assert np.abs(chip.arrays["DEM"][0] - fixture_elevation(lon, lat)).max() < 0.2


def test_tile_edge_chip_is_mosaicked(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    exp = fx.catalog.expected["tile_edge"]
    chip = _read(fx, "tile_edge", local_settings)
    p = chip.provenance["S2L2A"]
    assert sorted(p.item_ids) == sorted(exp["s2_ids"]) and len(p.item_ids) == 2
    assert p.source_crs == ("EPSG:32618", "EPSG:32618")  # one item has proj:epsg, the other proj:code
    facts = fx.catalog.item_facts
    assert {facts[i]["proj"] for i in p.item_ids} == {"proj:epsg", "proj:code"}
    assert chip.masks["S2L2A"].all() and np.isfinite(chip.arrays["S2L2A"]).all() and (chip.scl != 0).all()
    assert p.nodata_fraction == 0.0
    # each item alone covers about half: both halves came from somewhere
    b04 = chip.arrays["S2L2A"][S2_BANDS.index("B04")]
    assert b04[:, :20].mean() > 0 and b04[:, -20:].mean() > 0
    # the DEM is split across two tiles too, and seamless
    assert chip.provenance["DEM"].item_ids == tuple(exp["dem_ids"]) and chip.masks["DEM"].all()
    assert np.abs(np.diff(chip.arrays["DEM"][0], axis=1)).max() < 5.0


def test_no_s1_is_flagged_not_fatal(fixture_catalog: Any, local_settings: Settings) -> None:
    with pytest.warns(MissingModalityWarning, match="S1RTC unavailable"):
        chip = _read(fixture_catalog, "no_s1", local_settings)
    assert chip.missing == ("S1RTC",) and "S1RTC" not in chip.arrays and "S1RTC" not in chip.provenance
    assert "s1_window_days" in chip.notes["S1RTC"]
    assert set(chip.arrays) == {"S2L2A", "DEM"}
    md = chip.metadata()
    assert md["missing"] == ["S1RTC"] and md["modalities"] == ["S2L2A", "DEM"]


def test_no_dem_is_flagged_not_fatal(fixture_catalog: Any, local_settings: Settings) -> None:
    with pytest.warns(MissingModalityWarning, match="DEM unavailable"):
        chip = _read(fixture_catalog, "no_dem", local_settings)
    assert chip.missing == ("DEM",) and set(chip.arrays) == {"S2L2A", "S1RTC"}
    assert "cop-dem-glo-30" in chip.notes["DEM"]


def test_mostly_nodata_chip_is_rejected_never_zero_filled(fixture_catalog: Any, local_settings: Settings) -> None:
    with pytest.raises(ChipNodataError, match="covers enough of this chip"):
        _read(fixture_catalog, "mostly_nodata", local_settings)
    # accepted by the scene choice (max_nodata=1), then rejected on the chip's valid fraction
    s = local_settings.replace(max_nodata=1.0)
    with pytest.raises(ChipNodataError, match=r"only 2[0-9]% of the chip has valid Sentinel-2 data.*"
                                              r"`min_valid_fraction`"):
        _read(fixture_catalog, "mostly_nodata", s)
    # and with a low enough threshold the chip comes back with a mask and NaN, never zeros
    chip = _quiet(_read, fixture_catalog, "mostly_nodata", s.replace(min_valid_fraction=0.1))
    m = chip.masks["S2L2A"]
    assert 0.15 < m.mean() < 0.35
    assert np.isnan(chip.arrays["S2L2A"][:, ~m]).all() and np.isfinite(chip.arrays["S2L2A"][:, m]).all()
    assert chip.provenance["S2L2A"].nodata_fraction == pytest.approx(1 - m.mean())


def test_all_cloudy_is_no_scene(fixture_catalog: Any, local_settings: Settings) -> None:
    with pytest.raises(NoSceneError, match="raise `max_cloud`"):
        _read(fixture_catalog, "all_cloudy", local_settings)


def test_bad_when(fixture_catalog: Any, local_settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match="reversed"):
        _read(fixture_catalog, "clear", local_settings, when="2024-07-31/2024-05-01")
    with pytest.raises(InvalidInputError, match="future"):
        _read(fixture_catalog, "clear", local_settings, when="2999-01-01")


# ----------------------------------------------------------------------------------------
# Faults at the COG server
# ----------------------------------------------------------------------------------------
def test_cog_404_is_a_chip_error_naming_asset_and_host(fixture_catalog: Any, local_settings: Settings,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.fail(404, "*/sentinel-2-l2a/*/B08.tif", times=None)
    with caplog.at_level(logging.DEBUG), pytest.raises(ChipError) as info:
        _read(fx, "clear", local_settings)
    msg = str(info.value)
    assert "asset 'B08'" in msg and fx.catalog.expected["clear"]["s2_ids"][0] in msg
    assert "127.0.0.1" in msg and "404" in msg and "missing on the server" in msg
    assert SECRET not in msg and SECRET not in _library_log(caplog)


def test_clear_gdal_http_cache(fixture_catalog: Any, local_settings: Settings) -> None:
    """A URL GDAL has read is served from its cache (no request) until the cache is cleared."""
    from terramind_nyc.imagery.reader import clear_gdal_http_cache

    fx = fixture_catalog
    href = fx.catalog.item(fx.catalog.expected["no_dem"]["s2_ids"][0])["assets"]["B03"]["href"]
    token = uuid.uuid4().hex
    href += f"?t={token}"

    def read() -> int:
        # count only this URL's requests: reads abandoned by earlier tests may still be running
        fx.cog_server.reset()
        with rasterio.Env(**gdal_options(local_settings)), rasterio.open(href) as ds:
            ds.read(1)
        return sum(1 for r in fx.cog_server.requests if token in r.query)

    assert read() > 0 and read() == 0
    assert clear_gdal_http_cache() is True
    assert read() > 0


def test_cog_404_is_forgotten_once_the_server_recovers(fixture_catalog: Any, local_settings: Settings) -> None:
    """GDAL caches a failed open per URL; the reader clears it, so a retry asks the server again."""
    fx = fixture_catalog
    cat = _fresh(local_settings)
    fx.cog_server.faults.fail(404, "*/sentinel-2-l2a/*/B03.tif", times=None)
    with pytest.raises(ChipError):
        _read(fx, "clear", local_settings, catalog=cat)
    fx.cog_server.faults.clear()
    chip = _read(fx, "clear", local_settings, catalog=cat)  # the same URLs
    assert chip.masks["S2L2A"].all()


def test_truncated_cog_is_a_chip_error(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.truncate("*/sentinel-2-l2a/*/B02.tif", nbytes=3000)
    with pytest.raises(ChipError, match=r"asset 'B02'.* failed") as info:
        _read(fx, "clear", local_settings)
    assert SECRET not in str(info.value)
    fx.cog_server.faults.clear()
    fx.cog_server.faults.truncate("*/sentinel-2-l2a/*/B02.tif", nbytes=20000, short_file=True)
    with pytest.raises(ChipError, match=r"asset 'B02'"):
        _read(fx, "clear", local_settings)


def test_missing_asset_key_is_a_chip_error(fixture_catalog: Any, tmp_path: Path) -> None:
    fx = fixture_catalog
    items = fx.catalog.items()
    target = fx.catalog.expected["clear"]["s2_ids"][0]
    for it in items:
        if it["id"] == target:
            del it["assets"]["B8A"]
    p = tmp_path / "items.json"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    s = Settings(catalog_provider="local", catalog_path=str(p), signer="none", cache_enabled=False)
    with pytest.raises(ChipError, match=rf"S2L2A item {target} has no asset 'B8A'"):
        _read(fx, "clear", s)


def test_cog_transient_errors_are_retried(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.fail(503, "*/sentinel-2-l2a/*/B11.tif", times=2)
    fx.cog_server.faults.fail(429, "*/sentinel-1-rtc/*/vv.tif", times=1, retry_after=0)
    token = uuid.uuid4().hex
    chip = _read(fx, "clear", local_settings, catalog=_fresh(local_settings, token))
    assert chip.missing == () and chip.masks["S2L2A"].all()
    statuses = [r.status for r in fx.cog_server.requests if r.path.endswith("/B11.tif") and token in r.query]
    assert statuses[:2] == [503, 503] and statuses[-1] in (200, 206)


def test_cog_hang_ends_at_the_deadline(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.hang("*/sentinel-2-l2a/*/B05.tif")
    s = local_settings.replace(http_timeout_s=30.0)  # only the deadline can end it
    t = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=r"reading asset 'B05'.* at 127\.0\.0\.1:\d+ .*2 s deadline"):
        _read(fx, "clear", s, deadline=Deadline(2.0))
    assert time.monotonic() - t < 2.0 + 1.0
    # the hung read still holds a thread; the next request gets a fresh pool and is not slowed
    fx.cog_server.faults.clear()
    t = time.monotonic()
    assert _read(fx, "clear", s, deadline=Deadline(5.0)).masks["S2L2A"].all()
    assert time.monotonic() - t < 3.0
    _settle(fx.cog_server)


def test_s1_and_dem_read_failures_are_not_fatal(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.fail(404, "*/sentinel-1-rtc/*/vh.tif", times=None)
    fx.cog_server.faults.truncate("*/cop-dem-glo-30/*", nbytes=500)
    with pytest.warns(MissingModalityWarning) as rec:
        chip = _read(fx, "clear", local_settings)
    assert chip.missing == ("S1RTC", "DEM") and set(chip.arrays) == {"S2L2A"}
    assert "asset 'vh'" in chip.notes["S1RTC"] and "404" in chip.notes["S1RTC"]
    assert "asset 'data'" in chip.notes["DEM"] and "truncated" in chip.notes["DEM"]
    assert {str(w.message).split()[0] for w in rec if w.category is MissingModalityWarning} == {"S1RTC", "DEM"}
    assert SECRET not in json.dumps(chip.metadata())


def test_s1_hang_gives_a_chip_without_s1_at_the_deadline(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.hang("*/sentinel-1-rtc/*")
    s = local_settings.replace(http_timeout_s=30.0)
    t = time.monotonic()
    with pytest.warns(MissingModalityWarning, match="deadline"):
        chip = _read(fx, "clear", s, deadline=Deadline(2.5))
    assert time.monotonic() - t < 2.5 + 1.0
    assert chip.missing == ("S1RTC",) and chip.masks["S2L2A"].all() and "DEM" in chip.arrays
    _settle(fx.cog_server)


# ----------------------------------------------------------------------------------------
# Provenance, requests, providers
# ----------------------------------------------------------------------------------------
def test_metadata_is_json_and_token_free(fixture_catalog: Any, local_settings: Settings,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        chip = _read(fixture_catalog, "tile_edge", local_settings)
    md = chip.metadata()
    text = json.dumps(md)  # plain JSON types only
    assert json.loads(text) == md
    assert SECRET not in text and "http" not in text and str(fixture_catalog.catalog.root) not in text
    assert SECRET not in _library_log(caplog) and "127.0.0.1" in _library_log(caplog)
    assert set(md) >= {"grid", "window", "modalities", "bands", "valid_fraction", "provenance", "missing", "notes"}
    assert md["bands"]["S2L2A"] == list(S2_BANDS)
    assert md["window"] == ["2024-05-01T00:00:00Z", "2024-07-31T23:59:59Z"]
    for m, p in md["provenance"].items():
        assert p["modality"] == m and p["item_ids"] and all(d.endswith("Z") for d in p["datetimes"])


def test_requests_are_ranged_reads_of_the_assets_only(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    cat = fx.catalog
    exp = cat.expected["tile_edge"]
    token = uuid.uuid4().hex
    _read(fx, "tile_edge", local_settings, catalog=_fresh(local_settings, token))
    # this request's own (a read abandoned by an earlier test may still be retrying)
    recs = [r for r in fx.cog_server.requests if token in r.query]
    # exactly the assets needed: the SCL of each candidate, the 12 bands of the two chosen tiles,
    # vv and vh, the two DEM tiles; no directory listing, no sidecar (.aux.xml, .ovr, .msk) probe
    def path(iid: str, key: str) -> str:
        return "/" + cat.item(iid)["assets"][key]["href"].split("/", 3)[3]

    want = {path(i, "SCL") for i in exp["s2_candidates"]} | {path(i, b) for i in exp["s2_ids"] for b in S2_BANDS}
    want |= {path(exp["s1_id"], b) for b in S1_BANDS} | {path(i, "data") for i in exp["dem_ids"]}
    assert {r.path for r in recs} == want
    assert all(r.method in ("GET", "HEAD") and r.status in (200, 206) for r in recs)
    assert all(r.range for r in recs if r.method == "GET")  # never a whole-file download
    assert len(recs) <= 3 * len(want)  # HEAD, header, data


def test_gdal_options() -> None:
    o = gdal_options(Settings(http_timeout_s=2.5, http_retries=4, http_backoff_s=0.25))
    assert o["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR" and ".tif" in o["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"]
    assert o["GDAL_HTTP_TIMEOUT"] == "3" and o["GDAL_HTTP_MAX_RETRY"] == "4" and o["GDAL_HTTP_RETRY_DELAY"] == "0.25"
    assert {"429", "500", "502", "503", "504"} <= set(o["GDAL_HTTP_RETRY_CODES"].split(","))
    import os

    assert "GDAL_HTTP_TIMEOUT" not in os.environ  # scoped in rasterio.Env, never the process environment


@pytest.mark.slow
def test_sequential_and_parallel_readers_agree(fixture_catalog: Any, local_settings: Settings) -> None:
    a = _read(fixture_catalog, "tile_edge", local_settings)
    b = _read(fixture_catalog, "tile_edge", local_settings.replace(io_threads=1))
    for m in MODALITIES:
        np.testing.assert_array_equal(a.arrays[m], b.arrays[m])
        np.testing.assert_array_equal(a.masks[m], b.masks[m])
    assert a.provenance == b.provenance


@pytest.mark.parametrize("scenario", ["cloudy_vs_clear", "tile_edge", "no_s1"])
def test_local_and_stac_api_give_the_same_chip(fixture_catalog: Any, local_settings: Settings,
                                               stac_settings: Settings, scenario: str) -> None:
    a = _quiet(_read, fixture_catalog, scenario, local_settings)
    b = _quiet(_read, fixture_catalog, scenario, stac_settings)
    assert a.missing == b.missing
    for m in a.arrays:
        assert a.provenance[m].item_ids == b.provenance[m].item_ids
        np.testing.assert_array_equal(a.arrays[m], b.arrays[m])
    assert b.provenance["S2L2A"].provider == "stac-api"
    assert b.provenance["S2L2A"].item_ids == tuple(fixture_catalog.catalog.expected[scenario]["s2_ids"])


@pytest.mark.slow
def test_reader_matches_odc_stac(fixture_catalog: Any, local_settings: Settings) -> None:
    """The hand-written reader gives odc-stac's pixels: bit for bit for S2 (10/20/60 m), SCL and S1,
    within a centimetre for the 4326 DEM (reprojected)."""
    odc_stac = pytest.importorskip("odc.stac")
    import pystac

    from terramind_nyc.imagery.reader import _read_asset

    fx = fixture_catalog
    exp = fx.catalog.expected["tile_edge"]
    g = fx.catalog.grid("tile_edge")
    for iid, keys, modality in [(exp["s2_ids"][0], ("B02", "B05", "B09", "SCL"), "S2L2A"),
                                (exp["s2_ids"][1], ("B04", "B8A"), "S2L2A"),
                                (exp["s1_id"], S1_BANDS, "S1RTC"),
                                (exp["dem_ids"][1], DEM_BANDS, "DEM")]:
        item = pystac.Item.from_dict(fx.catalog.item(iid))
        for key in keys:
            scl = key == "SCL"
            mine = _read_asset(item, key, g, modality=modality, resampling="nearest" if scl else "bilinear",
                               settings=local_settings, dtype="uint8" if scl else "float32")
            with rasterio.Env(**gdal_options(local_settings)):
                ds = odc_stac.load([item], bands=[key], geobox=g.geobox, resampling="nearest" if scl else "bilinear",
                                   dtype="uint8" if scl else "float32", groupby="id")
            theirs = ds[key].values[0]
            if scl:
                np.testing.assert_array_equal(mine, theirs, err_msg=key)
                continue
            # odc-stac keeps the source nodata value (0, -32768) in float output; the reader uses NaN
            nodata = item.assets[key].extra_fields.get("raster:bands", [{}])[0].get("nodata")
            theirs_bad = np.isnan(theirs) if nodata is None else (np.isnan(theirs) | (theirs == nodata))
            np.testing.assert_array_equal(np.isnan(mine), theirs_bad, err_msg=key)
            if modality == "DEM":
                # a reprojection: odc-stac warps only the overlapping window, so GDAL's approximate
                # transformer (0.125 px error threshold) interpolates over another grid; millimetres
                np.testing.assert_allclose(mine[~theirs_bad], theirs[~theirs_bad], rtol=0, atol=0.01, err_msg=key)
            else:
                np.testing.assert_array_equal(mine[~theirs_bad], theirs[~theirs_bad], err_msg=key)
            assert (~theirs_bad).sum() > 1000, key


# ----------------------------------------------------------------------------------------
# The real chip
# ----------------------------------------------------------------------------------------
def test_real_chip_equals_its_source(real_chip: Any) -> None:
    rc = real_chip
    s = rc.settings(cache_enabled=False, signer="none")
    chip = read_chip(rc.grid, when=rc.when, settings=s, catalog=_fresh(s))
    assert chip.missing == ()
    p = chip.provenance["S2L2A"]
    assert p.item_ids == (rc.s2_id,) and p.processing_baselines == ("04.00",) and p.offset_removed is True
    # S2 exactly: the source DN with the 04.00 offset removed and clipped at 0
    np.testing.assert_array_equal(chip.arrays["S2L2A"], np.maximum(rc.s2_dn.astype(np.float32) - 1000, 0))
    assert chip.masks["S2L2A"].all()
    # S1 back in dB within 1e-4
    assert np.abs(chip.arrays["S1RTC"] - rc.s1_db).max() < 1e-4
    # DEM within the interpolation error of its 4326 round trip
    assert np.abs(chip.arrays["DEM"][0] - rc.dem).max() <= rc.dem_roundtrip_error_m + 1e-3
    assert chip.provenance["DEM"].source_crs == ("EPSG:4326",)
    assert chip.provenance["S1RTC"].source_crs == (rc.grid.crs,)


def test_window_default_and_settings_from_env(fixture_catalog: Any, local_settings: Settings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """settings=None reads TERRAMIND_NYC_* (here: the local fixture catalog, plain URLs; the
    scenario is one that test_testing.py does not read over HTTP, whose request-log checks need
    URLs GDAL has not cached)."""
    cat = fixture_catalog.catalog
    for k, v in {"CATALOG_PROVIDER": "local", "CATALOG_PATH": str(cat.items_path), "SIGNER": "none",
                 "CACHE_ENABLED": "false"}.items():
        monkeypatch.setenv(f"TERRAMIND_NYC_{k}", v)
    start, end = resolve_when(cat.when("no_dem"), Settings())
    with pytest.warns(MissingModalityWarning, match="DEM"):
        chip = read_chip(cat.grid("no_dem"), when=(start, end))
    assert chip.provenance["S2L2A"].catalog == "local (items.json)"
    assert chip.window == (iso_z(start), iso_z(end))
