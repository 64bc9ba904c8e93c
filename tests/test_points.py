"""points.py: reading a batch points file (CSV / GeoJSON); every defect one InvalidInputError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terramind_nyc import InvalidInputError
from terramind_nyc.points import BatchPoint, read_points


def _fc(*features) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def _pt(lon, lat, **props):
    return {"type": "Feature", "properties": props, "geometry": {"type": "Point", "coordinates": [lon, lat]}}


def test_csv_geojson_headerless_and_friendly_encodings(tmp_path):
    p = tmp_path / "points.csv"
    p.write_text("id,lat,lon\na,40.7,-73.9\n\nb, 40.8 ,-73.95\n")
    assert read_points(p) == [BatchPoint(0, "a", 40.7, -73.9), BatchPoint(1, "b", 40.8, -73.95)]
    bare = tmp_path / "bare.csv"
    bare.write_text("40.7,-73.9\r\n40.8,-73.95\r\n")
    assert [(q.lat, q.lon) for q in read_points(bare)] == [(40.7, -73.9), (40.8, -73.95)]
    excel = tmp_path / "excel.csv"  # Excel's "CSV UTF-8" (a BOM), and a latitude/longitude header
    excel.write_bytes("\ufeffname,Latitude,Longitude\r\n\"Café, NYC\",40.7,-73.9\r\n".encode())
    assert read_points(excel) == [BatchPoint(0, None, 40.7, -73.9)]
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes("id,lat,lon\nCafé,40.7,-73.9\n".encode("utf-16"))
    assert read_points(utf16) == [BatchPoint(0, "Café", 40.7, -73.9)]
    gj = tmp_path / "p.geojson"
    gj.write_text(_fc(_pt(-73.9, 40.7, id=7), {**_pt(-73.8, 40.6), "id": "f2"}, _pt("-73.7", "40.5")))
    assert read_points(gj) == [BatchPoint(0, "7", 40.7, -73.9), BatchPoint(1, "f2", 40.6, -73.8),
                               BatchPoint(2, None, 40.5, -73.7)]
    assert read_points(tmp_path / "p.geojson") == read_points(str(gj))
    head_only = tmp_path / "head.csv"
    head_only.write_text("lat,lon\n")
    assert read_points(head_only) == []


def _deep(n: int) -> str:
    return '{"type": "FeatureCollection", "features": ' + "[" * n + "]" * n + "}"


#: (file name, content, what the message must say): one bad points file each.
BAD = {
    "csv-field-over-131072-chars": ("p.csv", 'id,lat,lon\na,"' + "x" * 140_000 + "\n", r"line 2 .*an unclosed quote"),
    "csv-cp1252-bytes": ("p.csv", "id,lat,lon\nCafé,40.7,-73.9\n".encode("cp1252"), r"line 2 is not UTF-8.*UTF-8"),
    "csv-nul-byte": ("p.csv", "lat,lon\n40.7\x00,-73.9\n", r"line 2"),
    "geojson-feature-is-a-string": ("p.geojson", _fc("oops"), r"feature 0 is a JSON str, not a Feature"),
    "geojson-deeply-nested": ("p.geojson", _deep(200_000), r"nested too deeply"),
    "json-deeply-nested-array": ("p.json", "[" * 200_000 + "]" * 200_000, r"nested too deeply"),
    "empty-file": ("p.csv", "", r"is empty"),
    "blank-file": ("p.csv", " \n\r\n\t\n", r"is empty"),
    "empty-geojson": ("p.geojson", "", r"is empty"),
    "no-lat-lon-columns": ("p.csv", "name,where\nx,y\n", r"needs 'lat' and 'lon' columns"),
    "lat-column-only": ("p.csv", "lat,height\n40.7,3\n", r"needs 'lat' and 'lon' columns"),
    "semicolon-separated": ("p.csv", "lat;lon\n40,7;-73,9\n", r"separated by ';'"),
    "non-numeric-lat": ("p.csv", "id,lat,lon\na,40.7,-73.9\nb,x,-73.9\n", r"line 3 has lat 'x'.*fix or remove"),
    "nan-lat": ("p.csv", "lat,lon\nnan,-73.9\n", r"line 2 has lat 'nan'"),
    "inf-lon": ("p.csv", "lat,lon\n40.7,inf\n", r"line 2 has lat '40.7', lon 'inf'"),
    "empty-cell": ("p.csv", "lat,lon\n40.7,\n", r"line 2 has lat '40.7', lon ''"),
    "short-row": ("p.csv", "id,lat,lon\na,40.7\n", r"lon missing"),
    "headerless-bad-row": ("p.csv", "40.7,-73.9\nfoo,bar\n", r"line 2 has lat 'foo'"),
    "many-bad-rows": ("p.csv", "lat,lon\n" + "x,y\n" * 9, r"line 2 .*line 6 .*\(and 4 more\)"),
    "geojson-invalid-json": ("p.geojson", '{"type": "FeatureCollection", "features": [}', r"line 1 column 44"),
    "geojson-a-feature-not-a-collection": ("p.geojson", json.dumps(_pt(-73.9, 40.7)), r"got type 'Feature'"),
    "geojson-top-level-list": ("p.geojson", "[]", r"got a JSON list"),
    "geojson-linestring": ("p.geojson", _fc({"type": "Feature", "geometry": {"type": "LineString",
                                                                            "coordinates": [[0, 0], [1, 1]]}}),
                           r"feature 0 has a 'LineString' geometry, not a Point"),
    "geojson-null-geometry": ("p.geojson", _fc({"type": "Feature", "geometry": None}), r"feature 0 has no geometry"),
    "geojson-one-coordinate": ("p.geojson", _fc({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1]}}),
                               r"not \[lon, lat\]"),
    "geojson-nan-literal": ("p.geojson", ('{"type": "FeatureCollection", "features": [{"type": "Feature", '
                                          '"geometry": {"type": "Point", "coordinates": [NaN, 40.7]}}]}'),
                            r"feature 0 has lon nan"),
    "geojson-overflowing-number": ("p.geojson", _fc(_pt(-73.9, 40.7)).replace("40.7", "1e999"), r"lat inf"),
    "geojson-huge-integer": ("p.geojson", _fc(_pt(-73.9, 40.7)).replace("40.7", "9" * 5000), r"not usable JSON"),
    "geojson-bool-coordinates": ("p.geojson", _fc(_pt(True, False)), r"lon True, lat False"),
    "geojson-properties-a-list": ("p.geojson", _fc({**_pt(-73.9, 40.7), "properties": [1]}),
                                  r"properties that are not an object"),
    "geojson-second-feature-bad": ("p.geojson", _fc(_pt(-73.9, 40.7), _pt("x", 40.7)), r"feature 1 has lon 'x'"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_every_bad_points_file_is_one_invalid_input_error(tmp_path, case):
    name, content, says = BAD[case]
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=says) as info:
        read_points(p)
    assert str(p) in str(info.value)  # names the file
    assert len(str(info.value)) < 2000  # and never dumps it


def test_missing_files_folders_and_non_paths(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_points(tmp_path / "missing.csv")
    with pytest.raises(InvalidInputError, match="is a directory"):
        read_points(tmp_path)
    with pytest.raises(InvalidInputError, match="must be a path"):
        read_points(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="could not be read"):
        read_points(str(tmp_path / "nul\0name.csv"))
    with pytest.raises(InvalidInputError, match="could not be read"):
        read_points(tmp_path / ("x" * 5000))  # a name too long for the file system


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=300),
                      st.text(alphabet=st.sampled_from('lat,lon\n\r"0123456789.-e{}[]:nNaIf x;\x00é'), max_size=120)),
       suffix=st.sampled_from([".csv", ".geojson", ".txt"]))
def test_nothing_but_invalid_input_escapes(data, suffix):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"points{suffix}"
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        try:
            pts = read_points(p)
        except InvalidInputError:
            return
        assert all(isinstance(q.lat, float) and isinstance(q.lon, float) for q in pts)
