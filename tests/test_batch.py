"""terramind_nyc.batch and ``terramind-nyc batch``: inputs, outputs, resuming."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from terramind_nyc import InvalidInputError
from terramind_nyc.batch import read_points, run_batch
from terramind_nyc.cli import cli

from fakes import CLASSES, fakes  # noqa: F401 - fakes is a fixture

POINTS = [(40.7484, -73.9857), (40.7490, -73.9850), (51.5, -0.12), (40.60, -74.10)]


def _csv(tmp_path, rows, header="id,lat,lon"):
    p = tmp_path / "points.csv"
    p.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return p


def test_read_points_csv_geojson_and_headerless(tmp_path):
    p = _csv(tmp_path, [("a", 40.7, -73.9), ("b", "x", -73.9)])
    pts = read_points(p)
    assert [(q.id, q.lat, q.lon) for q in pts] == [("a", 40.7, -73.9), ("b", "x", -73.9)]
    bare = tmp_path / "bare.csv"
    bare.write_text("40.7,-73.9\n40.8,-73.95\n")
    assert [(q.lat, q.lon) for q in read_points(bare)] == [(40.7, -73.9), (40.8, -73.95)]
    gj = tmp_path / "p.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": 7}, "geometry": {"type": "Point", "coordinates": [-73.9, 40.7]}},
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}},
    ]}))
    g = read_points(gj)
    assert (g[0].id, g[0].lat, g[0].lon) == ("7", 40.7, -73.9) and g[1].lat is None
    bad = tmp_path / "bad.csv"
    bad.write_text("name,where\nx,y\n")
    with pytest.raises(InvalidInputError, match="lat"):
        read_points(bad)
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_points(tmp_path / "missing.csv")


def test_jsonl_keeps_order_index_and_errors(tmp_path, fakes):
    src = _csv(tmp_path, [(f"p{i}", a, b) for i, (a, b) in enumerate(POINTS)] + [("bad", "nan", "oops")])
    out = tmp_path / "out.jsonl"
    s = run_batch(src, out, progress=False)
    assert (s.total, s.skipped, s.ok, s.failed) == (5, 0, 3, 2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == [0, 1, 2, 3, 4]
    by = {r["id"]: r for r in rows}
    assert by["p0"]["ok"] and by["p0"]["result"]["class_names"] == list(CLASSES)
    assert not by["p2"]["ok"] and by["p2"]["error_type"] == "OutsideDomainError"  # an InvalidLocationError
    assert not by["bad"]["ok"]


def test_resume_skips_done_points_and_repairs_torn_line(tmp_path, fakes):
    reader, runtime = fakes
    src = _csv(tmp_path, [(f"p{i}", a, b) for i, (a, b) in enumerate(POINTS)])
    out = tmp_path / "out.jsonl"
    run_batch(src, out, progress=False, chunk=2)
    lines = out.read_text().splitlines(keepends=True)
    # simulate an interruption: the last point's line was half written
    out.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    calls = runtime.calls
    s = run_batch(src, out, progress=False)
    assert (s.skipped, s.ok + s.failed) == (3, 1)
    assert runtime.calls <= calls + 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == [0, 1, 2, 3]
    # a third run does nothing; --retry-failed reruns the out-of-NYC point only
    assert run_batch(src, out, progress=False).skipped == 4
    s = run_batch(src, out, progress=False, retry_failed=True)
    assert (s.skipped, s.failed) == (3, 1)
    assert len(out.read_text().splitlines()) == 4


def test_output_from_another_input_is_refused(tmp_path, fakes):
    src = _csv(tmp_path, [("a", 40.7484, -73.9857)])
    out = tmp_path / "out.jsonl"
    run_batch(src, out, progress=False)
    other = tmp_path / "other.csv"
    other.write_text("lat,lon\n40.70,-74.00\n")
    with pytest.raises(InvalidInputError, match="another input"):
        run_batch(other, out, progress=False)
    with pytest.raises(InvalidInputError, match=".jsonl or .csv"):
        run_batch(src, tmp_path / "out.txt", progress=False)


def test_csv_output_and_cli(tmp_path, fakes):
    src = _csv(tmp_path, [(f"p{i}", a, b) for i, (a, b) in enumerate(POINTS)])
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(cli, ["batch", str(src), str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "4 points: 0 already done, 3 ok, 1 failed" in res.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {f"lulc_{c}" for c in CLASSES} <= set(rows[0])
    ok = [r for r in rows if r["ok"] == "true"]
    assert all(abs(sum(float(r[f"lulc_{c}"]) for c in CLASSES) - 1) < 1e-6 for r in ok)
    res = CliRunner().invoke(cli, ["batch", str(src), str(out), "--no-progress"])
    assert res.exit_code == 0 and "4 already done" in res.output
    assert len(list(csv.DictReader(out.open()))) == 4
