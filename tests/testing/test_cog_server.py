"""CogServer: Range requests, the request log, no listings, GDAL over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from testing.helpers import get, read_via_gdal

from terramind_nyc.testing import CogServer, HarnessError


def test_cog_server_serves_ranges(server: CogServer, files: Path) -> None:
    content = (files / "a" / "blob.tif").read_bytes()
    status, headers, body = get(server.url + "/a/blob.tif", headers={"Range": "bytes=100-199"})
    assert status == 206
    assert body == content[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(content)}"
    assert headers["Accept-Ranges"] == "bytes"
    status, _, body = get(server.url + "/a/blob.tif", headers={"Range": "bytes=16000-"})
    assert status == 206 and body == content[16000:]
    status, _, body = get(server.url + "/a/blob.tif")
    assert status == 200 and body == content
    status, headers, body = get(server.url + "/a/blob.tif", method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(content))
    status, _, _ = get(server.url + "/a/blob.tif", headers={"Range": "bytes=99999-"})
    assert status == 416


def test_cog_server_records_requests_and_resets(server: CogServer) -> None:
    get(server.url + "/a/blob.tif?x=1", headers={"Range": "bytes=0-9"})
    get(server.url + "/missing.tif")
    get(server.url + "/a/")  # directory: no listing, as on object stores
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
        assert get(s.url + "/f.tif")[0] == 404
        (tmp_path / "later" / "f.tif").write_bytes(b"abc")
        assert get(s.url + "/f.tif")[2] == b"abc"
    with pytest.raises(HarnessError, match="not running"):
        _ = s.url


def test_gdal_reads_a_cog_over_http_without_probes(fixture_catalog: Any) -> None:
    cat, cogs = fixture_catalog.catalog, fixture_catalog.cog_server
    item = cat.item(cat.expected["clear"]["s2_ids"][0])
    href = item["assets"]["B04"]["href"]
    local = cat.root / href[len(cat.base_url) + 1:]
    with rasterio.open(local) as ds:
        ref = ds.read(1)
    assert np.array_equal(read_via_gdal(href), ref)
    recs = cogs.requests
    assert recs and all(r.path.endswith("/B04.tif") for r in recs), recs  # no listing, no sidecars
    assert all(r.status in (200, 206) for r in recs)
    assert any(r.range for r in recs)


def test_dropped_connections_are_logged_not_printed(server: CogServer, capfd: pytest.CaptureFixture[str]) -> None:
    import socket
    import struct

    for _ in range(3):  # ask for the whole file, then reset the connection at once
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"GET /a/blob.tif HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(0.3)
    assert get(server.url + "/b.tif")[0] == 200  # still serving
    assert "Traceback" not in capfd.readouterr().err
