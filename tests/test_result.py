"""result.py: the file outputs of a Result (GeoTIFF, GeoJSON, quicklook) and their edge values.

The figures and views are covered by tests/test_api.py through ``fetch``; the writers over plain
arrays by tests/test_outputs.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import CLASSES, ESB, fakes  # noqa: F401 - fakes is a fixture

from terramind_nyc import InvalidInputError, fetch


@pytest.fixture
def result(fakes):
    return fetch(*ESB, size_m=640.0)


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_to_geotiff_writes_the_bands_and_returns_the_path(tmp_path, result):
    rasterio = pytest.importorskip("rasterio")
    path = result.to_geotiff(str(tmp_path / "r.tif"))
    assert path == tmp_path / "r.tif"
    with rasterio.open(path) as src:
        assert src.descriptions == ("lulc_class", "building", *(f"p_{c}" for c in CLASSES), "p_building")


def test_to_geotiff_failing_mid_write_keeps_the_old_file(tmp_path, result, monkeypatch):
    rasterio = pytest.importorskip("rasterio")
    path = result.to_geotiff(tmp_path / "r.tif")
    good = path.read_bytes()

    def broken_write(self, *args, **kwargs):
        raise rasterio.errors.RasterioIOError("simulated write failure")

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", broken_write)
    with pytest.raises(rasterio.errors.RasterioIOError, match="simulated"):
        result.to_geotiff(path)
    assert path.read_bytes() == good and _hidden(tmp_path) == []


def test_to_geotiff_of_a_directory_is_invalid_input(tmp_path, result):
    with pytest.raises(InvalidInputError, match="is a directory"):
        result.to_geotiff(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file, not a folder"):
        result.to_geotiff(tmp_path / "file" / "r.tif")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), -1.0, "10", None],
                         ids=["nan", "inf", "minus-inf", "negative", "string", "none"])
def test_to_geojson_refuses_bad_simplify_m(result, bad):
    with pytest.raises(InvalidInputError, match="simplify_m"):
        result.to_geojson(simplify_m=bad)


def test_to_geojson_zero_simplify_keeps_pixel_outlines(result):
    fc = result.to_geojson(simplify_m=0)
    assert fc["type"] == "FeatureCollection" and fc["features"]
    assert {f["properties"]["layer"] for f in fc["features"]} <= {"buildings", "lulc"}


def test_write_geojson_writes_strict_json_atomically(tmp_path, result):
    path = result.write_geojson(tmp_path / "sub" / "p.geojson", simplify_m=5)
    assert path == tmp_path / "sub" / "p.geojson"
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")) == \
        json.loads(json.dumps(result.to_geojson(simplify_m=5)))
    assert _hidden(path.parent) == []
    with pytest.raises(InvalidInputError, match="simplify_m"):
        result.write_geojson(tmp_path / "q.geojson", simplify_m=float("nan"))
    assert not (tmp_path / "q.geojson").exists()


def test_quicklook_returns_the_path_it_wrote(tmp_path, result):
    pytest.importorskip("matplotlib")
    path = result.quicklook(tmp_path / "out" / "quick")
    assert path == tmp_path / "out" / "quick" and path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["quick"]
    with pytest.raises(InvalidInputError, match="is a directory"):
        result.quicklook(tmp_path)


def test_outputs_of_a_result_without_rasters_are_invalid_input(tmp_path, result):
    import dataclasses

    bare = dataclasses.replace(result, probabilities={})
    for call in (lambda: bare.to_geotiff(tmp_path / "x.tif"), bare.to_geojson,
                 lambda: bare.quicklook(tmp_path / "q.png")):
        with pytest.raises(InvalidInputError, match="no probability rasters"):
            call()
    assert list(tmp_path.iterdir()) == []
    assert np.isfinite(result.building_probability).all()


def test_to_geojson_layers_pick_the_layers_and_carry_label_and_fill_colour(result):
    both = result.to_geojson()
    assert {f["properties"]["layer"] for f in both["features"]} == {"buildings", "lulc"}
    only = result.to_geojson(layers=("lulc",))
    assert only["features"] and {f["properties"]["layer"] for f in only["features"]} == {"lulc"}
    assert len(only["features"]) + len(result.to_geojson(layers=["buildings"])["features"]) == len(both["features"])
    for f in only["features"]:
        p = f["properties"]
        i = p["class_idx"]
        assert p["class"] == result.heads["lulc"]["classes"][i] and p["class_label"] == result.heads["lulc"]["labels"][i]
        assert p["fill_color"] == p["color"] == result.heads["lulc"]["colors"][i]
    assert result.to_geojson(layers=())["features"] == []


@pytest.mark.parametrize("bad", ["lulc", ("water",), [None], 5])
def test_to_geojson_refuses_unknown_layers(result, bad):
    with pytest.raises(InvalidInputError, match="layers must be"):
        result.to_geojson(layers=bad)


def test_percentages_are_the_rounded_figures_in_to_dict(result):
    pct = result.percentages
    assert pct["buildings"] == round(100 * result.building_density, 2)
    assert pct["lulc"] == {k: round(100 * v, 2) for k, v in result.lulc_fractions.items()}
    assert pct["dominant"] == pct["lulc"][result.dominant_class]
    assert pct["s2_cloud"] == 1.0 and pct["nodata"] == round(100 * result.nodata_fraction, 2)
    d = result.to_dict()
    assert d["percent"] == pct and d["n_pixels"] == result.summary.n_pixels
    assert result.to_riprap()["class_fractions"] == pct["lulc"]
