"""terramind_nyc.batch and ``terramind-nyc batch``: inputs, outputs, resuming."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from fakes import CLASSES, fakes  # noqa: F401 - fakes is a fixture

from terramind_nyc import InvalidInputError, points
from terramind_nyc.batch import read_points, run_batch
from terramind_nyc.cli import cli

POINTS = [(40.7484, -73.9857), (40.7490, -73.9850), (51.5, -0.12), (40.60, -74.10)]


def _csv(tmp_path, rows, header="id,lat,lon"):
    p = tmp_path / "points.csv"
    p.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return p


def test_a_bad_points_file_is_refused_before_anything_runs(tmp_path, fakes):
    runtime = fakes.runtime
    src = _csv(tmp_path, [("a", 40.7484, -73.9857), ("b", "x", -73.9)])
    out = tmp_path / "out.jsonl"
    with pytest.raises(InvalidInputError, match=r"line 3 has lat 'x'"):
        run_batch(src, out, progress=False)
    assert not out.exists() and runtime.calls == 0
    assert read_points is points.read_points  # batch re-exports the points file reader


def test_jsonl_keeps_order_index_and_errors(tmp_path, fakes):
    src = _csv(tmp_path, [(f"p{i}", a, b) for i, (a, b) in enumerate(POINTS)] + [("bad", 95.0, -73.9)])
    out = tmp_path / "out.jsonl"
    s = run_batch(src, out, progress=False)
    assert (s.total, s.skipped, s.ok, s.failed) == (5, 0, 3, 2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == [0, 1, 2, 3, 4]
    by = {r["id"]: r for r in rows}
    assert by["p0"]["ok"] and by["p0"]["result"]["class_names"] == list(CLASSES)
    assert not by["p2"]["ok"] and by["p2"]["error_type"] == "OutsideDomainError"  # an InvalidLocationError
    assert not by["bad"]["ok"] and by["bad"]["error_type"] == "InvalidLocationError"  # out of range: per point


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


# --- resuming over what a kill, another tool or a hand edit left in OUT ---------------------------------------

def _full_run(tmp_path, name="out.csv", rows=None):
    src = _csv(tmp_path, rows or [(f"p{i}", a, b) for i, (a, b) in enumerate(POINTS)])
    out = tmp_path / name
    run_batch(src, out, progress=False, chunk=2)
    return src, out


def _assert_complete_csv(out, n=4):
    rows = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert sorted(int(r["index"]) for r in rows) == list(range(n))
    for r in rows:
        assert set(r) >= {"index", "id", "lat", "lon", "ok", "error", *(f"lulc_{c}" for c in CLASSES)}
        if r["ok"] == "true":  # every figure there, none dropped by a torn header
            assert r["building_density"] and all(r[f"lulc_{c}"] for c in CLASSES)
    return rows


@pytest.mark.parametrize("cut", [5, 20, -1], ids=["mid-first-column", "mid-header", "header-without-newline"])
def test_csv_torn_mid_header_is_restarted_with_a_whole_header(tmp_path, fakes, cut):
    src, out = _full_run(tmp_path)
    header = out.read_bytes().split(b"\n")[0] + b"\n"
    out.write_bytes(header[:cut] if cut > 0 else header[:-2])  # a kill while the first chunk was written
    s = run_batch(src, out, progress=False)
    assert (s.skipped, s.ok + s.failed) == (0, 4)
    assert out.read_bytes().startswith(header)
    _assert_complete_csv(out)


def test_csv_torn_last_row_is_cut_and_rerun_keeping_every_complete_row(tmp_path, fakes):
    src, out = _full_run(tmp_path)
    data = out.read_bytes()
    last = data.rstrip(b"\r\n").rfind(b"\n") + 1
    out.write_bytes(data[: last + (len(data) - last) // 2])  # kill half-way through the last row
    kept = data[:last]
    s = run_batch(src, out, progress=False)
    assert (s.skipped, s.ok + s.failed) == (3, 1)
    assert out.read_bytes().startswith(kept)
    _assert_complete_csv(out)


def test_csv_torn_inside_a_quoted_field_and_mid_utf8_character(tmp_path, fakes):
    src, out = _full_run(tmp_path, rows=[("Café", 40.7484, -73.9857), ("Zoë", 40.60, -74.10), ("Ünter", 51.5, -0.12)])
    data = out.read_bytes()
    last = data.rstrip(b"\r\n").rfind(b"\n") + 1
    row = data[last:]
    quoted = row.find(b'"')  # the failed point's error text is quoted (it holds commas)
    assert quoted >= 0
    out.write_bytes(data[:last] + row[: quoted + 5] + b"\n")  # torn right after a newline inside that field
    assert run_batch(src, out, progress=False).skipped == 2
    _assert_complete_csv(out, 3)
    data = out.read_bytes()
    at = data.rfind("Ü".encode()) + 1  # between the two bytes of Ü
    out.write_bytes(data[:at])
    assert run_batch(src, out, progress=False).skipped == 2
    rows = _assert_complete_csv(out, 3)
    assert {r["id"] for r in rows} == {"Café", "Zoë", "Ünter"}


def test_jsonl_torn_first_line_and_whitespace_tail(tmp_path, fakes):
    src, out = _full_run(tmp_path, "out.jsonl")
    data = out.read_bytes()
    out.write_bytes(data[:7])  # '{"index' : the first line torn
    assert run_batch(src, out, progress=False).skipped == 0
    assert len(out.read_text().splitlines()) == 4
    out.write_bytes(out.read_bytes() + b"\x00" * 64)  # a crash left a zero-filled tail
    assert run_batch(src, out, progress=False).skipped == 4
    assert out.read_bytes() == data or len(out.read_text().splitlines()) == 4


#: (output name, content): files resume must refuse and leave byte for byte as they are.
FOREIGN = {
    "csv-of-another-tool": ("out.csv", b"name,value\r\nfoo,1\r\nbar,2\r\n"),
    "csv-the-points-columns": ("out.csv", b"id,lat,lon\na,40.7484,-73.9857\n"),
    "csv-one-line-of-text": ("out.csv", b"hello world"),
    "csv-row-with-missing-fields": ("out.csv", None),
    "csv-not-utf8": ("out.csv", "index,id,lat,lon,ok,error\r\n0,Café,40.7484,-73.9857,false,x\r\n".encode("cp1252")),
    "jsonl-of-another-tool": ("out.jsonl", b'{"foo": 1}\n{"foo": 2}\n'),
    "jsonl-a-bad-line-in-the-middle": ("out.jsonl", None),
    "jsonl-plain-text": ("out.jsonl", b"just some notes, no newline"),
    "jsonl-a-list-per-line": ("out.jsonl", b"[1, 2]\n"),
}


@pytest.mark.parametrize("case", list(FOREIGN), ids=list(FOREIGN))
def test_an_output_that_is_not_ours_is_refused_and_left_alone(tmp_path, fakes, case):
    name, content = FOREIGN[case]
    src, out = _csv(tmp_path, [("a", 40.7484, -73.9857), ("b", 40.7490, -73.9850)]), tmp_path / name
    if content is None:  # one of our outputs, damaged before its last line
        run_batch(src, out, progress=False, chunk=1)
        lines = out.read_bytes().splitlines(keepends=True)
        bad = b"0,a,40.7484\r\n" if name.endswith(".csv") else b"{not json\n"
        content = lines[0] + bad + b"".join(lines[1:])
    out.write_bytes(content)
    with pytest.raises(InvalidInputError, match=r"cannot resume into .*choose a new output file"):
        run_batch(src, out, progress=False)
    assert out.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"points.csv", name})


def test_outputs_that_are_folders_or_the_input_are_refused(tmp_path, fakes):
    src = _csv(tmp_path, [("a", 40.7484, -73.9857)])
    with pytest.raises(InvalidInputError, match="is a directory"):
        run_batch(src, tmp_path, progress=False)
    with pytest.raises(InvalidInputError, match="points file itself"):
        run_batch(src, src, progress=False)
    with pytest.raises(InvalidInputError, match="is a file, not a folder"):
        run_batch(src, src / "out.jsonl", progress=False)
    with pytest.raises(InvalidInputError, match="does not exist"):
        run_batch(src, tmp_path / "nowhere" / "out.jsonl", progress=False)


def test_retry_failed_rewrites_the_csv_whole(tmp_path, fakes):
    src, out = _full_run(tmp_path)
    s = run_batch(src, out, progress=False, retry_failed=True)
    assert (s.skipped, s.failed) == (3, 1)
    _assert_complete_csv(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
