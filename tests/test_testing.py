"""The test harness itself: servers, faults, generated fixture data, the real chip."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

from terramind_nyc.grid import ChipGrid
from terramind_nyc.settings import Settings
from terramind_nyc.testing import (
    S1_NODATA,
    S2_BANDS,
    S2_OFFSET,
    S2_RESOLUTION,
    SCENARIOS,
    CogServer,
    FaultProxy,
    Faults,
    HarnessError,
    PgstacServer,
    RealChip,
    StacServer,
    baseline_has_offset,
    chip_fractions,
    fixture_elevation,
)

GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
            "GDAL_HTTP_MAX_RETRY": "0", "GDAL_HTTP_TIMEOUT": "5"}


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def _get(url: str, *, headers: dict[str, str] | None = None, method: str = "GET", body: bytes | None = None,
         timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "blob.tif").write_bytes(bytes(range(256)) * 64)  # 16 KiB, known content
    (tmp_path / "b.tif").write_bytes(b"x" * 1000)
    return tmp_path


@pytest.fixture
def server(files: Path) -> Iterator[CogServer]:
    with CogServer(files) as s:
        yield s


def _read_via_gdal(href: str, window: Any = None) -> np.ndarray:
    with rasterio.Env(**GDAL_ENV), rasterio.open(href) as ds:
        return ds.read(1, window=window)


def _grid_read(path_or_href: str, grid: ChipGrid, *, resampling: Resampling, dtype: str = "float64",
               nodata: float | None = None) -> np.ndarray:
    """Independent reference read (rasterio.warp.reproject) of one band onto a chip grid."""
    out = np.zeros(grid.shape, dtype=dtype)
    with rasterio.Env(**GDAL_ENV), rasterio.open(path_or_href) as ds:
        reproject(rasterio.band(ds, 1), out, dst_transform=grid.transform, dst_crs=grid.crs,
                  resampling=resampling, src_nodata=nodata if nodata is not None else ds.nodata, dst_nodata=0)
    return out


# ----------------------------------------------------------------------------------------
# CogServer
# ----------------------------------------------------------------------------------------
def test_cog_server_serves_ranges(server: CogServer, files: Path) -> None:
    content = (files / "a" / "blob.tif").read_bytes()
    status, headers, body = _get(server.url + "/a/blob.tif", headers={"Range": "bytes=100-199"})
    assert status == 206
    assert body == content[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(content)}"
    assert headers["Accept-Ranges"] == "bytes"
    status, _, body = _get(server.url + "/a/blob.tif", headers={"Range": "bytes=16000-"})
    assert status == 206 and body == content[16000:]
    status, _, body = _get(server.url + "/a/blob.tif")
    assert status == 200 and body == content
    status, headers, body = _get(server.url + "/a/blob.tif", method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(content))
    status, _, _ = _get(server.url + "/a/blob.tif", headers={"Range": "bytes=99999-"})
    assert status == 416


def test_cog_server_records_requests_and_resets(server: CogServer) -> None:
    _get(server.url + "/a/blob.tif?x=1", headers={"Range": "bytes=0-9"})
    _get(server.url + "/missing.tif")
    _get(server.url + "/a/")  # directory: no listing, as on object stores
    recs = server.requests
    assert [(r.method, r.path, r.query, r.range, r.status) for r in recs] == [
        ("GET", "/a/blob.tif", "x=1", "bytes=0-9", 206),
        ("GET", "/missing.tif", "", None, 404),
        ("GET", "/a/", "", None, 404),
    ]
    assert server.request_count == 3
    server.reset()
    assert server.request_count == 0 and server.requests == []


def test_cog_server_may_start_on_an_empty_folder(tmp_path: Path) -> None:
    with CogServer(tmp_path / "later") as s:
        assert _get(s.url + "/f.tif")[0] == 404
        (tmp_path / "later" / "f.tif").write_bytes(b"abc")
        assert _get(s.url + "/f.tif")[2] == b"abc"
    with pytest.raises(HarnessError, match="not running"):
        _ = s.url


def test_gdal_reads_a_cog_over_http_without_probes(fixture_catalog: Any) -> None:
    cat, cogs = fixture_catalog.catalog, fixture_catalog.cog_server
    item = cat.item(cat.expected["clear"]["s2_ids"][0])
    href = item["assets"]["B04"]["href"]
    local = cat.root / href[len(cat.base_url) + 1:]
    with rasterio.open(local) as ds:
        ref = ds.read(1)
    assert np.array_equal(_read_via_gdal(href), ref)
    recs = cogs.requests
    assert recs and all(r.path.endswith("/B04.tif") for r in recs), recs  # no listing, no sidecars
    assert all(r.status in (200, 206) for r in recs)
    assert any(r.range for r in recs)


# ----------------------------------------------------------------------------------------
# Faults
# ----------------------------------------------------------------------------------------
def test_fault_fail_then_normal(server: CogServer) -> None:
    server.faults.fail(500, "/a/*", times=2)
    assert _get(server.url + "/b.tif")[0] == 200  # pattern does not match
    assert _get(server.url + "/a/blob.tif")[0] == 500
    status, _headers, body = _get(server.url + "/a/blob.tif")
    assert status == 500 and "injected" in json.loads(body)["description"]
    assert _get(server.url + "/a/blob.tif")[0] == 200
    assert [r.fault for r in server.requests] == [None, "fail:500", "fail:500", None]
    assert not server.faults


def test_fault_429_carries_retry_after(server: CogServer) -> None:
    server.faults.fail(429)
    status, headers, _ = _get(server.url + "/b.tif")
    assert status == 429 and headers["Retry-After"] == "1"
    server.faults.fail(429, retry_after=0)
    assert _get(server.url + "/b.tif")[1]["Retry-After"] == "0"
    server.faults.fail(503, retry_after=2.5)
    assert _get(server.url + "/b.tif")[1]["Retry-After"] == "2.5"
    server.faults.fail(404, "*.tif", times=None)
    assert [_get(server.url + "/b.tif")[0] for _ in range(3)] == [404, 404, 404]
    server.faults.clear()
    assert _get(server.url + "/b.tif")[0] == 200


def test_fault_delay_is_per_request(server: CogServer) -> None:
    server.faults.delay(0.2, "/b.tif")
    t = time.perf_counter()
    assert _get(server.url + "/b.tif")[0] == 200
    assert time.perf_counter() - t >= 0.2
    t = time.perf_counter()
    assert _get(server.url + "/a/blob.tif")[0] == 200
    assert time.perf_counter() - t < 0.2
    assert server.requests[0].fault == "delay:0.2"


def test_fault_hang_holds_until_cleared(server: CogServer) -> None:
    server.faults.hang("/b.tif")
    t = time.perf_counter()
    with pytest.raises((TimeoutError, OSError)):
        _get(server.url + "/b.tif", timeout=0.3)
    assert 0.25 < time.perf_counter() - t < 2.0
    assert server.requests[-1].status is None and server.requests[-1].fault == "hang"
    # a hung request is released (connection closed, no answer) when the faults are cleared
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/b.tif")
    releaser = threading.Timer(0.2, server.faults.clear)
    releaser.start()
    t = time.perf_counter()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()
    assert time.perf_counter() - t < 2.0
    conn.close()
    assert _get(server.url + "/b.tif")[0] == 200


def test_fault_truncate_cuts_the_body(server: CogServer, files: Path) -> None:
    content = (files / "a" / "blob.tif").read_bytes()
    server.faults.truncate("/a/blob.tif", nbytes=100, times=1)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/a/blob.tif", headers={"Range": "bytes=0-4095"})
    resp = conn.getresponse()
    assert resp.status == 206 and resp.getheader("Content-Length") == "4096"
    with pytest.raises(http.client.IncompleteRead) as exc:
        resp.read()
    assert exc.value.partial == content[:100]
    conn.close()
    assert _get(server.url + "/a/blob.tif", headers={"Range": "bytes=0-4095"})[2] == content[:4096]


def test_fault_truncate_short_file(server: CogServer, files: Path) -> None:
    content = (files / "a" / "blob.tif").read_bytes()
    server.faults.truncate("/a/blob.tif", nbytes=1000, short_file=True)
    status, headers, body = _get(server.url + "/a/blob.tif")
    assert status == 200 and body == content[:1000] and headers["Content-Length"] == "1000"
    status, headers, body = _get(server.url + "/a/blob.tif", headers={"Range": "bytes=900-1999"})
    assert status == 206 and body == content[900:1000] and headers["Content-Range"] == "bytes 900-999/1000"
    assert _get(server.url + "/a/blob.tif", headers={"Range": "bytes=2000-2999"})[0] == 416


def test_gdal_sees_truncated_and_missing_cogs_as_errors(fixture_catalog: Any) -> None:
    cat, cogs = fixture_catalog.catalog, fixture_catalog.cog_server
    href = cat.item(cat.expected["clear"]["s2_ids"][0])["assets"]["B08"]["href"]
    cogs.faults.truncate("*/B08.tif", nbytes=2048)
    with pytest.raises(rasterio.errors.RasterioIOError):
        _read_via_gdal(href)
    cogs.faults.clear()
    cogs.faults.fail(404, "*/B08.tif", times=None)
    with pytest.raises(rasterio.errors.RasterioIOError):
        _read_via_gdal(href)


def test_dropped_connections_are_logged_not_printed(server: CogServer, capfd: pytest.CaptureFixture[str]) -> None:
    import socket
    import struct

    for _ in range(3):  # ask for the whole file, then reset the connection at once
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"GET /a/blob.tif HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(0.3)
    assert _get(server.url + "/b.tif")[0] == 200  # still serving
    assert "Traceback" not in capfd.readouterr().err


def test_fault_proxy_truncates_json(faulty_stac: FaultProxy) -> None:
    faulty_stac.faults.truncate("/collections", nbytes=50)
    conn = http.client.HTTPConnection("127.0.0.1", faulty_stac.port, timeout=5)
    conn.request("GET", "/collections")
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.getheader("Content-Length") or 0) > 50
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    conn.close()
    faulty_stac.faults.clear()
    faulty_stac.faults.truncate("/collections", nbytes=50, short_file=True, times=1)
    status, _, body = _get(faulty_stac.url + "/collections")
    assert status == 200 and len(body) == 50
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert json.loads(_get(faulty_stac.url + "/collections")[2])["collections"]


def test_faults_are_shared_between_servers(files: Path) -> None:
    faults = Faults()
    with CogServer(files, faults=faults) as a, CogServer(files / "a", faults=faults) as b:
        faults.fail(503, "*", times=2)
        assert _get(a.url + "/b.tif")[0] == 503
        assert _get(b.url + "/blob.tif")[0] == 503
        assert _get(a.url + "/b.tif")[0] == 200
        assert faults.active == []


def test_faults_validate_arguments() -> None:
    f = Faults()
    with pytest.raises(ValueError):
        f.fail(200)
    with pytest.raises(ValueError):
        f.delay(-1)
    with pytest.raises(ValueError):
        f.truncate(nbytes=-1)
    with pytest.raises(ValueError):
        f.fail(500, times=0)

    f.delay(0.1, "/x")
    f.fail(500, "/x", times=1)
    d = f.decide("/x")
    assert d.delay_s == pytest.approx(0.1) and d.action is not None and d.action.status == 500
    d = f.decide("/x")
    assert d.action is None and d.delay_s == pytest.approx(0.1)
    assert f.decide("/y").label is None


# ----------------------------------------------------------------------------------------
# STAC servers
# ----------------------------------------------------------------------------------------
def _search(url: str, **params: Any) -> dict[str, Any]:
    status, _, body = _get(url + "/search", method="POST", body=json.dumps(params).encode(),
                           headers={"Content-Type": "application/json"})
    assert status == 200, body[:500]
    return json.loads(body)


def _ids(doc: dict[str, Any]) -> list[str]:
    return [f["id"] for f in doc["features"]]


def test_rustac_searches_by_collection_bbox_and_datetime(fixture_catalog: Any, stac_server: StacServer) -> None:
    cat = fixture_catalog.catalog
    bbox = list(cat.grid("clear").bounds_4326)
    exp = cat.expected["clear"]
    got = _ids(_search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox,
                       datetime="2024-05-01T00:00:00Z/2024-07-31T23:59:59Z", limit=100))
    assert got == exp["s2_ids"]
    got = _ids(_search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100))
    assert sorted(got) == sorted(exp["s2_candidates"])
    got = _ids(_search(stac_server.url, collections=["sentinel-1-rtc"], bbox=bbox, limit=100))
    assert sorted(got) == sorted(exp["s1_ids"])
    got = _ids(_search(stac_server.url, collections=["cop-dem-glo-30"], bbox=bbox, limit=100))
    assert got == exp["dem_ids"]
    # GET form, and the collections endpoint
    status, _, body = _get(stac_server.url + "/search?collections=sentinel-1-rtc&bbox="
                           + ",".join(map(str, cat.grid("no_s1").bounds_4326)))
    assert status == 200 and json.loads(body)["features"] == []
    status, _, body = _get(stac_server.url + "/collections")
    assert {c["id"] for c in json.loads(body)["collections"]} == {"sentinel-2-l2a", "sentinel-1-rtc",
                                                                    "cop-dem-glo-30"}


def test_rustac_query_filter_sortby_behaviour(fixture_catalog: Any, stac_server: StacServer) -> None:
    """Pin what rustac does with the extensions it lacks (so the client must not rely on them).

    rustac 0.9 advertises no query/filter/sort conformance. It ignores `sortby`, but a POST
    search carrying `query` or `filter` returns NO items at all (not "ignored"): a client must
    check /conformance and filter on its own side when the server lacks the extension.
    """
    cat = fixture_catalog.catalog
    _status, _, body = _get(stac_server.url + "/conformance")
    conf = " ".join(json.loads(body)["conformsTo"])
    assert "item-search" in conf
    assert "#query" not in conf and "filter" not in conf and "#sort" not in conf
    bbox = list(cat.grid("all_cloudy").bounds_4326)
    every = _ids(_search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100))
    assert sorted(every) == sorted(cat.expected["all_cloudy"]["s2_candidates"])
    asc = _ids(_search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100,
                       sortby=[{"field": "properties.eo:cloud_cover", "direction": "asc"}]))
    assert asc == every  # sortby ignored
    assert _search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100,
                   query={"eo:cloud_cover": {"lt": 80}})["features"] == []
    assert _search(stac_server.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=100, **{
        "filter-lang": "cql2-json", "filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 80]}},
    )["features"] == []


def test_fault_proxy_forwards_and_injects(fixture_catalog: Any, faulty_stac: FaultProxy) -> None:
    cat = fixture_catalog.catalog
    bbox = list(cat.grid("tile_edge").bounds_4326)
    faulty_stac.faults.fail(503, "/search", times=1)
    faulty_stac.faults.fail(429, "/search", times=1, retry_after=0)
    status, _, _ = _get(faulty_stac.url + "/search", method="POST", body=b"{}",
                        headers={"Content-Type": "application/json"})
    assert status == 503
    status, headers, _ = _get(faulty_stac.url + "/search", method="POST", body=b"{}",
                              headers={"Content-Type": "application/json"})
    assert status == 429 and headers["Retry-After"] == "0"
    doc = _search(faulty_stac.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=1)
    assert len(doc["features"]) == 1
    # every link points back at the proxy, so paging stays behind it
    hrefs = [lk["href"] for lk in doc["links"]] + [lk["href"] for f in doc["features"] for lk in f["links"]]
    assert hrefs and all(h.startswith(faulty_stac.url) for h in hrefs)
    nxt = [lk for lk in doc["links"] if lk["rel"] == "next"]
    assert nxt, "limit=1 over 3 items must page"
    assert [r.status for r in faulty_stac.requests] == [503, 429, 200]


def test_fault_proxy_hang_and_upstream_down(faulty_stac: FaultProxy) -> None:
    faulty_stac.faults.hang("/search")
    with pytest.raises((TimeoutError, OSError)):
        _get(faulty_stac.url + "/search", timeout=0.3)
    faulty_stac.faults.clear()
    assert _get(faulty_stac.url + "/")[0] == 200
    from terramind_nyc.testing import free_port

    with FaultProxy(f"http://127.0.0.1:{free_port()}") as dead:
        status, _, body = _get(dead.url + "/search")
        assert status == 502 and b"upstream" in body


def test_pystac_client_through_the_proxy(fixture_catalog: Any, faulty_stac: FaultProxy) -> None:
    from pystac_client import Client

    cat = fixture_catalog.catalog
    client = Client.open(faulty_stac.url)
    search = client.search(collections=["sentinel-2-l2a"], bbox=cat.grid("cloudy_vs_clear").bounds_4326,
                           datetime="2024-05-01/2024-07-31", limit=1)
    assert sorted(i.id for i in search.items()) == sorted(cat.expected["cloudy_vs_clear"]["s2_candidates"])
    assert sum(r.path == "/search" for r in faulty_stac.requests) >= 3  # paged through the proxy


def test_stac_server_rejects_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        StacServer(tmp_path / "nope.json")


def test_pgstac_reports_what_is_missing() -> None:
    missing = PgstacServer.missing()
    assert isinstance(missing, list) and all(isinstance(m, str) for m in missing)
    assert PgstacServer.available() == (not missing)


# ----------------------------------------------------------------------------------------
# Fixture data: realistic values
# ----------------------------------------------------------------------------------------
def _local(cat: Any, href: str) -> Path:
    assert href.startswith(cat.base_url + "/cogs/")
    return Path(cat.root) / href[len(cat.base_url) + 1:]


def test_fixture_items_are_valid_stac(fixture_catalog: Any) -> None:
    import pystac

    cat = fixture_catalog.catalog
    items = cat.items()
    assert {it["collection"] for it in items} == {"sentinel-2-l2a", "sentinel-1-rtc", "cop-dem-glo-30"}
    for it in items:
        pystac.Item.from_dict(it)
        for a in it["assets"].values():
            assert _local(cat, a["href"]).exists()
            assert "?" not in a["href"]
    s2 = [it for it in items if it["collection"] == "sentinel-2-l2a"]
    assert any("proj:epsg" in it["properties"] for it in s2) and any("proj:code" in it["properties"] for it in s2)
    assert {it["properties"]["s2:processing_baseline"] for it in s2} >= {"02.14", "04.00", "05.10"}
    for it in s2:
        assert set(it["assets"]) == {*S2_BANDS, "SCL"}
        assert 0 <= it["properties"]["eo:cloud_cover"] <= 100


def test_fixture_points_are_in_nyc_and_scenarios_complete(fixture_catalog: Any) -> None:
    from terramind_nyc.grid import validate_location

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
        with rasterio.open(_local(cat, it["assets"]["SCL"]["href"])) as ds:
            scl = ds.read(1)
            scl_bounds = ds.bounds
            assert ds.res == (20.0, 20.0) and ds.dtypes[0] == "uint8" and ds.nodata == 0
        assert set(np.unique(scl)) <= {0, 2, 3, 4, 5, 6, 7, 8, 9, 10}
        for b in ("B01", "B02", "B04", "B05", "B8A", "B09", "B12"):
            with rasterio.open(_local(cat, it["assets"][b]["href"])) as ds:
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
        with rasterio.open(_local(cat, it["assets"]["B04"]["href"])) as ds:
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
            with rasterio.open(_local(cat, it["assets"][pol]["href"])) as ds:
                a = ds.read(1)
                assert ds.dtypes[0] == "float32" and ds.nodata == S1_NODATA and ds.res == (10.0, 10.0)
            valid = a[a != S1_NODATA]
            assert (a == S1_NODATA).any() and valid.size > 0.5 * a.size
            assert valid.min() > 0 and valid.max() < 20  # linear power, not dB
            db = 10 * np.log10(valid)
            assert (-30 < np.median(db) < -3), (it["id"], pol, np.median(db))
        # the nodata stripe lies outside the chip
        g = cat.grid(cat.item_facts[it["id"]]["scenario"])
        chip = _grid_read(str(_local(cat, it["assets"]["vv"]["href"])), g, resampling=Resampling.nearest,
                          nodata=S1_NODATA)
        assert (chip > 0).all()


def test_fixture_dem_is_4326_30m_and_matches_the_truth(fixture_catalog: Any) -> None:
    cat = fixture_catalog.catalog
    dems = [it for it in cat.items() if it["collection"] == "cop-dem-glo-30"]
    assert dems
    for it in dems:
        with rasterio.open(_local(cat, it["assets"]["data"]["href"])) as ds:
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
    chip = _grid_read(str(_local(cat, it["assets"]["data"]["href"])), g, resampling=Resampling.bilinear)
    rr, cc = np.mgrid[0:g.height, 0:g.width]
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(g.crs, "EPSG:4326", always_xy=True).transform(
        g.bounds[0] + (cc + 0.5) * 10, g.bounds[3] - (rr + 0.5) * 10)
    assert np.abs(chip - fixture_elevation(lon, lat)).max() < 0.2


def _chip_scl(cat: Any, iid: str, grid: ChipGrid) -> np.ndarray:
    href = cat.item(iid)["assets"]["SCL"]["href"]
    return _grid_read(str(_local(cat, href)), grid, resampling=Resampling.nearest, dtype="uint8", nodata=0)


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


# ----------------------------------------------------------------------------------------
# The real chip
# ----------------------------------------------------------------------------------------
def test_real_chip_serves_the_source_values(real_chip: RealChip) -> None:
    rc = real_chip
    assert rc.grid.crs == "EPSG:32718" and rc.grid.shape == (224, 224)
    items = {it["collection"]: it for it in rc.items()}
    s2 = items["sentinel-2-l2a"]
    assert s2["properties"]["s2:processing_baseline"] == "04.00"
    assert rc.s2_dn.min() >= 969  # the offset is in the source
    for i, b in enumerate(S2_BANDS):
        a = _read_via_gdal(s2["assets"][b]["href"])
        assert np.array_equal(a, rc.s2_dn[i]), b
    with rasterio.Env(**GDAL_ENV), rasterio.open(s2["assets"]["B02"]["href"]) as ds:
        assert tuple(ds.bounds) == pytest.approx(rc.grid.bounds)
    for i, pol in enumerate(("vv", "vh")):
        lin = _read_via_gdal(items["sentinel-1-rtc"]["assets"][pol]["href"])
        assert lin.dtype == np.float32 and (lin > 0).all()
        assert np.abs(10 * np.log10(lin.astype(np.float64)) - rc.s1_db[i]).max() < 1e-4
    dem = items["cop-dem-glo-30"]
    with rasterio.Env(**GDAL_ENV), rasterio.open(dem["assets"]["data"]["href"]) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.res == pytest.approx((1 / 3600, 1 / 3600))
    back = _grid_read(dem["assets"]["data"]["href"], rc.grid, resampling=Resampling.bilinear)
    assert np.abs(back - rc.dem).max() <= rc.dem_roundtrip_error_m + 1e-3
    assert 0 < rc.dem_roundtrip_error_m < 15


def test_real_chip_settings(real_chip: RealChip) -> None:
    s = real_chip.settings()
    assert s.crs == "EPSG:32718" and s.domain_check is False and s.catalog_provider == "local"
    assert Path(s.catalog_path or "") == real_chip.items_path
    lat, _lon = real_chip.center
    assert -39 < lat < -38.7


def test_testing_package_imports_without_torch() -> None:
    code = ("import sys, terramind_nyc.testing, terramind_nyc.grid; "
            "print(','.join(m for m in ('torch', 'terratorch', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
