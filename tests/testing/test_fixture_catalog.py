"""The generated fixture catalog: valid STAC, realistic values, facts that match an independent read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling
from testing.helpers import grid_read, local_path

from terramind_nyc.grid import ChipGrid
from terramind_nyc.settings import Settings
from terramind_nyc.testing import (
    S1_NODATA,
    S2_BANDS,
    S2_OFFSET,
    S2_RESOLUTION,
    SCENARIOS,
    baseline_has_offset,
    chip_fractions,
    fixture_elevation,
)


def test_fixture_items_are_valid_stac(fixture_catalog: Any) -> None:
    import pystac

    cat = fixture_catalog.catalog
    items = cat.items()
    assert {it["collection"] for it in items} == {"sentinel-2-l2a", "sentinel-1-rtc", "cop-dem-glo-30"}
    for it in items:
        pystac.Item.from_dict(it)
        for a in it["assets"].values():
            assert local_path(cat, a["href"]).exists()
            assert "?" not in a["href"]
    s2 = [it for it in items if it["collection"] == "sentinel-2-l2a"]
    assert any("proj:epsg" in it["properties"] for it in s2) and any("proj:code" in it["properties"] for it in s2)
    assert {it["properties"]["s2:processing_baseline"] for it in s2} >= {"02.14", "04.00", "05.10"}
    for it in s2:
        assert set(it["assets"]) == {*S2_BANDS, "SCL"}
        assert 0 <= it["properties"]["eo:cloud_cover"] <= 100


def test_fixture_points_are_in_nyc_and_scenarios_complete(fixture_catalog: Any) -> None:
    from terramind_nyc.location import validate_location

    cat = fixture_catalog.catalog
    assert set(cat.points) == set(SCENARIOS) == set(cat.expected)
    for lat, lon in cat.points.values():
        validate_location(lat, lon)


def test_fixture_s2_values_and_offsets(fixture_catalog: Any) -> None:
    cat = fixture_catalog.catalog
    for it in cat.items():
        if it["collection"] != "sentinel-2-l2a":
            continue
        baseline = it["properties"]["s2:processing_baseline"]
        offset = S2_OFFSET if baseline_has_offset(baseline) else 0
        assert cat.item_facts[it["id"]]["offset"] == offset
        with rasterio.open(local_path(cat, it["assets"]["SCL"]["href"])) as ds:
            scl = ds.read(1)
            scl_bounds = ds.bounds
            assert ds.res == (20.0, 20.0) and ds.dtypes[0] == "uint8" and ds.nodata == 0
        assert set(np.unique(scl)) <= {0, 2, 3, 4, 5, 6, 7, 8, 9, 10}
        for b in ("B01", "B02", "B04", "B05", "B8A", "B09", "B12"):
            with rasterio.open(local_path(cat, it["assets"][b]["href"])) as ds:
                dn = ds.read(1)
                assert ds.res == (S2_RESOLUTION[b],) * 2 and ds.dtypes[0] == "uint16" and ds.nodata == 0
                assert ds.crs.to_epsg() == 32618 and tuple(ds.bounds) == pytest.approx(tuple(scl_bounds))
                assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
                assert ds.block_shapes[0] == (min(256, ds.height), min(256, ds.width)) or ds.block_shapes[0] == (256, 256)
            k = S2_RESOLUTION[b] // 20 if S2_RESOLUTION[b] >= 20 else 1
            if S2_RESOLUTION[b] >= 20:
                scl_b = scl[::k, ::k] if k > 1 else scl
                assert np.array_equal(dn == 0, scl_b == 0)  # nodata agrees across bands
            valid = dn[dn > 0].astype(np.int64)
            assert valid.size
            clear = valid[valid < 5000 + offset]
            assert clear.min() >= 1 + offset  # offset items never go below the offset
            refl = (np.median(clear) - offset) / 10000.0
            assert 0.0 < refl < 0.45, (it["id"], b, refl)


def test_fixture_s2_offset_is_the_only_difference_between_baselines(fixture_catalog: Any) -> None:
    cat = fixture_catalog.catalog
    ids = cat.expected["clear"]["s2_candidates"]
    med = {}
    for iid in ids:
        it = cat.item(iid)
        with rasterio.open(local_path(cat, it["assets"]["B04"]["href"])) as ds:
            med[it["properties"]["s2:processing_baseline"]] = float(np.median(ds.read(1)))
    # same ground, gains within 3 %: the 1000 DN offset dominates the difference
    assert med["05.10"] - med["02.14"] == pytest.approx(1000, abs=120)
    assert med["04.00"] - med["02.14"] == pytest.approx(1000, abs=120)


def test_fixture_s1_is_linear_power(fixture_catalog: Any) -> None:
    cat = fixture_catalog.catalog
    s1 = [it for it in cat.items() if it["collection"] == "sentinel-1-rtc"]
    assert s1
    for it in s1:
        assert it["properties"]["sat:orbit_state"] in ("ascending", "descending")
        for pol in ("vv", "vh"):
            with rasterio.open(local_path(cat, it["assets"][pol]["href"])) as ds:
                a = ds.read(1)
                assert ds.dtypes[0] == "float32" and ds.nodata == S1_NODATA and ds.res == (10.0, 10.0)
            valid = a[a != S1_NODATA]
            assert (a == S1_NODATA).any() and valid.size > 0.5 * a.size
            assert valid.min() > 0 and valid.max() < 20  # linear power, not dB
            db = 10 * np.log10(valid)
            assert (-30 < np.median(db) < -3), (it["id"], pol, np.median(db))
        # the nodata stripe lies outside the chip
        g = cat.grid(cat.item_facts[it["id"]]["scenario"])
        chip = grid_read(str(local_path(cat, it["assets"]["vv"]["href"])), g, resampling=Resampling.nearest,
                         nodata=S1_NODATA)
        assert (chip > 0).all()


def test_fixture_dem_is_4326_30m_and_matches_the_truth(fixture_catalog: Any) -> None:
    cat = fixture_catalog.catalog
    dems = [it for it in cat.items() if it["collection"] == "cop-dem-glo-30"]
    assert dems
    for it in dems:
        with rasterio.open(local_path(cat, it["assets"]["data"]["href"])) as ds:
            z = ds.read(1)
            assert ds.crs.to_epsg() == 4326 and ds.dtypes[0] == "float32"
            assert ds.res == pytest.approx((1 / 3600, 1 / 3600))
            # pixel centres on whole arc-seconds, as in Copernicus tiles
            assert (ds.transform.c * 3600 + 0.5) == pytest.approx(round(ds.transform.c * 3600 + 0.5), abs=1e-6)
            rows, cols = np.mgrid[0:ds.height:7, 0:ds.width:7]
            xs = ds.transform.c + (cols + 0.5) * ds.transform.a
            ys = ds.transform.f + (rows + 0.5) * ds.transform.e
        assert np.allclose(z[::7, ::7], fixture_elevation(xs, ys), atol=1e-3)
        assert 0 <= z.min() and z.max() < 200
    # bilinear onto a chip grid reproduces the analytic terrain closely
    g = cat.grid("clear")
    it = cat.item(cat.expected["clear"]["dem_ids"][0])
    chip = grid_read(str(local_path(cat, it["assets"]["data"]["href"])), g, resampling=Resampling.bilinear)
    rr, cc = np.mgrid[0:g.height, 0:g.width]
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(g.crs, "EPSG:4326", always_xy=True).transform(
        g.bounds[0] + (cc + 0.5) * 10, g.bounds[3] - (rr + 0.5) * 10)
    assert np.abs(chip - fixture_elevation(lon, lat)).max() < 0.2


def _chip_scl(cat: Any, iid: str, grid: ChipGrid) -> np.ndarray:
    href = cat.item(iid)["assets"]["SCL"]["href"]
    return grid_read(str(local_path(cat, href)), grid, resampling=Resampling.nearest, dtype="uint8", nodata=0)


def test_fixture_chip_facts_match_an_independent_read(fixture_catalog: Any) -> None:
    cat = fixture_catalog.catalog
    for iid, f in cat.item_facts.items():
        if f["collection"] != "sentinel-2-l2a":
            continue
        cf, nf = chip_fractions(_chip_scl(cat, iid, cat.grid(f["scenario"])))
        assert cf == pytest.approx(f["chip_cloud_fraction"], abs=1e-6), iid
        assert nf == pytest.approx(f["chip_nodata_fraction"], abs=1e-6), iid


def test_fixture_scenarios_hold_under_default_settings(fixture_catalog: Any) -> None:
    """The expected choices follow from DESIGN's rule with the default limits."""
    cat = fixture_catalog.catalog
    s = Settings()
    facts = cat.item_facts
    for name in SCENARIOS:
        exp = cat.expected[name]
        cands = [i for i in exp["s2_candidates"] if i not in exp["prefiltered_ids"]]
        chosen = exp["s2_ids"]
        if chosen:
            assert exp["chip_cloud_fraction"] <= s.max_cloud and exp["chip_nodata_fraction"] <= s.max_nodata
            t = facts[chosen[0]]["datetime"]
            assert all(facts[i]["datetime"] == t for i in chosen)
            newer = [i for i in cands if facts[i]["datetime"] > t]
            for i in newer:  # every newer scene fails on the chip
                assert facts[i]["chip_cloud_fraction"] > s.max_cloud or facts[i]["chip_nodata_fraction"] > s.max_nodata
        else:
            for i in cands:
                assert facts[i]["chip_cloud_fraction"] > s.max_cloud or facts[i]["chip_nodata_fraction"] > s.max_nodata
    cvc = cat.expected["cloudy_vs_clear"]
    newest, chosen = cvc["s2_candidates"][0], cvc["s2_ids"][0]
    assert facts[newest]["eo:cloud_cover"] < 5 and facts[newest]["chip_cloud_fraction"] > 0.5
    assert facts[chosen]["eo:cloud_cover"] > 50 and facts[chosen]["chip_cloud_fraction"] == 0.0
    edge = cat.expected["tile_edge"]
    assert len(edge["s2_ids"]) == 2 and edge["chip_nodata_fraction"] == 0.0
    for i in edge["s2_ids"]:
        assert 0.3 < facts[i]["chip_nodata_fraction"] < 0.7  # each alone covers about half
    assert {facts[i]["proj"] for i in edge["s2_ids"]} == {"proj:epsg", "proj:code"}
    assert len(edge["dem_ids"]) == 2
    assert facts[cat.expected["mostly_nodata"]["s2_candidates"][0]]["chip_valid_fraction"] < 0.3
    allc = cat.expected["all_cloudy"]
    assert allc["prefiltered_ids"] and all(facts[i]["chip_cloud_fraction"] == 0 for i in allc["prefiltered_ids"])
    # S1 choice is the acquisition nearest the chosen S2 date, within the pairing window
    for name in SCENARIOS:
        exp = cat.expected[name]
        if exp["s1_id"] is None:
            continue
        from datetime import datetime

        def days(a: str, b: str) -> float:
            return abs((datetime.fromisoformat(a)
                        - datetime.fromisoformat(b)).total_seconds()) / 86400

        d = {i: days(facts[i]["datetime"], exp["s2_datetime"]) for i in exp["s1_ids"]}
        assert min(d, key=d.__getitem__) == exp["s1_id"] and d[exp["s1_id"]] <= s.s1_window_days


