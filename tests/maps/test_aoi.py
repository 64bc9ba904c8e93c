"""terramind_nyc.maps.aoi: every accepted AOI form, the refusals, and check_when_list."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Point, Polygon, box

from terramind_nyc.errors import InvalidInputError, OutsideDomainError
from terramind_nyc.grid import ChipGrid, chip_grid
from terramind_nyc.maps.aoi import AOI, BOROUGHS, check_when_list, resolve_aoi
from terramind_nyc.settings import Settings

S = Settings(domain_check=True)
DOMAIN = box(S.domain_lon[0], S.domain_lat[0], S.domain_lon[1], S.domain_lat[1])
TRIANGLE = {"type": "Polygon", "coordinates": [[[-74.00, 40.70], [-73.95, 40.70], [-74.00, 40.75], [-74.00, 40.70]]]}


def _square(lon: float, lat: float, d: float = 0.01) -> list[list[list[float]]]:
    return [[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]]


def _feature(geometry: dict) -> dict:
    return {"type": "Feature", "properties": {}, "geometry": geometry}


def _on_lattice(grid: ChipGrid, res: float = 10.0) -> bool:
    t = grid.transform
    return grid.crs == "EPSG:32618" and grid.resolution == res and t.c % res == 0 and t.f % res == 0


def _covers(aoi: AOI) -> bool:
    tr = Transformer.from_crs("EPSG:4326", aoi.grid.crs, always_xy=True)
    x0, y0, x1, y1 = tr.transform_bounds(*aoi.geometry_4326.bounds, densify_pts=21)
    g0, g1, g2, g3 = aoi.grid.bounds
    return g0 <= x0 and g1 <= y0 and x1 <= g2 and y1 <= g3 and x0 - g0 < 10 and g2 - x1 < 10


def _centres(grid: ChipGrid) -> tuple[np.ndarray, np.ndarray]:
    minx, _, _, maxy = grid.bounds
    xs = minx + (np.arange(grid.width) + 0.5) * grid.resolution
    ys = maxy - (np.arange(grid.height) + 0.5) * grid.resolution
    return np.meshgrid(xs, ys)


# --- accepted forms -----------------------------------------------------------------------
def test_nyc_is_the_domain_rectangle() -> None:
    a = resolve_aoi(" NYC ", S)
    assert a.name == "nyc" and a.geometry_4326.equals(DOMAIN)
    assert _on_lattice(a.grid) and _covers(a)
    assert a.grid.width > 4000 and a.grid.height > 4000  # ~49 x 48 km at 10 m


@pytest.mark.parametrize(("text", "canon"), [
    ("manhattan", "manhattan"), ("New York County", "manhattan"), ("brooklyn", "brooklyn"), ("KINGS", "brooklyn"),
    ("queens", "queens"), ("bronx", "bronx"), ("The Bronx", "bronx"), ("staten island", "staten_island"),
    ("staten-island", "staten_island"), ("staten_island", "staten_island"), ("Richmond", "staten_island"),
])
def test_boroughs_and_aliases(text: str, canon: str) -> None:
    a = resolve_aoi(text, S)
    assert a.name == canon
    assert a.geometry_4326.equals(box(*BOROUGHS[canon]))  # an envelope, not clipped: it lies inside the domain
    assert DOMAIN.contains(a.geometry_4326)
    assert _on_lattice(a.grid) and _covers(a)
    centroid = a.geometry_4326.centroid
    assert (a.grid.center_lat, a.grid.center_lon) == pytest.approx((centroid.y, centroid.x))


def test_bbox_string_sequence_and_array_agree() -> None:
    text = resolve_aoi(" -74.02, 40.70, -73.97, 40.75 ", S)
    for value in ([-74.02, 40.70, -73.97, 40.75], (-74.02, 40.70, -73.97, 40.75), np.array([-74.02, 40.7, -73.97, 40.75])):
        a = resolve_aoi(value, S)
        assert a.name == "bbox" and a.grid == text.grid
    assert text.geometry_4326.equals(box(-74.02, 40.70, -73.97, 40.75))
    assert _on_lattice(text.grid) and _covers(text)
    m = text.mask(text.grid)  # a lon/lat rectangle is tilted on UTM: its projected envelope has empty corners
    assert 0.95 < m.mean() < 1 and not m[0, 0] and not m[-1, -1]
    assert m[text.grid.height // 2, 10:-10].all() and m[10:-10, text.grid.width // 2].all()


def test_triangle_mask_true_inside_false_outside() -> None:
    a = resolve_aoi(TRIANGLE, S)
    assert a.name == "geojson" and _on_lattice(a.grid)
    m = a.mask(a.grid)
    assert m.shape == a.grid.shape and m.dtype == bool
    assert m[a.grid.rowcol(40.71, -73.99)]        # near the right angle: inside
    assert not m[a.grid.rowcol(40.745, -73.955)]  # the far corner of the envelope: outside
    assert 0.4 < m.mean() < 0.6                   # a right triangle is half its envelope
    tr = Transformer.from_crs("EPSG:4326", a.grid.crs, always_xy=True)
    projected = shapely.transform(shapely.segmentize(a.geometry_4326, 1e-4),
                                  lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
    xs, ys = _centres(a.grid)
    truth = shapely.contains_xy(projected, xs, ys)
    assert (m != truth).sum() <= 0.002 * m.size   # only centres on the outline may differ


def test_mask_on_another_grid() -> None:
    a = resolve_aoi("manhattan", S)
    inside = chip_grid(40.78, -73.97, settings=S)     # a chip well inside the envelope
    outside = chip_grid(40.60, -74.15, settings=S)    # a chip on Staten Island
    assert a.mask(inside).all() and not a.mask(outside).any()
    with pytest.raises(InvalidInputError, match="ChipGrid"):
        a.mask("grid")  # type: ignore[arg-type]


def test_multipolygon_feature_collection_is_unioned() -> None:
    fc = {"type": "FeatureCollection", "features": [
        _feature({"type": "Polygon", "coordinates": _square(-74.00, 40.70)}),
        _feature({"type": "MultiPolygon", "coordinates": [_square(-73.95, 40.75), _square(-73.955, 40.755)]}),
    ]}
    a = resolve_aoi(fc, S)
    assert isinstance(a.geometry_4326, MultiPolygon) and len(a.geometry_4326.geoms) == 2
    assert a.geometry_4326.area == pytest.approx(0.0001 + 0.0001 + 0.0001 - 0.005 ** 2)  # the two overlapping merged
    assert a.geometry_4326.bounds == pytest.approx((-74.00, 40.70, -73.94, 40.765))
    m = a.mask(a.grid)
    assert m[a.grid.rowcol(40.705, -73.995)] and m[a.grid.rowcol(40.755, -73.945)]
    assert not m[a.grid.rowcol(40.73, -73.97)]  # between the squares


def test_geojson_file_str_and_path(tmp_path) -> None:
    path = tmp_path / "triangle.geojson"
    path.write_text(json.dumps(_feature(TRIANGLE)))
    for value in (path, str(path)):
        a = resolve_aoi(value, S)
        assert a.name == "triangle.geojson"
        assert a.geometry_4326.equals(resolve_aoi(TRIANGLE, S).geometry_4326)


def test_shapely_geometries_and_to_dict() -> None:
    p = Polygon(_square(-73.99, 40.72)[0])
    a = resolve_aoi(p, S)
    assert a.name == "geometry" and a.geometry_4326.equals(p)
    d = json.loads(json.dumps(a.to_dict()))
    assert d["name"] == "geometry" and d["geometry"]["type"] == "Polygon"
    assert d["bounds_4326"] == pytest.approx(list(p.bounds)) and ChipGrid.from_dict(d["grid"]) == a.grid
    assert resolve_aoi(MultiPolygon([p]), S).geometry_4326.area == pytest.approx(p.area)
    bowtie = Polygon([(-74.0, 40.7), (-73.99, 40.71), (-73.99, 40.7), (-74.0, 40.71)])  # self-crossing: repaired
    assert resolve_aoi(bowtie, S).geometry_4326.area > 0


def test_chip_grid_passthrough() -> None:
    g = chip_grid(40.75, -73.98, settings=S)
    a = resolve_aoi(g, S)
    assert a.grid is g and a.name == "grid"
    assert a.mask(g).all()
    assert a.geometry_4326.bounds == pytest.approx(g.bounds_4326, abs=1e-9)
    with pytest.raises(InvalidInputError, match="20 m"):
        resolve_aoi(g, Settings(resolution_m=20))


# --- refusals -----------------------------------------------------------------------------
@pytest.mark.parametrize(("geometry", "kind"), [
    ({"type": "Point", "coordinates": [-73.98, 40.75]}, "Point"),
    (_feature({"type": "LineString", "coordinates": [[-73.98, 40.75], [-73.97, 40.76]]}), "LineString"),
    ({"type": "FeatureCollection", "features": [_feature(TRIANGLE), _feature({"type": "Point",
                                                                               "coordinates": [-73.98, 40.75]})]},
     "feature 1 has type 'Point'"),
    ({"type": "GeometryCollection", "geometries": [TRIANGLE]}, "GeometryCollection"),
    (_feature(None), "no geometry"),  # type: ignore[arg-type]
])
def test_non_polygon_geojson_refused(geometry: dict, kind: str) -> None:
    with pytest.raises(InvalidInputError, match=kind):
        resolve_aoi(geometry, S)


def test_bad_files_refused(tmp_path) -> None:
    bad = tmp_path / "broken.geojson"
    bad.write_text('{"type": "Polygon", "coordinates": [[[0, 0],')
    with pytest.raises(InvalidInputError, match="cannot read GeoJSON file .*broken.geojson.* as JSON"):
        resolve_aoi(bad, S)
    with pytest.raises(InvalidInputError, match="cannot read .*missing.json.*No such file"):
        resolve_aoi(str(tmp_path / "missing.json"), S)
    point = tmp_path / "point.json"
    point.write_text(json.dumps({"type": "Point", "coordinates": [-73.98, 40.75]}))
    with pytest.raises(InvalidInputError, match="point.json.*'Point'"):
        resolve_aoi(point, S)


@pytest.mark.parametrize("geometry", [
    {"type": "FeatureCollection", "features": []},
    {"type": "Polygon", "coordinates": [[[-74.0, 40.7], [-73.9, 40.7], [-73.8, 40.7], [-74.0, 40.7]]]},  # no area
    {"type": "Polygon", "coordinates": []},
])
def test_empty_geometry_refused(geometry: dict) -> None:
    with pytest.raises(InvalidInputError, match="without features|zero area"):
        resolve_aoi(geometry, S)


def test_malformed_and_projected_coordinates_refused() -> None:
    with pytest.raises(InvalidInputError, match="malformed Polygon"):
        resolve_aoi({"type": "Polygon", "coordinates": [[["a", "b"], [1, 1], [2, 2], [0, 0]]]}, S)
    utm = {"type": "Polygon", "coordinates": _square(585000.0, 4510000.0, 1000.0)}
    with pytest.raises(InvalidInputError, match="not in lon/lat degrees"):
        resolve_aoi(utm, S)


def test_bbox_reversed_and_swapped() -> None:
    with pytest.raises(InvalidInputError, match="reversed") as exc:
        resolve_aoi("-73.90,40.60,-74.00,40.80", S)
    assert "swapped" not in str(exc.value)
    with pytest.raises(InvalidInputError, match=r"reversed.*lat and lon look swapped"):
        resolve_aoi("40.80,-74.00,40.60,-73.90", S)
    with pytest.raises(OutsideDomainError, match="lat and lon look swapped"):  # lat, lon order: valid elsewhere
        resolve_aoi([40.60, -74.00, 40.80, -73.90], S)
    with pytest.raises(InvalidInputError, match="zero|reversed"):
        resolve_aoi((-74.0, 40.7, -74.0, 40.8), S)


@pytest.mark.parametrize("value", ["nan,40.6,-73.9,40.8", [-74.0, math.inf, -73.9, 40.8], (-74.0, 40.6, -73.9, 10 ** 400)])
def test_bbox_non_finite_refused(value: object) -> None:
    with pytest.raises(InvalidInputError, match="non-finite"):
        resolve_aoi(value, S)


@pytest.mark.parametrize("value", [42, None, "brooklin", [1.0, 2.0, 3.0], "a,b,c,d", [True, 1, 2, 3], Point(-74, 40.7)])
def test_other_values_refused(value: object) -> None:
    with pytest.raises(InvalidInputError) as exc:
        resolve_aoi(value, S)
    text = str(exc.value)
    assert "ChipGrid" in text or "4 numbers" in text or "four numbers" in text or "polygon" in text


def test_outside_domain_and_area_of_use() -> None:
    london = "-0.20,51.45,-0.05,51.55"
    with pytest.raises(OutsideDomainError, match="NYC domain"):
        resolve_aoi(london, S)
    with pytest.raises(OutsideDomainError, match="area of use of EPSG:32618"):
        resolve_aoi(london, Settings(domain_check=False))
    far = resolve_aoi("-75.5,40.0,-75.4,40.1", Settings(domain_check=False))  # Philadelphia: no domain, same zone
    assert _on_lattice(far.grid) and _covers(far)


def test_partly_outside_is_clipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="terramind_nyc.maps.aoi"):
        a = resolve_aoi("-74.50,40.60,-74.00,40.80", S)
    assert a.geometry_4326.bounds == pytest.approx((-74.27, 40.60, -74.00, 40.80))
    assert any("clipped" in r.getMessage() and "46.0%" in r.getMessage() for r in caplog.records)
    assert _covers(a)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="terramind_nyc.maps.aoi"):
        whole = resolve_aoi("-74.50,40.60,-74.00,40.80", Settings(domain_check=False))
        resolve_aoi("brooklyn", S)
    assert whole.geometry_4326.bounds == pytest.approx((-74.50, 40.60, -74.00, 40.80))
    assert not caplog.records


def test_grid_too_large_refused() -> None:
    with pytest.raises(InvalidInputError, match="20000 a side"):
        resolve_aoi("nyc", Settings(resolution_m=1))


# --- check_when_list ----------------------------------------------------------------------
def test_when_single_window_forms() -> None:
    for when in (None, "2024-06-15", "2024-06-01/2024-06-30", ("2024-06-01", "2024-06-30"),
                 [datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 30, tzinfo=UTC)]):
        windows = check_when_list(when, S)
        assert len(windows) == 1 and windows[0][0] < windows[0][1]
    (start, end), = check_when_list(("2024-06-01", "2024-06-30"), S)
    assert start == datetime(2024, 6, 1, tzinfo=UTC) and end.date().isoformat() == "2024-06-30"


def test_when_several_windows() -> None:
    windows = check_when_list([("2024-06-01", "2024-06-30"), "2024-07-01/2024-07-31", ["2024-08-01", "2024-08-31"]], S)
    assert [w[0].month for w in windows] == [6, 7, 8]
    assert len(check_when_list(("2024-06-01/2024-06-30", "2024-07-01/2024-07-31"), S)) == 2
    assert len(check_when_list([("2024-06-01", "2024-06-30")], S)) == 1


def test_when_overlapping_unsorted_empty_mixed_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"overlap: when\[1\] \(2024-06-15.*when\[0\] \(2024-06-01"):
        check_when_list([("2024-06-01", "2024-06-30"), ("2024-06-15", "2024-07-15")], S)
    with pytest.raises(InvalidInputError, match=r"chronological order: when\[1\] \(2024-05-01.*oldest first"):
        check_when_list([("2024-06-01", "2024-06-30"), ("2024-05-01", "2024-05-31")], S)
    with pytest.raises(InvalidInputError, match="empty list"):
        check_when_list([], S)
    with pytest.raises(InvalidInputError, match=r"neither one.*when\[1\] is '2024-07-15'"):
        check_when_list([("2024-06-01", "2024-06-30"), "2024-07-15"], S)
    with pytest.raises(InvalidInputError, match=r"neither one.*when\[0\]"):
        check_when_list(["2024-06-01", "2024-07-01", "2024-08-01"], S)
    with pytest.raises(InvalidInputError, match=r"when\[1\].*reversed"):
        check_when_list([("2024-06-01", "2024-06-30"), ("2024-08-31", "2024-08-01")], S)
