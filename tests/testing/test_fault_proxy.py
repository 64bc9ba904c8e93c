"""FaultProxy in front of rustac: forwarding, link rewriting, injected faults, a dead upstream."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
from testing.helpers import get, search

from terramind_nyc.testing import FaultProxy


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
    status, _, body = get(faulty_stac.url + "/collections")
    assert status == 200 and len(body) == 50
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert json.loads(get(faulty_stac.url + "/collections")[2])["collections"]


def test_fault_proxy_forwards_and_injects(fixture_catalog: Any, faulty_stac: FaultProxy) -> None:
    cat = fixture_catalog.catalog
    bbox = list(cat.grid("tile_edge").bounds_4326)
    faulty_stac.faults.fail(503, "/search", times=1)
    faulty_stac.faults.fail(429, "/search", times=1, retry_after=0)
    status, _, _ = get(faulty_stac.url + "/search", method="POST", body=b"{}",
                       headers={"Content-Type": "application/json"})
    assert status == 503
    status, headers, _ = get(faulty_stac.url + "/search", method="POST", body=b"{}",
                             headers={"Content-Type": "application/json"})
    assert status == 429 and headers["Retry-After"] == "0"
    doc = search(faulty_stac.url, collections=["sentinel-2-l2a"], bbox=bbox, limit=1)
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
        get(faulty_stac.url + "/search", timeout=0.3)
    faulty_stac.faults.clear()
    assert get(faulty_stac.url + "/")[0] == 200
    from terramind_nyc.testing import free_port

    with FaultProxy(f"http://127.0.0.1:{free_port()}") as dead:
        status, _, body = get(dead.url + "/search")
        assert status == 502 and b"upstream" in body


def test_pystac_client_through_the_proxy(fixture_catalog: Any, faulty_stac: FaultProxy) -> None:
    from pystac_client import Client

    cat = fixture_catalog.catalog
    client = Client.open(faulty_stac.url)
    search = client.search(collections=["sentinel-2-l2a"], bbox=cat.grid("cloudy_vs_clear").bounds_4326,
                           datetime="2024-05-01/2024-07-31", limit=1)
    assert sorted(i.id for i in search.items()) == sorted(cat.expected["cloudy_vs_clear"]["s2_candidates"])
    assert sum(r.path == "/search" for r in faulty_stac.requests) >= 3  # paged through the proxy
