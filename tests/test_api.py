"""fetch / fetch_many / fetch_riprap / Result with a fake imagery reader and a fake model.

The fakes keep these tests independent of the catalog and the network; the end-to-end path
with the real reader and a tiny TerraMind is in tests/test_selfcheck.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import CLASSES, ESB, FakeReader, fakes  # noqa: F401 - fakes is a fixture

from terramind_nyc import (
    CatalogError,
    InvalidInputError,
    InvalidLocationError,
    MissingModalityWarning,
    Settings,
    fetch,
    fetch_many,
    fetch_riprap,
)
from terramind_nyc.cache import clear_caches


def test_fetch_result_figures_and_views(fakes):
    reader, runtime = fakes
    r = fetch(*ESB)
    assert r.grid.shape == (224, 224)
    assert sum(r.lulc_fractions.values()) == pytest.approx(1.0)
    assert 0.0 <= r.building_density <= 1.0
    assert r.nodata_fraction == pytest.approx(4 / 224**2)
    assert r.class_names == CLASSES
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert "probabilities" not in d and d["provenance"]["checkpoint"]["sha256"] == "ab" * 32
    rip = r.to_riprap()
    json.dumps(rip, allow_nan=False)
    assert rip["ok"] is True
    assert sum(rip["class_fractions"].values()) == pytest.approx(100.0, abs=0.05)
    assert rip["pct_buildings"] == pytest.approx(100 * r.building_density, abs=0.01)
    assert rip["class_labels"] == list(CLASSES)
    assert rip["imagery"]["s2_acquired_iso"].startswith("2026-11-01")
    assert rip["bounds_4326"][0] < ESB[1] < rip["bounds_4326"][2]
    assert r.lulc_map.shape == (224, 224) and r.lulc_map[0, 0] == 255


def test_warm_fetch_hits_result_cache_and_never_runs_model(fakes):
    reader, runtime = fakes
    a = fetch(*ESB)
    b = fetch(*ESB)
    assert runtime.calls == 1 and reader.calls == 1
    assert b.cached and not a.cached
    assert b.lulc_fractions == a.lulc_fractions


def test_points_5m_apart_share_answer_only_when_they_snap_to_the_same_grid(fakes):
    reader, runtime = fakes
    from terramind_nyc.grid import chip_grid

    base = chip_grid(*ESB)
    # a point 5 m east that snaps to the same lattice vertex, and one 5 m east across a vertex
    lat, lon = ESB
    same, other = None, None
    for k in range(1, 400):
        cand = (lat, lon + k * 1e-6)
        g = chip_grid(*cand)
        if g.transform == base.transform and same is None and k > 10:
            same = cand
        if g.transform != base.transform and other is None:
            other = cand
        if same and other:
            break
    assert same and other
    r0 = fetch(*ESB)
    r_same = fetch(*same)
    assert r_same.cached and r_same.building_density == r0.building_density
    r_other = fetch(*other)
    assert not r_other.cached
    assert r_other.grid.transform != r0.grid.transform


def test_radius_keys_on_point_and_restricts_area(fakes):
    r_all = fetch(*ESB)
    r_400 = fetch(*ESB, radius_m=400)
    assert not r_400.cached
    assert r_400.summary_area.sum() == pytest.approx(np.pi * 40**2, rel=0.05)
    assert r_400.building_density != r_all.building_density


def test_cache_disabled_runs_each_time(fakes):
    reader, runtime = fakes
    s = Settings(cache_enabled=False)
    fetch(*ESB, settings=s)
    fetch(*ESB, settings=s)
    assert runtime.calls == 2 and reader.calls == 2


def test_missing_modality_warns_and_is_recorded(monkeypatch, fakes):
    reader, runtime = fakes
    fakes.swap_reader(FakeReader(missing=("S1RTC",)))
    with pytest.warns(MissingModalityWarning):
        r = fetch(*ESB, settings=Settings(cache_enabled=False))
    assert r.provenance.modalities_missing == ("S1RTC",)
    assert "S1RTC" not in r.provenance.modalities_used
    assert any("S1RTC" in w for w in r.warnings)


def test_old_scene_warns_stale_and_is_noted(fakes):
    from terramind_nyc import StaleSceneWarning

    reader, _ = fakes
    reader.s2_datetime = "2024-03-01T15:40:00+00:00"
    with pytest.warns(StaleSceneWarning, match="older than"):
        r = fetch(*ESB, when="2024-01-01/2024-07-31", settings=Settings(stale_after_days=60))
    assert any("older than" in w for w in r.warnings)
    clear_caches()
    reader.s2_datetime = "2024-07-20T15:40:00+00:00"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleSceneWarning)
        fetch(*ESB, when="2024-01-01/2024-07-31")


def test_cache_hit_reports_the_requested_point(fakes):
    a = fetch(40.74840, -73.98570)
    b = fetch(40.74841, -73.98570)  # same snapped grid: same answer, but its own coordinates
    assert b.cached and (b.lat, b.lon) == (40.74841, -73.98570)
    assert b.building_density == a.building_density


def test_missing_modality_warns_once_per_fetch_also_from_the_chip_cache(monkeypatch, fakes):
    import warnings

    fakes.swap_reader(FakeReader(missing=("DEM",)))
    for radius in (None, 300.0):  # the second call reads the chip from the chip cache
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fetch(*ESB, radius_m=radius)
        assert sum(issubclass(w.category, MissingModalityWarning) for w in caught) == 1


@pytest.mark.parametrize("lat, lon", [(float("nan"), -73.98), (40.7, float("inf")), (None, -73.9),
                                      ("40.7", "x"), (-73.9857, 40.7484), (51.5, -0.12)])
def test_bad_coordinates(fakes, lat, lon):
    with pytest.raises(InvalidLocationError):
        fetch(lat, lon)


def test_swapped_coordinates_say_outside(fakes):
    with pytest.raises(InvalidLocationError, match="(?i)outside|range"):
        fetch(-73.9857, 40.7484)


@pytest.mark.parametrize("kw", [{"size_m": 0}, {"size_m": -5}, {"size_m": 1e7}, {"size_m": float("nan")},
                                {"radius_m": 0}, {"radius_m": 5000, "size_m": 2240}, {"size_m": "big"}])
def test_bad_sizes(fakes, kw):
    with pytest.raises(InvalidInputError):
        fetch(*ESB, **kw)


def test_radius_larger_than_default_window_grows_it(fakes):
    r = fetch(*ESB, radius_m=1500)
    assert r.grid.width >= 300


def test_larger_window_is_tiled_in_one_call(fakes):
    reader, runtime = fakes
    r = fetch(*ESB, size_m=4000)
    assert r.grid.shape == (400, 400) and runtime.calls == 1


def test_fetch_riprap_never_raises(monkeypatch, fakes):
    out = fetch_riprap(51.5, -0.12)
    assert out["ok"] is False and "skipped" in out
    out = fetch_riprap(float("nan"), 1)
    assert out["ok"] is False and "err" in out and "skipped" not in out  # a bad value is an error, not out of scope
    fakes.swap_reader(FakeReader(fail=CatalogError("STAC search failed: 503 from test")))
    out = fetch_riprap(*ESB, settings=Settings(cache_enabled=False))
    assert out == {"ok": False, "err": "CatalogError: STAC search failed: 503 from test",
                   "error_type": "CatalogError", "elapsed_s": out["elapsed_s"]}
    fakes.swap_reader(FakeReader(fail=KeyError("boom")))
    out = fetch_riprap(*ESB, settings=Settings(cache_enabled=False))
    assert out["ok"] is False and "KeyError" in out["err"]
    fakes.swap_reader(fakes[0])  # failures were not cached: the next call succeeds
    ok = fetch_riprap(*ESB)
    assert ok["ok"] is True


def test_fetch_many_order_errors_and_shared_windows(fakes):
    reader, runtime = fakes
    reader.corner_invalid = False  # window-relative nodata would differ between shared and own windows
    pts = [(40.7484, -73.9857), ("bad", 1), (40.7490, -73.9850), (40.7484, -73.9857), (51.5, 0.0),
           {"lat": 40.7500, "lon": -73.9840}, (40.60, -74.10)]
    items = fetch_many(pts, progress=False)
    assert [it.index for it in items] == list(range(len(pts)))
    assert [it.ok for it in items] == [True, False, True, True, False, True, True]
    assert isinstance(items[1].error, InvalidLocationError)
    # four nearby points (one duplicate) share a window; the far one is its own
    assert reader.calls == 2 and runtime.calls == 2
    assert items[0].result.lulc_fractions == items[3].result.lulc_fractions
    json.dumps([it.to_dict() for it in items], allow_nan=False)
    # a point summarised from the shared window matches a standalone fetch on the same data field
    single = fetch(40.7490, -73.9850, settings=Settings(cache_enabled=False))
    assert items[2].result.grid == single.grid
    assert items[2].result.building_density == pytest.approx(single.building_density, abs=1e-6)


def test_fetch_many_empty_and_large(fakes):
    assert fetch_many([], progress=False) == []
    rng = np.random.default_rng(0)
    pts = [(40.75 + d, -73.98 + e) for d, e in rng.uniform(-0.01, 0.01, size=(10_000, 2))]
    pts[5] = (float("nan"), 0)
    items = fetch_many(pts, progress=False, radius_m=50)
    assert len(items) == 10_000 and not items[5].ok and sum(it.ok for it in items) == 9_999
    reader, runtime = fakes
    assert reader.calls < 50


def test_threads_share_one_answer(fakes):
    reader, runtime = fakes
    from concurrent.futures import ThreadPoolExecutor

    pts = [ESB, (40.75, -73.99), (40.70, -74.0)] * 10
    with ThreadPoolExecutor(8) as pool:
        res = list(pool.map(lambda p: fetch(*p).building_density, pts))
    serial = [fetch(*p).building_density for p in pts]
    assert res == serial
    assert runtime.calls == 3  # single flight per key
