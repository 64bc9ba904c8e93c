"""A fault-injecting reverse proxy on 127.0.0.1 in front of a STAC API (or any plain HTTP URL)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from .faults import Faults
from .loopback import FaultHandlerMixin, LoopbackServer

__all__ = ["FaultProxy"]

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"}


class _ProxyHandler(FaultHandlerMixin):
    def do_GET(self) -> None:
        self._proxy()

    def do_HEAD(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def do_OPTIONS(self) -> None:
        self._proxy()

    def _proxy(self) -> None:
        if not self._apply_faults():
            return
        owner: FaultProxy = self.server.owner  # type: ignore[assignment]
        body = self._drain_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        target = owner._upstream_path + self.path
        try:
            conn = http.client.HTTPConnection(owner._upstream_host, owner._upstream_port, timeout=owner.upstream_timeout)
            try:
                conn.request(self.command, target, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status, resp_headers = resp.status, resp.getheaders()
            finally:
                conn.close()
        except OSError as exc:
            msg = json.dumps({"code": "BadGateway", "description": f"upstream {owner.upstream}: {exc}"}).encode()
            self.send_response(502)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        data = data.replace(owner.upstream.encode(), owner.url.encode())
        rule = self._truncation
        declared = len(data)
        if rule is not None:
            data = data[: rule.nbytes]
            if rule.short_file:
                declared = len(data)
            self.close_connection = True
        self.send_response(status)
        for k, v in resp_headers:
            if k.lower() not in _HOP_BY_HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
            self._hold_if_stalled(rule)


class FaultProxy(LoopbackServer):
    """A reverse proxy on 127.0.0.1 in front of ``upstream`` (a STAC API or any HTTP URL).

    Requests are forwarded as they are (method, path, query, body, headers); before that the
    proxy applies :attr:`faults`. Upstream URLs in response bodies (``links`` of a STAC API)
    are rewritten to the proxy's, so a client that follows ``next`` links stays behind it.
    """

    def __init__(self, upstream: str, *, faults: Faults | None = None, upstream_timeout: float = 60.0) -> None:
        super().__init__(faults)
        self.upstream = upstream.rstrip("/")
        u = urlsplit(self.upstream)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"FaultProxy forwards to a plain http:// URL, got {upstream!r}")
        self._upstream_host = u.hostname
        self._upstream_port = u.port or 80
        self._upstream_path = u.path.rstrip("/")
        self.upstream_timeout = upstream_timeout

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        return _ProxyHandler
