"""A Socrata (SODA) endpoint on 127.0.0.1 for the footprint tests: ``/resource/5zhs-2jue.geojson``
with ``$where=within_box(...)``, ``$order``, ``$limit`` / ``$offset`` paging, and injected 503s."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from shapely.geometry import box, mapping, shape

RESOURCE = "/resource/5zhs-2jue.geojson"


def multipolygon_features(geoms: Iterable[Any]) -> list[dict[str, Any]]:
    """WGS84 polygons as GeoJSON MultiPolygon features, as NYC Open Data serves footprints."""
    return [{"type": "Feature", "properties": {"bin": str(i)},
             "geometry": {"type": "MultiPolygon", "coordinates": [mapping(g)["coordinates"]]}}
            for i, g in enumerate(geoms)]


class SocrataServer(ThreadingHTTPServer):
    """Serves ``features``; records each request's query in ``requests``; answers 503 to the
    next ``fail_first`` requests. A context manager that serves in a background thread."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.features = features
        self.requests: list[dict[str, list[str]]] = []
        self.fail_first = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def __enter__(self) -> SocrataServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: SocrataServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        q = parse_qs(url.query)
        self.server.requests.append(q)
        if self.server.fail_first > 0:
            self.server.fail_first -= 1
            self._send(503, b"")
            return
        if url.path != RESOURCE:
            self._send(404, b"")
            return
        m = re.match(r"within_box\(the_geom, ([-\d.]+), ([-\d.]+), ([-\d.]+), ([-\d.]+)\)", q["$where"][0])
        assert m, q["$where"]
        n_lat, w_lon, s_lat, e_lon = map(float, m.groups())
        sel = [f for f in self.server.features if box(w_lon, s_lat, e_lon, n_lat).intersects(shape(f["geometry"]))]
        off, lim = int(q["$offset"][0]), int(q["$limit"][0])
        self._send(200, json.dumps({"type": "FeatureCollection", "features": sel[off:off + lim]}).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
