"""imagery/reader.py: read_chip end to end: shapes, mosaics, optional modalities, faults on the way,
providers, requests, the real chip."""

from __future__ import annotations

import json
import time
import uuid
import warnings
from typing import Any

import numpy as np
import pytest
from imagery.helpers import SECRET, fresh, quiet, read_scenario, settle

from terramind_nyc.dates import iso_z, resolve_when
from terramind_nyc.deadline import Deadline
from terramind_nyc.errors import (
    ChipNodataError,
    DeadlineExceededError,
    InvalidInputError,
    MissingModalityWarning,
    NoSceneError,
)
from terramind_nyc.imagery.reader import read_chip
from terramind_nyc.sensors import DEM_BANDS, MODALITIES, S1_BANDS, S2_BANDS
from terramind_nyc.settings import Settings
from terramind_nyc.testing import S2_BANDS as FIXTURE_S2_BANDS


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
        chip = read_scenario(fx, "clear", local_settings)
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


def test_tile_edge_chip_is_mosaicked(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    exp = fx.catalog.expected["tile_edge"]
    chip = read_scenario(fx, "tile_edge", local_settings)
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
        chip = read_scenario(fixture_catalog, "no_s1", local_settings)
    assert chip.missing == ("S1RTC",) and "S1RTC" not in chip.arrays and "S1RTC" not in chip.provenance
    assert "s1_window_days" in chip.notes["S1RTC"]
    assert chip.transient == ()  # absent from the catalog: a fact, cached like any chip
    assert set(chip.arrays) == {"S2L2A", "DEM"}
    md = chip.metadata()
    assert md["missing"] == ["S1RTC"] and md["modalities"] == ["S2L2A", "DEM"]


def test_no_dem_is_flagged_not_fatal(fixture_catalog: Any, local_settings: Settings) -> None:
    with pytest.warns(MissingModalityWarning, match="DEM unavailable"):
        chip = read_scenario(fixture_catalog, "no_dem", local_settings)
    assert chip.missing == ("DEM",) and set(chip.arrays) == {"S2L2A", "S1RTC"}
    assert "cop-dem-glo-30" in chip.notes["DEM"] and chip.transient == ()


def test_mostly_nodata_chip_is_rejected_never_zero_filled(fixture_catalog: Any, local_settings: Settings) -> None:
    with pytest.raises(ChipNodataError, match="covers enough of this chip"):
        read_scenario(fixture_catalog, "mostly_nodata", local_settings)
    # accepted by the scene choice (max_nodata=1), then rejected on the chip's valid fraction
    s = local_settings.replace(max_nodata=1.0)
    with pytest.raises(ChipNodataError, match=r"only 2[0-9]% of the chip has valid Sentinel-2 data.*"
                                              r"`min_valid_fraction`"):
        read_scenario(fixture_catalog, "mostly_nodata", s)
    # and with a low enough threshold the chip comes back with a mask and NaN, never zeros
    chip = quiet(read_scenario, fixture_catalog, "mostly_nodata", s.replace(min_valid_fraction=0.1))
    m = chip.masks["S2L2A"]
    assert 0.15 < m.mean() < 0.35
    assert np.isnan(chip.arrays["S2L2A"][:, ~m]).all() and np.isfinite(chip.arrays["S2L2A"][:, m]).all()
    assert chip.provenance["S2L2A"].nodata_fraction == pytest.approx(1 - m.mean())


def test_all_cloudy_is_no_scene(fixture_catalog: Any, local_settings: Settings) -> None:
    with pytest.raises(NoSceneError, match="raise `max_cloud`") as info:
        read_scenario(fixture_catalog, "all_cloudy", local_settings)
    assert info.value.reason == "cloud"


def test_bad_when(fixture_catalog: Any, local_settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match="reversed"):
        read_scenario(fixture_catalog, "clear", local_settings, when="2024-07-31/2024-05-01")
    with pytest.raises(InvalidInputError, match="future"):
        read_scenario(fixture_catalog, "clear", local_settings, when="2999-01-01")


def test_cog_hang_ends_at_the_deadline(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.hang("*/sentinel-2-l2a/*/B05.tif")
    s = local_settings.replace(http_timeout_s=30.0)  # only the deadline can end it
    t = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=r"reading asset 'B05'.* at 127\.0\.0\.1:\d+ .*2 s deadline"):
        read_scenario(fx, "clear", s, deadline=Deadline(2.0))
    assert time.monotonic() - t < 2.0 + 1.0
    # the hung read still holds a thread; the next request gets a fresh pool and is not slowed
    fx.cog_server.faults.clear()
    t = time.monotonic()
    assert read_scenario(fx, "clear", s, deadline=Deadline(5.0)).masks["S2L2A"].all()
    assert time.monotonic() - t < 3.0
    settle(fx.cog_server)


def test_s1_and_dem_read_failures_are_not_fatal(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.fail(404, "*/sentinel-1-rtc/*/vh.tif", times=None)
    fx.cog_server.faults.truncate("*/cop-dem-glo-30/*", nbytes=500)
    with pytest.warns(MissingModalityWarning) as rec:
        chip = read_scenario(fx, "clear", local_settings)
    assert chip.missing == ("S1RTC", "DEM") and set(chip.arrays) == {"S2L2A"}
    assert "asset 'vh'" in chip.notes["S1RTC"] and "404" in chip.notes["S1RTC"]
    assert "asset 'data'" in chip.notes["DEM"] and "truncated" in chip.notes["DEM"]
    assert chip.transient == ("S1RTC", "DEM")  # failures, not facts: never cached
    assert chip.metadata()["transient"] == ["S1RTC", "DEM"]
    assert {str(w.message).split()[0] for w in rec if w.category is MissingModalityWarning} == {"S1RTC", "DEM"}
    assert SECRET not in json.dumps(chip.metadata())


def test_s1_hang_gives_a_chip_without_s1_at_the_deadline(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.hang("*/sentinel-1-rtc/*")
    s = local_settings.replace(http_timeout_s=30.0)
    t = time.monotonic()
    with pytest.warns(MissingModalityWarning, match="deadline"):
        chip = read_scenario(fx, "clear", s, deadline=Deadline(2.5))
    assert time.monotonic() - t < 2.5 + 1.0
    assert chip.missing == ("S1RTC",) and chip.masks["S2L2A"].all() and "DEM" in chip.arrays
    assert chip.transient == ("S1RTC",)
    settle(fx.cog_server)


def test_requests_are_ranged_reads_of_the_assets_only(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    cat = fx.catalog
    exp = cat.expected["tile_edge"]
    token = uuid.uuid4().hex
    read_scenario(fx, "tile_edge", local_settings, catalog=fresh(local_settings, token))
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


@pytest.mark.slow
def test_sequential_and_parallel_readers_agree(fixture_catalog: Any, local_settings: Settings) -> None:
    a = read_scenario(fixture_catalog, "tile_edge", local_settings)
    b = read_scenario(fixture_catalog, "tile_edge", local_settings.replace(io_threads=1))
    for m in MODALITIES:
        np.testing.assert_array_equal(a.arrays[m], b.arrays[m])
        np.testing.assert_array_equal(a.masks[m], b.masks[m])
    assert a.provenance == b.provenance


@pytest.mark.parametrize("scenario", ["cloudy_vs_clear", "tile_edge", "no_s1"])
def test_local_and_stac_api_give_the_same_chip(fixture_catalog: Any, local_settings: Settings,
                                               stac_settings: Settings, scenario: str) -> None:
    a = quiet(read_scenario, fixture_catalog, scenario, local_settings)
    b = quiet(read_scenario, fixture_catalog, scenario, stac_settings)
    assert a.missing == b.missing
    for m in a.arrays:
        assert a.provenance[m].item_ids == b.provenance[m].item_ids
        np.testing.assert_array_equal(a.arrays[m], b.arrays[m])
    assert b.provenance["S2L2A"].provider == "stac-api"
    assert b.provenance["S2L2A"].item_ids == tuple(fixture_catalog.catalog.expected[scenario]["s2_ids"])


def test_real_chip_equals_its_source(real_chip: Any) -> None:
    rc = real_chip
    s = rc.settings(cache_enabled=False, signer="none")
    chip = read_chip(rc.grid, when=rc.when, settings=s, catalog=fresh(s))
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