def test_fixture_scenarios_do_not_leak_into_each_other(fixture_catalog: Any) -> None:
    from shapely.geometry import box, shape

    cat = fixture_catalog.catalog
    for name in SCENARIOS:
        chip = box(*cat.grid(name).bounds_4326)
        hits = {it["id"] for it in cat.items() if shape(it["geometry"]).intersects(chip)}
        exp = cat.expected[name]
        assert hits == set(exp["s2_candidates"]) | set(exp["s1_ids"]) | set(exp["dem_ids"]), name
    assert cat.expected["no_s1"]["s1_ids"] == [] and cat.expected["no_dem"]["dem_ids"] == []


def test_fixture_rejects_unknown_scenarios(tmp_path: Path) -> None:
    from terramind_nyc.testing import build_fixture_catalog

    with pytest.raises(ValueError, match="scenario"):
        build_fixture_catalog(tmp_path, "http://127.0.0.1:1", scenarios=["sunny"])


def test_fixture_is_deterministic(tmp_path: Path, fixture_catalog: Any) -> None:
    from terramind_nyc.testing import build_fixture_catalog

    a = build_fixture_catalog(tmp_path / "a", "http://127.0.0.1:1/a", seed=3, scenarios=["clear"])
    b = build_fixture_catalog(tmp_path / "b", "http://127.0.0.1:1/b", seed=3, scenarios=["clear"])
    z = build_fixture_catalog(tmp_path / "z", "http://127.0.0.1:1/z", seed=0, scenarios=["clear"])
    assert a.expected == b.expected and set(a.points) == {"clear"}
    full = fixture_catalog.catalog
    assert z.expected["clear"] == full.expected["clear"]  # a subset reproduces the full catalog
    # another seed changes pixels (so chip fractions move a little), never the choices
    keys = ("s2_ids", "s2_datetime", "s2_baseline", "s2_offset", "s1_id", "dem_ids", "s2_candidates")
    assert {k: a.expected["clear"][k] for k in keys} == {k: full.expected["clear"][k] for k in keys}
    iid = a.expected["clear"]["s2_ids"][0]
    for asset in ("B04", "SCL"):
        rel = f"cogs/sentinel-2-l2a/{iid}/{asset}.tif"
        with rasterio.open(a.root / rel) as x, rasterio.open(b.root / rel) as y:
            assert np.array_equal(x.read(), y.read())
    assert all(it["assets"]["B04"]["href"].startswith("http://127.0.0.1:1/a/cogs/")
               for it in a.items() if it["collection"] == "sentinel-2-l2a")
