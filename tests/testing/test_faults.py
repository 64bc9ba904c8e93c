"""Faults: fail, delay, hang and truncate on a loopback server, shared rule books, validation."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import rasterio
from testing.helpers import get, read_via_gdal

from terramind_nyc.testing import CogServer, Faults


def test_fault_fail_then_normal(server: CogServer) -> None:
    server.faults.fail(500, "/a/*", times=2)
    assert get(server.url + "/b.tif")[0] == 200  # pattern does not match
    assert get(server.url + "/a/blob.tif")[0] == 500
    status, _headers, body = get(server.url + "/a/blob.tif")
    assert status == 500 and "injected" in json.loads(body)["description"]
    assert get(server.url + "/a/blob.tif")[0] == 200
    assert [r.fault for r in server.requests] == [None, "fail:500", "fail:500", None]
    assert not server.faults


def test_fault_429_carries_retry_after(server: CogServer) -> None:
    server.faults.fail(429)
    status, headers, _ = get(server.url + "/b.tif")
    assert status == 429 and headers["Retry-After"] == "1"
    server.faults.fail(429, retry_after=0)
    assert get(server.url + "/b.tif")[1]["Retry-After"] == "0"
    server.faults.fail(503, retry_after=2.5)
    assert get(server.url + "/b.tif")[1]["Retry-After"] == "2.5"
    server.faults.fail(404, "*.tif", times=None)
    assert [get(server.url + "/b.tif")[0] for _ in range(3)] == [404, 404, 404]
    server.faults.clear()
    assert get(server.url + "/b.tif")[0] == 200


def test_fault_delay_is_per_request(server: CogServer) -> None:
    server.faults.delay(0.2, "/b.tif")
    t = time.perf_counter()
    assert get(server.url + "/b.tif")[0] == 200
    assert time.perf_counter() - t >= 0.2
    t = time.perf_counter()
    assert get(server.url + "/a/blob.tif")[0] == 200
    assert time.perf_counter() - t < 0.2
    assert server.requests[0].fault == "delay:0.2"


def test_fault_hang_holds_until_cleared(server: CogServer) -> None:
    server.faults.hang("/b.tif")
    t = time.perf_counter()
    with pytest.raises((TimeoutError, OSError)):
        get(server.url + "/b.tif", timeout=0.3)
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
    assert get(server.url + "/b.tif")[0] == 200


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
    assert get(server.url + "/a/blob.tif", headers={"Range": "bytes=0-4095"})[2] == content[:4096]


def test_fault_truncate_short_file(server: CogServer, files: Path) -> None:
    content = (files / "a" / "blob.tif").read_bytes()
    server.faults.truncate("/a/blob.tif", nbytes=1000, short_file=True)
    status, headers, body = get(server.url + "/a/blob.tif")
    assert status == 200 and body == content[:1000] and headers["Content-Length"] == "1000"
    status, headers, body = get(server.url + "/a/blob.tif", headers={"Range": "bytes=900-1999"})
    assert status == 206 and body == content[900:1000] and headers["Content-Range"] == "bytes 900-999/1000"
    assert get(server.url + "/a/blob.tif", headers={"Range": "bytes=2000-2999"})[0] == 416


def test_gdal_sees_truncated_and_missing_cogs_as_errors(fixture_catalog: Any) -> None:
    cat, cogs = fixture_catalog.catalog, fixture_catalog.cog_server
    href = cat.item(cat.expected["clear"]["s2_ids"][0])["assets"]["B08"]["href"]
    cogs.faults.truncate("*/B08.tif", nbytes=2048)
    with pytest.raises(rasterio.errors.RasterioIOError):
        read_via_gdal(href)
    cogs.faults.clear()
    cogs.faults.fail(404, "*/B08.tif", times=None)
    with pytest.raises(rasterio.errors.RasterioIOError):
        read_via_gdal(href)


def test_faults_are_shared_between_servers(files: Path) -> None:
    faults = Faults()
    with CogServer(files, faults=faults) as a, CogServer(files / "a", faults=faults) as b:
        faults.fail(503, "*", times=2)
        assert get(a.url + "/b.tif")[0] == 503
        assert get(b.url + "/blob.tif")[0] == 503
        assert get(a.url + "/b.tif")[0] == 200
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


def test_fault_decisions_are_labelled_and_counted() -> None:
    f = Faults()
    f.delay(0.05, "/a/*")
    f.truncate("/a/*", nbytes=10, times=2)
    f.hang("/b")
    d = f.decide("/a/x")
    assert d.label == "delay:0.05,truncate:10" and d.action is not None and d.action.kind == "truncate"
    assert f.decide("/a/y").action is not None and f.decide("/a/z").action is None  # spent after two
    assert f.decide("/b").label == "hang"
    assert f.active == ["delay('/a/*', times=None)", "hang('/b', times=None)"]
    f.clear()
    assert not f and f.active == []
