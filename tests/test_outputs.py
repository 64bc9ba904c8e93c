"""The writers over plain arrays on a grid (terramind_nyc.outputs), without any Result."""

from __future__ import annotations

from pathlib import Path

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
    fc = polygons_geojson(grid, [MaskLayer("buildings", "building", "#ff0000", mask, label="Building footprint", index=1),
                                 MaskLayer("lulc", "water", "#0000ff", np.zeros(grid.shape, bool))],
                          simplify_m=0.0, properties={"checkpoint": "ck"})
    assert fc["type"] == "FeatureCollection" and fc["properties"] == {"checkpoint": "ck"}
    (feat,) = fc["features"]
    assert feat["properties"] == {"layer": "buildings", "class": "building", "class_idx": 1,
                                  "class_label": "Building footprint", "color": "#ff0000", "fill_color": "#ff0000",
                                  "area_m2": 10000.0}
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


# --- files: atomic writes and edge values -----------------------------------------------------------------------

def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_geotiff_failing_mid_write_keeps_the_old_file(tmp_path, grid, monkeypatch):
    rasterio = pytest.importorskip("rasterio")
    a = np.ones(grid.shape, np.float32)
    path = write_geotiff(tmp_path / "x.tif", grid, [("a", a)])
    good = path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tif"]  # no sidecar, no temp

    def broken_write(self, *args, **kwargs):
        raise rasterio.errors.RasterioIOError("disk full (simulated) in the middle of the write")

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", broken_write)
    with pytest.raises(rasterio.errors.RasterioIOError, match="simulated"):
        write_geotiff(path, grid, [("a", a * 5), ("b", a)])
    assert path.read_bytes() == good and _hidden(tmp_path) == []


def test_geotiff_interrupted_keeps_the_old_file(tmp_path, grid, monkeypatch):
    rasterio = pytest.importorskip("rasterio")
    path = write_geotiff(tmp_path / "x.tif", grid, [("a", np.ones(grid.shape, np.float32))])
    good = path.read_bytes()

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rasterio.io.DatasetWriter, "update_tags", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_geotiff(path, grid, [("a", np.zeros(grid.shape, np.float32))], tags={"k": "v"})
    assert path.read_bytes() == good and _hidden(tmp_path) == []


def test_geotiff_edge_inputs_are_invalid_input(tmp_path, grid):
    a = np.zeros(grid.shape, np.float32)
    with pytest.raises(InvalidInputError, match="is a directory"):
        write_geotiff(tmp_path, grid, [("a", a)])
    with pytest.raises(InvalidInputError, match="shape"):
        write_geotiff(tmp_path / "x.tif", grid, [("a", np.zeros((2, *grid.shape), np.float32))])
    with pytest.raises(InvalidInputError, match="valid"):
        write_geotiff(tmp_path / "x.tif", grid, [("a", a)], valid=np.ones((3, 3), bool))
    with pytest.raises(InvalidInputError, match="numbers"):
        write_geotiff(tmp_path / "x.tif", grid, [("a", np.full(grid.shape, "x", object))])
    assert list(tmp_path.iterdir()) == []


def test_geotiff_tag_values_are_written_as_text(tmp_path, grid):
    rasterio = pytest.importorskip("rasterio")
    path = write_geotiff(tmp_path / "x.tif", grid, [("a", np.zeros(grid.shape))], tags={"threshold": 0.5, "n": None})
    with rasterio.open(path) as src:
        assert src.tags()["threshold"] == "0.5" and src.tags()["n"] == "None"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1, -0.5, "10", None, True, [1]],
                         ids=["nan", "inf", "minus-one", "negative", "string", "none", "bool", "list"])
def test_polygons_refuse_bad_simplify_m(grid, bad):
    with pytest.raises(InvalidInputError, match="simplify_m"):
        polygons_geojson(grid, [], simplify_m=bad)


def test_polygons_accept_numpy_tolerances_and_refuse_masks_off_the_grid(grid):
    assert polygons_geojson(grid, [], simplify_m=np.float32(2.5))["features"] == []
    with pytest.raises(InvalidInputError, match="shape"):
        polygons_geojson(grid, [MaskLayer("buildings", "building", "#f00", np.zeros((3, 3), bool))])


def test_write_geojson_is_strict_json_and_atomic(tmp_path, grid, monkeypatch):
    import json

    from terramind_nyc.outputs import write_geojson

    path = write_geojson(tmp_path / "p.geojson", {"type": "FeatureCollection", "features": [],
                                                   "properties": {"x": float("nan")}})
    assert json.loads(path.read_text()) == {"type": "FeatureCollection", "features": [], "properties": {"x": None}}
    good = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("simulated")

    monkeypatch.setattr("os.replace", broken)
    with pytest.raises(OSError, match="simulated"):
        write_geojson(path, {"type": "FeatureCollection", "features": [1]})
    assert path.read_bytes() == good and _hidden(tmp_path) == []
    with pytest.raises(InvalidInputError, match="mapping"):
        write_geojson(tmp_path / "q.geojson", "not a mapping")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="is a directory"):
        write_geojson(tmp_path, {})


def _quicklook(path, grid, **kw):
    args = {"rgb": None, "lulc_map": np.zeros(grid.shape, np.uint8), "class_names": ("water",),
            "class_colors": ("#00f",), "class_fractions": {"water": 1.0},
            "building_probability": np.zeros(grid.shape, np.float32), "building_density": 0.0}
    args.update(kw)
    return quicklook(path, grid, **args)


def test_quicklook_writes_exactly_the_path_given(tmp_path, grid):
    pytest.importorskip("matplotlib")
    bare = _quicklook(tmp_path / "out" / "quick", grid)
    assert bare == tmp_path / "out" / "quick" and bare.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["quick"]
    odd = _quicklook(tmp_path / "q.v2", grid)  # a suffix that is no image format: still a PNG, same name
    assert odd.read_bytes()[:4] == b"\x89PNG"
    jpg = _quicklook(tmp_path / "q.jpg", grid)  # a suffix naming a format selects it
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff"


def test_quicklook_failing_keeps_the_old_file_and_closes_the_figure(tmp_path, grid, monkeypatch):
    plt = pytest.importorskip("matplotlib.pyplot")
    from matplotlib.figure import Figure

    path = _quicklook(tmp_path / "q.png", grid)
    good = path.read_bytes()
    before = len(plt.get_fignums())

    def broken(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise RuntimeError("simulated savefig failure")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        _quicklook(path, grid)
    assert path.read_bytes() == good and _hidden(tmp_path) == []
    assert len(plt.get_fignums()) == before


def test_quicklook_edge_inputs_are_invalid_input(tmp_path, grid):
    pytest.importorskip("matplotlib")
    with pytest.raises(InvalidInputError, match="is a directory"):
        _quicklook(tmp_path, grid)
    with pytest.raises(InvalidInputError, match="rgb"):
        _quicklook(tmp_path / "q.png", grid, rgb=np.zeros(grid.shape, np.uint8))
    with pytest.raises(InvalidInputError, match="summary_area"):
        _quicklook(tmp_path / "q.png", grid, summary_area=np.ones((2, 2), bool))
    assert list(tmp_path.iterdir()) == []
