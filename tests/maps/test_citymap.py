"""Answers from a written map: CityMap.at equals fetch on the same grid; fall-backs; summaries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from terramind_nyc.errors import InvalidInputError, InvalidLocationError, MapCoverageError

from .conftest import CENTER, SMALL, WHEN

pytest.importorskip("zarr")

from terramind_nyc import fetch  # noqa: E402
from terramind_nyc.maps import CityMap, map_area  # noqa: E402

#: Points whose default 2240 m window lies inside the 4480 m map around CENTER.
INSIDE = [CENTER, (40.7440, -73.9900), (40.7520, -73.9810), (40.7470, -73.9870)]


@pytest.fixture(scope="module")
def maps(area_world: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A float32 and a uint8 map of the world through the fast runtime (the tests use ``fast`` too:
    the same weights)."""
    from terramind_nyc.pipeline import Pipeline, use_pipeline

    from terramind_nyc.testing.model import linear_runtime

    rt = linear_runtime()
    out = {}
    with use_pipeline(Pipeline(runtimes=lambda settings, deadline=None: rt)):
        for dtype in ("float32", "uint8"):
            p = tmp_path_factory.mktemp("cm") / dtype
            run = map_area(area_world.grid, WHEN, p, settings=area_world.settings, prob_dtype=dtype, progress=False,
                           render=False, **SMALL)
            assert run.complete
            out[dtype] = p
    return out


def _same(a: Any, b: Any, tol: float) -> None:
    assert abs(a.building_density - b.building_density) <= tol
    for k, v in b.lulc_fractions.items():
        assert abs(a.lulc_fractions[k] - v) <= tol, k
    assert a.provenance.imagery["S2L2A"]["item_ids"] == b.provenance.imagery["S2L2A"]["item_ids"]
    assert a.provenance.checkpoint["sha256"] == b.provenance.checkpoint["sha256"]
    assert a.grid == b.grid


@pytest.mark.parametrize("radius_m", [None, 300.0])
def test_answers_from_a_float32_map_equal_fetch(area_world: Any, fast: Any, maps: dict[str, Path], radius_m: Any) -> None:
    m = CityMap.open(maps["float32"])
    for lat, lon in INSIDE:
        a = m.at(lat, lon, radius_m=radius_m, settings=area_world.settings)
        b = fetch(lat, lon, radius_m=radius_m, when=WHEN, settings=area_world.settings)
        _same(a, b, 1e-6)
        assert a.n_building_components == b.n_building_components
        assert any("answered from the map" in w for w in a.warnings)
        for head, p in b.probabilities.items():
            assert np.abs(a.probabilities[head] - p).max() <= 1e-5


def test_answers_from_a_uint8_map_are_within_its_storage_error(area_world: Any, fast: Any, maps: dict[str, Path]) -> None:
    m = CityMap.open(maps["uint8"])
    for lat, lon in INSIDE:
        a = m.at(lat, lon, settings=area_world.settings)
        b = fetch(lat, lon, when=WHEN, settings=area_world.settings)
        _same(a, b, 0.01)
        for head, p in b.probabilities.items():
            assert np.abs(a.probabilities[head] - p).max() <= 1 / 510 + 1e-6


def test_the_map_refuses_what_it_cannot_answer(area_world: Any, fast: Any, maps: dict[str, Path]) -> None:
    m = CityMap.open(maps["uint8"])
    s = area_world.settings
    with pytest.raises(MapCoverageError, match="not inside the map"):
        m.at(40.7600, -73.9857, settings=s)  # its window crosses the map's edge
    with pytest.raises(MapCoverageError, match="overlaps"):
        m.at(*CENTER, when=("2023-01-01", "2023-02-01"), settings=s)
    with pytest.raises(InvalidLocationError):
        m.at("north", -73.98, settings=s)
    with pytest.raises(InvalidInputError, match="no map"):
        CityMap.open(maps["uint8"] / "windows")


def test_fetch_with_map_answers_from_it_and_falls_back_live(area_world: Any, fast: Any, maps: dict[str, Path],
                                                           tmp_path: Path) -> None:
    s = area_world.settings
    inside = fetch(*CENTER, when=WHEN, settings=s, map=maps["uint8"])
    assert any("answered from the map" in w for w in inside.warnings)
    edge = fetch(40.7600, -73.9857, when=WHEN, settings=s, map=maps["uint8"])  # outside the map: live
    assert not any("answered from the map" in w for w in edge.warnings)
    old = fetch(*CENTER, when=WHEN, settings=s.replace(map_max_age_days=1), map=maps["uint8"])
    assert not any("answered from the map" in w for w in old.warnings)
    broken = tmp_path / "broken"
    shutil.copytree(maps["uint8"], broken)
    rec = broken / "windows" / "t0_r0_c0.json"
    rec.write_text(json.dumps({**json.loads(rec.read_text()), "status": "failed", "error_type": "ChipError"}))
    r = fetch(40.7440, -73.9900, when=WHEN, settings=s, map=broken)  # its window failed: live
    assert not any("answered from the map" in w for w in r.warnings)
    missing = fetch(*CENTER, when=WHEN, settings=s, map=tmp_path / "nothing-here")
    assert not any("answered from the map" in w for w in missing.warnings)


def test_riprap_views_from_a_map(area_world: Any, fast: Any, maps: dict[str, Path]) -> None:
    from terramind_nyc.riprap import fetch_riprap, fetch_views

    v = fetch_views(*CENTER, when=WHEN, settings=area_world.settings, map=maps["uint8"])
    assert v["terramind_lulc"]["ok"] and v["terramind_buildings"]["ok"] and v["eo_chip"]["ok"]
    live = fetch_views(*CENTER, when=WHEN, settings=area_world.settings)
    assert v["terramind_lulc"]["dominant_class"] == live["terramind_lulc"]["dominant_class"]
    d = fetch_riprap(*CENTER, when=WHEN, settings=area_world.settings, map=maps["uint8"])
    assert d["ok"]


def test_summarise_a_polygon(area_world: Any, fast: Any, maps: dict[str, Path]) -> None:
    import zarr

    m = CityMap.open(maps["float32"])
    w, s_, e, n = area_world.grid.bounds_4326
    poly = {"type": "Polygon", "coordinates": [[[w + 0.005, s_ + 0.005], [e - 0.005, s_ + 0.005],
                                                [(w + e) / 2, n - 0.005], [w + 0.005, s_ + 0.005]]]}
    out = m.summarise(poly, settings=area_world.settings)
    assert 0 < out.n_pixels < 448 * 448 and 0.9 < out.valid_fraction <= 1.0
    assert abs(sum(out.lulc_fractions.values()) - 1.0) < 1e-9
    assert out.scenes and out.time[0].startswith("2024-07-01")
    whole = m.summarise(",".join(str(v) for v in (w - 0.01, s_ - 0.01, e + 0.01, n + 0.01)),
                        settings=area_world.settings)
    g = zarr.open_group(maps["float32"] / "map.zarr", mode="r")
    lulc, valid = np.asarray(g["lulc"][0]), np.asarray(g["valid"][0])
    classes = m.layout.heads["lulc"]["classes"]
    for k, c in enumerate(classes):
        assert whole.lulc_fractions[c] == pytest.approx((lulc[valid] == k).mean())
    assert whole.building_density == pytest.approx((np.asarray(g["buildings"][0])[valid] == 1).mean())
    with pytest.raises(MapCoverageError):
        m.summarise("-73.80,40.60,-73.79,40.61", settings=area_world.settings)
