"""The writers over plain arrays on a grid (terramind_nyc.outputs), without any Result."""

from __future__ import annotations

import numpy as np
import pytest

from terramind_nyc import Settings
from terramind_nyc.errors import InvalidInputError
from terramind_nyc.grid import chip_grid
from terramind_nyc.outputs import MaskLayer, polygons_geojson, quicklook, write_geotiff


@pytest.fixture
def grid():
    return chip_grid(40.7484, -73.9857, size_m=640.0, settings=Settings())  # 64 x 64 px


def test_geotiff_bands_descriptions_nan_and_tags(tmp_path, grid):
    rasterio = pytest.importorskip("rasterio")
    a = np.arange(grid.height * grid.width, dtype=np.float32).reshape(grid.shape)
    valid = np.ones(grid.shape, bool)
    valid[0, :3] = False
    path = write_geotiff(tmp_path / "sub" / "x.tif", grid, [("first", a), ("second", a * 2)], valid=valid,
                         tags={"checkpoint": "ck"})
    with rasterio.open(path) as src:
        assert src.count == 2 and src.descriptions == ("first", "second")
        assert src.crs.to_string() == grid.crs and src.transform == grid.transform
        assert src.tags()["checkpoint"] == "ck"
        b = src.read()
    assert np.isnan(b[:, 0, :3]).all()
    np.testing.assert_array_equal(b[1, 1:], (a * 2)[1:])


def test_geotiff_refuses_wrong_shapes_and_no_layers(tmp_path, grid):
    with pytest.raises(InvalidInputError, match="shape"):
        write_geotiff(tmp_path / "x.tif", grid, [("a", np.zeros((3, 3), np.float32))])
    with pytest.raises(InvalidInputError, match="at least one layer"):
        write_geotiff(tmp_path / "x.tif", grid, [])


def test_polygons_of_a_square_mask(grid):
    mask = np.zeros(grid.shape, bool)
    mask[10:20, 30:40] = True  # 10 x 10 px = 100 m x 100 m
    fc = polygons_geojson(grid, [MaskLayer("buildings", "building", "#ff0000", mask),
                                 MaskLayer("lulc", "water", "#0000ff", np.zeros(grid.shape, bool))],
                          simplify_m=0.0, properties={"checkpoint": "ck"})
    assert fc["type"] == "FeatureCollection" and fc["properties"] == {"checkpoint": "ck"}
    (feat,) = fc["features"]
    assert feat["properties"] == {"layer": "buildings", "class": "building", "color": "#ff0000", "area_m2": 10000.0}
    lon, lat = np.asarray(feat["geometry"]["coordinates"][0]).mean(axis=0)
    minlon, minlat, maxlon, maxlat = grid.bounds_4326
    assert minlon < lon < maxlon and minlat < lat < maxlat
    with pytest.raises(InvalidInputError, match="simplify_m"):
        polygons_geojson(grid, [], simplify_m=-1)


def test_quicklook_writes_a_png(tmp_path, grid):
    pytest.importorskip("matplotlib")
    lulc = np.zeros(grid.shape, np.uint8)
    lulc[:5] = 255
    path = quicklook(tmp_path / "q.png", grid, rgb=None, lulc_map=lulc, class_names=("water", "other"),
                     class_colors=("#0000ff", "#888888"), class_fractions={"water": 1.0, "other": 0.0},
                     building_probability=np.full(grid.shape, 0.25, np.float32), building_density=0.1,
                     summary_area=np.ones(grid.shape, bool), title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidInputError, match="shape"):
        quicklook(tmp_path / "q.png", grid, rgb=None, lulc_map=lulc[:3], class_names=(), class_colors=(),
                  class_fractions={}, building_probability=np.zeros(grid.shape), building_density=None)
