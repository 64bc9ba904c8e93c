"""Shared plumbing of the in-process loopback servers: address, errors, request log, fault handling.

:class:`LoopbackServer` is an in-process threaded HTTP server on 127.0.0.1 with a
:class:`~.faults.Faults` rule book and a log of :class:`RequestRecord`; each server gives it a
handler class built on :class:`FaultHandlerMixin`, which applies the faults before answering
and records every request.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from .faults import FaultDecision, FaultRule, Faults

__all__ = [
    "LOOPBACK",
    "FaultHandlerMixin",
    "HarnessError",
    "HarnessUnavailable",
    "LoopbackHTTPServer",
    "LoopbackServer",
    "RequestRecord",
    "free_port",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class HarnessUnavailable(RuntimeError):
    """A server cannot run here (missing binaries or packages); tests should skip."""


class HarnessError(RuntimeError):
    """A server was available but failed to start or answer (a real failure of the harness)."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago (for servers started as subprocesses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RequestRecord:
    """One request a loopback server received."""

    method: str
    """HTTP method (``GET``, ``HEAD``, ``POST``, ...)."""
    path: str
    """Request path without the query string."""
    query: str
    """Query string ('' when none)."""
    range: str | None
    """The ``Range`` header, or None when the request had none."""
    status: int | None
    """Status sent back, or None when no answer was sent (a hang)."""
    fault: str | None = None
    """The fault applied (``delay:0.05``, ``fail:500``, ``hang``, ``truncate:1024``), or None."""
    time: float = 0.0
    """``time.monotonic()`` when the request arrived."""


class LoopbackHTTPServer(ThreadingHTTPServer):
    """The threaded HTTP server under every loopback harness server (one per :class:`LoopbackServer`)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64  # GDAL opens many connections at once (default backlog is 5)

    def __init__(self, handler: Callable[..., BaseHTTPRequestHandler], owner: LoopbackServer) -> None:
        self.owner = owner
        super().__init__((LOOPBACK, 0), handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints tracebacks to stderr; clients that drop a connection (GDAL aborts
        # transfers it no longer needs, a test's timeout) are normal here: log, never print.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("client %s dropped the connection: %r", client_address, exc)
        else:
            log.exception("error while serving a request from %s", client_address)


class LoopbackServer:
    """An in-process threaded HTTP server on 127.0.0.1 with fault rules and a request log."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults if faults is not None else Faults()
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # subclasses provide the handler class
    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stop.clear()
        self._server = LoopbackHTTPServer(self._handler(), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}-{self.port}", daemon=True)
        self._thread.start()
        log.debug("%s serving at %s", type(self).__name__, self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise HarnessError(f"{type(self).__name__} is not running; call start() or use it as a context manager")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the requests received since start or the last :meth:`reset`."""
        with self._lock:
            return list(self._records)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._records)

    def reset(self) -> None:
        """Forget the recorded requests (the fault rules stay; use ``faults.clear()``)."""
        with self._lock:
            self._records.clear()

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._records.append(rec)


class FaultHandlerMixin(BaseHTTPRequestHandler):
    """Applies the owner's Faults before handling, records every request."""

    disable_nagle_algorithm = True  # small header+range replies: no 40 ms delayed-ACK stalls

    server: LoopbackHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections close after this many seconds
    _decision: FaultDecision
    _recorded: bool
    _t0: float

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self._record(int(code) if str(code).isdigit() else None)
        super().log_request(code, size)

    def _record(self, status: int | None) -> None:
        if getattr(self, "_recorded", False):
            return
        self._recorded = True
        path, _, query = self.path.partition("?")
        self.server.owner._record(RequestRecord(
            method=self.command, path=path, query=query, range=self.headers.get("Range"),
            status=status, fault=getattr(self, "_decision", FaultDecision()).label, time=self._t0,
        ))

    def _apply_faults(self) -> bool:
        """Apply delay/hang/fail; True when the request still needs a normal answer."""
        self._recorded = False
        self._t0 = time.monotonic()
        owner = self.server.owner
        path = self.path.partition("?")[0]
        d = owner.faults.decide(path)
        self._decision = d
        if d.delay_s and owner._stop.wait(d.delay_s):
            self.close_connection = True
            self._record(None)
            return False
        a = d.action
        if a is None or a.kind == "truncate":
            return True
        if a.kind == "hang":
            self._record(None)
            while not (a.released.wait(0.05) or owner._stop.is_set()):
                pass
            self.close_connection = True
            return False
        # fail
        self._drain_body()
        body = json.dumps({"code": "InjectedFault", "description": f"injected HTTP {a.status} for {path}"}).encode()
        self.send_response(a.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if a.retry_after is not None:
            self.send_header("Retry-After", a.retry_after)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return False

    def _drain_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self) -> None:
        if self._apply_faults():
            self._serve()

    def do_HEAD(self) -> None:
        if self._apply_faults():
            self._serve()

    def _serve(self) -> None:  # pragma: no cover - each server's handler answers
        self.send_error(501, "not implemented")

    def _hold_if_stalled(self, rule: FaultRule | None) -> None:
        """After a cut body: for a ``stall`` rule, keep the connection silent until released."""
        if rule is None or not rule.stall:
            return
        self.wfile.flush()
        owner = self.server.owner
        while not (rule.released.wait(0.05) or owner._stop.is_set()):
            pass

    @property
    def _truncation(self) -> FaultRule | None:
        a = getattr(self, "_decision", FaultDecision()).action
        return a if a is not None and a.kind == "truncate" else None
