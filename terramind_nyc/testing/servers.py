"""Loopback servers for tests: a Range-capable COG server, STAC APIs and a fault-injecting proxy.

Every server binds 127.0.0.1 on a free port, starts in the background, and is a context
manager that stops it again::

    with CogServer(root) as cogs:                        # serves files under root, Range included
        cat = build_fixture_catalog(root, cogs.url)
        with StacServer(cat.items_path) as stac, FaultProxy(stac.url) as proxy:
            proxy.faults.fail(503, "/search", times=2)  # the next two searches fail
            ...
            cogs.faults.delay(0.05)                       # 50 ms per COG request
            cogs.request_count, cogs.requests             # what the reader asked for

:class:`Faults` is the shared, thread-safe rule book: delay, hang, fail (500/429/404/...)
and truncate, each matched with :func:`fnmatch.fnmatchcase` against the request path (no
query string). :class:`CogServer` and :class:`FaultProxy` consult it for every request.

:class:`StacServer` runs ``rustac serve`` (in-memory backend: collections, bbox, intersects,
datetime and ids work; ``query``, ``filter`` and ``sortby`` are ignored, as on some real
servers). :class:`PgstacServer` runs the stack Planetary Computer runs: PostgreSQL + PostGIS
with pgstac and stac-fastapi-pgstac under uvicorn; it raises :class:`HarnessUnavailable`
when the PostgreSQL binaries or the Python packages are missing, so tests can skip.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, Self
from urllib.parse import urlsplit

try:
    from RangeHTTPServer import RangeRequestHandler, parse_byte_range
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "terramind_nyc.testing needs the `rangehttpserver` package: pip install 'terramind-nyc[dev]'"
    ) from _exc

__all__ = [
    "CogServer",
    "FaultProxy",
    "Faults",
    "HarnessError",
    "HarnessUnavailable",
    "HubServer",
    "PgstacServer",
    "RequestRecord",
    "StacServer",
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


# ----------------------------------------------------------------------------------------
# Faults
# ----------------------------------------------------------------------------------------
FaultKind = Literal["delay", "hang", "fail", "truncate"]


@dataclass
class _Rule:
    kind: FaultKind
    pattern: str
    times: int | None  # None: every matching request
    seconds: float = 0.0
    status: int = 0
    retry_after: str | None = None
    nbytes: int = 0
    short_file: bool = False
    released: threading.Event = field(default_factory=threading.Event)
    hits: int = 0


@dataclass(frozen=True)
class _Decision:
    delay_s: float = 0.0
    action: _Rule | None = None

    @property
    def label(self) -> str | None:
        parts = []
        if self.delay_s:
            parts.append(f"delay:{self.delay_s:g}")
        if self.action is not None:
            a = self.action
            parts.append({"hang": "hang", "fail": f"fail:{a.status}",
                          "truncate": f"truncate:{a.nbytes}"}.get(a.kind, a.kind))
        return ",".join(parts) or None


class Faults:
    """Thread-safe fault rules, matched by ``fnmatch`` pattern on the request path.

    Rules apply in the order they were added: every matching ``delay`` adds its latency, then
    the first matching ``hang``, ``fail`` or ``truncate`` with uses left decides the answer.
    ``times=None`` means every matching request; a number counts down, then the rule is spent
    and requests are served normally. One ``Faults`` may be shared by several servers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []

    # --- rules ---------------------------------------------------------------------------
    def delay(self, seconds: float, pattern: str = "*", *, times: int | None = None) -> None:
        """Add ``seconds`` of latency before answering each matching request."""
        if seconds < 0:
            raise ValueError(f"delay must be >= 0 s, got {seconds}")
        self._add(_Rule("delay", pattern, times, seconds=float(seconds)))

    def hang(self, pattern: str = "*", *, times: int | None = None) -> None:
        """Never answer matching requests: hold the connection until :meth:`clear` or server stop,
        then close it without a response."""
        self._add(_Rule("hang", pattern, times))

    def fail(self, status: int, pattern: str = "*", times: int | None = 1, *,
             retry_after: float | None = None) -> None:
        """Answer matching requests with HTTP ``status`` (e.g. 500, 503, 429, 404), ``times`` times.

        A 429 or 503 carries ``Retry-After: retry_after`` seconds (default 1 for 429, none for
        503); other statuses carry it only when ``retry_after`` is given.
        """
        if not 400 <= int(status) <= 599:
            raise ValueError(f"fail() injects an HTTP error status 400..599, got {status}")
        if retry_after is None and int(status) == 429:
            retry_after = 1
        ra = None if retry_after is None else f"{retry_after:g}"
        self._add(_Rule("fail", pattern, times, status=int(status), retry_after=ra))

    def truncate(self, pattern: str = "*", nbytes: int = 1024, *, times: int | None = None,
                 short_file: bool = False) -> None:
        """Serve cut-off bodies for matching requests.

        Default: the headers promise the full body (Content-Length), only ``nbytes`` of it are
        sent, then the connection closes (a transfer that dies midway). ``short_file=True``
        instead serves the file as if it were only ``nbytes`` long, with consistent headers
        (a truncated upload): ranges beyond it get 416, ranges across its end come back short.
        """
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        self._add(_Rule("truncate", pattern, times, nbytes=int(nbytes), short_file=short_file))

    def clear(self) -> None:
        """Remove every rule and release requests held by :meth:`hang`."""
        with self._lock:
            rules, self._rules = self._rules, []
        for r in rules:
            r.released.set()

    @property
    def active(self) -> list[str]:
        """A description of the rules still in force (for assertion messages and logs)."""
        with self._lock:
            return [f"{r.kind}({r.pattern!r}, times={r.times})" for r in self._rules]

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._rules)

    # --- matching ----------------------------------------------------------------------
    def _add(self, rule: _Rule) -> None:
        if rule.times is not None and rule.times < 1:
            raise ValueError(f"times must be >= 1 or None, got {rule.times}")
        with self._lock:
            self._rules.append(rule)

    def decide(self, path: str) -> _Decision:
        """Consume the rules matching ``path`` and say what to do with this request."""
        delay = 0.0
        action: _Rule | None = None
        with self._lock:
            for r in list(self._rules):
                if not fnmatch.fnmatchcase(path, r.pattern):
                    continue
                if r.kind == "delay":
                    delay += r.seconds
                elif action is None:
                    action = r
                else:
                    continue
                r.hits += 1
                if r.times is not None:
                    r.times -= 1
                    if r.times <= 0:
                        self._rules.remove(r)
        return _Decision(delay, action)


# ----------------------------------------------------------------------------------------
# Shared HTTP server plumbing
# ----------------------------------------------------------------------------------------
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64  # GDAL opens many connections at once (default backlog is 5)

    def __init__(self, handler: Callable[..., BaseHTTPRequestHandler], owner: _LoopbackServer) -> None:
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


class _LoopbackServer:
    """An in-process threaded HTTP server on 127.0.0.1 with fault rules and a request log."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults if faults is not None else Faults()
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # subclasses provide the handler class
    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stop.clear()
        self._server = _Server(self._handler(), self)
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


class _Cut(io.RawIOBase):
    """A write-only stream that passes through ``limit`` bytes and swallows the rest."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        self.left = limit

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        if self.left > 0:
            chunk = data[: self.left]
            self._raw.write(chunk)
            self.left -= len(chunk)
        return len(data)


class _FaultHandlerMixin(BaseHTTPRequestHandler):
    """Applies the owner's Faults before handling, records every request."""

    disable_nagle_algorithm = True  # small header+range replies: no 40 ms delayed-ACK stalls

    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections close after this many seconds
    _decision: _Decision
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
            status=status, fault=getattr(self, "_decision", _Decision()).label, time=self._t0,
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

    @property
    def _truncation(self) -> _Rule | None:
        a = getattr(self, "_decision", _Decision()).action
        return a if a is not None and a.kind == "truncate" else None


# ----------------------------------------------------------------------------------------
# COG server
# ----------------------------------------------------------------------------------------
class _CogHandler(_FaultHandlerMixin, RangeRequestHandler):
    """rangehttpserver's handler (Range support) plus faults, request log and no listings."""

    def _serve(self) -> None:
        rule = self._truncation
        if rule is not None and rule.short_file:
            self._serve_short(rule.nbytes)
            return
        f = self.send_head()
        if not f:
            return
        try:
            if self.command != "HEAD":
                if rule is not None:
                    self.close_connection = True
                    self.copyfile(f, _Cut(self.wfile, rule.nbytes))  # type: ignore[arg-type]
                else:
                    self.copyfile(f, self.wfile)
        finally:
            f.close()

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        # Object stores do not list "directories" over plain GET; neither does this server.
        self.send_error(404, "File not found")

    def _serve_short(self, size: int) -> None:
        """Serve the file as if it were only ``size`` bytes long."""
        path = self.translate_path(self.path)
        try:
            with open(path, "rb") as fh:
                data = fh.read(size)
        except OSError:
            self.send_error(404, "File not found")
            return
        rng = self.headers.get("Range")
        first, last = 0, len(data) - 1
        status = 200
        if rng:
            try:
                a, b = parse_byte_range(rng)
            except ValueError:
                self.send_error(400, "Invalid byte range")
                return
            if a is None or a >= len(data):
                self.send_error(416, "Requested Range Not Satisfiable")
                return
            first, last, status = a, min(len(data) - 1, b if b is not None else len(data) - 1), 206
        body = data[first:last + 1]
        self.send_response(status)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class CogServer(_LoopbackServer):
    """Serves the files under ``directory`` over HTTP on 127.0.0.1 with Range support.

    The directory may still be empty when the server starts (so item hrefs can use
    :attr:`url`). Directory listings answer 404, as on object stores. Every request is
    recorded in :attr:`requests`; :attr:`faults` injects latency and failures.
    """

    def __init__(self, directory: str | os.PathLike[str], *, faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        # SimpleHTTPRequestHandler takes `directory`; mypy sees the mixin's base signature
        return partial(_CogHandler, directory=str(self.directory))  # type: ignore[call-arg]


# ----------------------------------------------------------------------------------------
# Hugging Face hub (the file-resolve endpoint only)
# ----------------------------------------------------------------------------------------
class _HubHandler(_FaultHandlerMixin):
    """``/{owner}/{name}/resolve/{revision}/{filename}`` as the hub answers it: the commit in
    ``X-Repo-Commit``, the file's sha256 as ``ETag``, and ``X-Error-Code`` on a 404."""

    def _serve(self) -> None:
        hub: HubServer = self.server.owner  # type: ignore[assignment]
        parts = self.path.partition("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self._error(404, "EntryNotFound", "not a resolve URL")
            return
        repo_id, revision, filename = "/".join(parts[:2]), urllib.parse.unquote(parts[3]), "/".join(parts[4:])
        repo = hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"repository {repo_id} not found")
            return
        commit = hub.commits[repo_id]
        if revision not in ("main", commit):
            self._error(404, "RevisionNotFound", f"revision {revision} not found")
            return
        path = repo / filename
        if not path.is_file():
            self._error(404, "EntryNotFound", f"{filename} not found in {repo_id}")
            return
        data = path.read_bytes()
        rule = self._truncation
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.end_headers()
        if self.command != "HEAD":
            if rule is not None:
                self.close_connection = True
                data = data[: rule.nbytes]
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class HubServer(_LoopbackServer):
    """A loopback stand-in for the Hugging Face hub's file downloads.

    ``add_repo("owner/name", folder)`` publishes the files of ``folder`` (read at request
    time) under the revision ``main`` and one fixed commit (:attr:`commits`). Point
    huggingface_hub at :attr:`url` through ``HF_ENDPOINT`` (set before huggingface_hub is
    imported, or patch ``huggingface_hub.constants.ENDPOINT`` and
    ``HUGGINGFACE_CO_URL_TEMPLATE``). Faults and the request log work as on the other servers.
    """

    def __init__(self, *, faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.repos: dict[str, Path] = {}
        self.commits: dict[str, str] = {}

    def add_repo(self, repo_id: str, folder: str | os.PathLike[str]) -> str:
        """Publish ``folder`` as ``repo_id``; returns the repo's commit hash."""
        self.repos[repo_id] = Path(folder)
        self.commits[repo_id] = hashlib.sha1(repo_id.encode()).hexdigest()
        return self.commits[repo_id]

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        return _HubHandler


# ----------------------------------------------------------------------------------------
# Fault proxy
# ----------------------------------------------------------------------------------------
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"}


class _ProxyHandler(_FaultHandlerMixin):
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


class FaultProxy(_LoopbackServer):
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


# ----------------------------------------------------------------------------------------
# Subprocess servers
# ----------------------------------------------------------------------------------------
def _wait_http(url: str, proc: subprocess.Popen[bytes] | None, timeout: float, what: str,
               log_path: Path | None = None) -> None:
    """Poll ``url`` until it answers 200, the process dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"{what} exited with status {proc.returncode} before answering:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise HarnessError(f"{what} did not answer {url} within {timeout:g} s ({last}):\n{_tail(log_path)}")


def _tail(path: Path | None, n: int = 4000) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_text(errors="replace")[-n:]


def _stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class StacServer:
    """``rustac serve`` on 127.0.0.1 over item and collection files, as a subprocess.

    Args:
        hrefs: ItemCollection / item / collection JSON files to load (e.g. the fixture's
            ``items.json`` and its ``collections/*.json``). Collections that no file defines
            are created from their items.
        startup_timeout: seconds to wait for the API to answer.
    """

    def __init__(self, hrefs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                 startup_timeout: float = 30.0) -> None:
        if isinstance(hrefs, (str, os.PathLike)):
            hrefs = [hrefs]
        self.hrefs = [str(h) for h in hrefs]
        for h in self.hrefs:
            if not Path(h).exists():
                raise FileNotFoundError(f"StacServer: {h} does not exist")
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @staticmethod
    def executable() -> str | None:
        """The ``rustac`` console script (next to this Python, else on PATH), or None."""
        here = Path(sys.executable).parent / "rustac"
        if here.exists():
            return str(here)
        return shutil.which("rustac")

    @classmethod
    def available(cls) -> bool:
        """Whether ``rustac`` is installed."""
        return cls.executable() is not None

    def start(self) -> Self:
        if self._proc is not None:
            return self
        exe = self.executable()
        if exe is None:
            raise HarnessUnavailable("StacServer needs the `rustac` package (pip install rustac)")
        self._tmp = tempfile.TemporaryDirectory(prefix="tmnyc-rustac-")
        logp = Path(self._tmp.name) / "rustac.log"
        for attempt in range(3):
            port = free_port()
            # rustac parses the process arguments after the interpreter: run the console script
            cmd = [sys.executable, exe, "serve", *self.hrefs, "--create-collections", "-a", f"{LOOPBACK}:{port}"]
            with open(logp, "wb") as lf:
                self._proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                _wait_http(f"http://{LOOPBACK}:{port}/", self._proc, self.startup_timeout, "rustac serve", logp)
            except HarnessError:
                _stop_process(self._proc)
                self._proc = None
                if attempt == 2 or "in use" not in _tail(logp).lower():
                    self._cleanup()
                    raise
                continue
            self._port = port
            log.debug("rustac serving %s at %s", self.hrefs, self.url)
            return self
        raise HarnessError("rustac serve could not start")  # pragma: no cover - loop always returns/raises

    def stop(self) -> None:
        _stop_process(self._proc)
        self._proc = None
        self._port = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """API root, ``http://127.0.0.1:<port>`` (no trailing slash)."""
        if self._port is None:
            raise HarnessError("StacServer is not running; call start() or use it as a context manager")
        return f"http://{LOOPBACK}:{self._port}"


# ----------------------------------------------------------------------------------------
# pgstac: PostgreSQL + PostGIS + pgstac + stac-fastapi-pgstac
# ----------------------------------------------------------------------------------------
def _pg_bindir() -> Path | None:
    """Directory of PostgreSQL server binaries (initdb, postgres, pg_ctl), or None."""
    env = os.environ.get("TERRAMIND_NYC_PG_BINDIR")
    cands: list[Path] = [Path(env)] if env else []
    found = shutil.which("initdb")
    if found:
        cands.append(Path(found).resolve().parent)  # /usr/local/bin/initdb -> /usr/lib/postgresql/N/bin
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        cands += sorted((p / "bin" for p in base.iterdir()), reverse=True)
    for c in cands:
        c = c.resolve()
        if all((c / exe).exists() for exe in ("initdb", "postgres", "pg_ctl", "pg_isready", "createdb")):
            return c
    return None


def _has_postgis(bindir: Path) -> bool:
    try:
        out = subprocess.run([str(bindir / "pg_config"), "--sharedir"], check=False, capture_output=True, text=True, timeout=10)
        share = Path(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        share = bindir.parent / "share"
    cands = [share / "extension", Path("/usr/share/postgresql") / bindir.parent.name / "extension"]
    return any((c / "postgis.control").exists() for c in cands)


class PgstacServer:
    """stac-fastapi-pgstac on PostgreSQL + PostGIS, started from scratch in a temp directory.

    Steps: ``initdb`` (as a non-root user when run as root), ``postgres`` on a free loopback
    port with a Unix socket in the temp directory, ``pypgstac migrate``, load the collections
    and items, register ``eo:cloud_cover`` (and other numeric properties) as numeric
    queryables so pgstac sorts and compares them as numbers, then ``uvicorn
    stac_fastapi.pgstac.app:create_app --factory``. Everything is removed on :meth:`stop`.

    Raises :class:`HarnessUnavailable` when PostgreSQL/PostGIS binaries or the Python
    packages (``stac-fastapi-pgstac``, ``pypgstac[psycopg]``, ``uvicorn``) are missing.

    Args:
        items: ItemCollection / item JSON files to load.
        collections: collection JSON files; collections referenced by items but not given
            are created from the items' extents.
        numeric_queryables: properties registered as numeric queryables.
        startup_timeout: seconds allowed for each start-up step.
    """

    def __init__(self, items: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                 collections: Iterable[str | os.PathLike[str]] = (),
                 numeric_queryables: Sequence[str] = ("eo:cloud_cover", "s2:nodata_pixel_percentage"),
                 startup_timeout: float = 60.0) -> None:
        if isinstance(items, (str, os.PathLike)):
            items = [items]
        self.item_files = [Path(p) for p in items]
        self.collection_files = [Path(p) for p in collections]
        self.numeric_queryables = tuple(numeric_queryables)
        self.startup_timeout = startup_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._pg: subprocess.Popen[bytes] | None = None
        self._api: subprocess.Popen[bytes] | None = None
        self._api_port: int | None = None
        self._pg_port: int | None = None
        self._user: str | None = None
        self.timings: dict[str, float] = {}
        """Seconds per start-up step (initdb, postgres, migrate, load, api)."""
        self.n_items = 0
        """Items loaded into pgstac."""

    # --- availability --------------------------------------------------------------------
    @staticmethod
    def missing() -> list[str]:
        """What is missing to run the stack here (empty when it can run)."""
        import importlib.util

        out = []
        bindir = _pg_bindir()
        if bindir is None:
            out.append("PostgreSQL server binaries (Debian: apt-get install postgresql-15-postgis-3)")
        elif not _has_postgis(bindir):
            out.append("PostGIS for PostgreSQL (Debian: apt-get install postgresql-15-postgis-3)")
        for mod, pkg in (("stac_fastapi.pgstac", "stac-fastapi-pgstac"), ("pypgstac", "pypgstac[psycopg]"),
                         ("psycopg", "pypgstac[psycopg]"), ("uvicorn", "uvicorn")):
            try:
                found = importlib.util.find_spec(mod) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                out.append(f"Python package {pkg}")
        if os.geteuid() == 0 and _nonroot_user() is None:
            out.append("a non-root user to run PostgreSQL as (e.g. `postgres` or `nobody`)")
        return sorted(set(out))

    @classmethod
    def available(cls) -> bool:
        return not cls.missing()

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """libpq connection string of the database (``postgresql://...``)."""
        if self._pg_port is None or self._user is None:
            raise HarnessError("PgstacServer is not running")
        return f"postgresql://{self._user}@{LOOPBACK}:{self._pg_port}/postgis"

    @property
    def url(self) -> str:
        """API root, ``http://127.0.0.1:<port>`` (no trailing slash)."""
        if self._api_port is None:
            raise HarnessError("PgstacServer is not running; call start() or use it as a context manager")
        return f"http://{LOOPBACK}:{self._api_port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Self:
        if self._api is not None:
            return self
        missing = self.missing()
        if missing:
            raise HarnessUnavailable("PgstacServer needs: " + "; ".join(missing))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        bindir = _pg_bindir()
        assert bindir is not None
        self._tmp = tempfile.TemporaryDirectory(prefix="tmnyc-pgstac-")
        tmp = Path(self._tmp.name)
        data, sock = tmp / "pgdata", tmp / "sock"
        sock.mkdir()
        run_as = _nonroot_user() if os.geteuid() == 0 else None
        if run_as is not None:
            uid, gid = run_as[1], run_as[2]
            os.chown(tmp, uid, gid)
            os.chown(sock, uid, gid)
        self._user = run_as[0] if run_as else _current_user()
        user = self._user

        t = time.perf_counter()
        self._run_pg([str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync"], run_as, tmp / "initdb.log")
        self.timings["initdb"] = time.perf_counter() - t

        t = time.perf_counter()
        self._pg_port = free_port()
        pg_log = tmp / "postgres.log"
        cmd = [str(bindir / "postgres"), "-D", str(data), "-p", str(self._pg_port), "-h", LOOPBACK,
               "-k", str(sock), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(pg_log, "wb") as lf:
            self._pg = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        **_demote(run_as))
        self._wait_pg(bindir, run_as, pg_log)
        self._run_pg([str(bindir / "createdb"), "-h", LOOPBACK, "-p", str(self._pg_port), "-U", user, "postgis"],
                     run_as, tmp / "createdb.log")
        self.timings["postgres"] = time.perf_counter() - t

        t = time.perf_counter()
        env = self._pg_env()
        self._run([sys.executable, "-m", "pypgstac.pypgstac", "migrate", "--dsn", self.dsn], env, tmp / "migrate.log")
        self.timings["migrate"] = time.perf_counter() - t

        t = time.perf_counter()
        self._load(tmp)
        self.timings["load"] = time.perf_counter() - t

        t = time.perf_counter()
        self._api_port = free_port()
        api_log = tmp / "api.log"
        api_env = dict(env, PGUSER=user, PGPASSWORD="", PGHOST=LOOPBACK, PGPORT=str(self._pg_port),
                       PGDATABASE="postgis", ENABLE_TRANSACTIONS_EXTENSIONS="false",
                       DB_MIN_CONN_SIZE="1", DB_MAX_CONN_SIZE="4", WEB_CONCURRENCY="1")
        cmd = [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
               "--host", LOOPBACK, "--port", str(self._api_port), "--log-level", "warning"]
        with open(api_log, "wb") as lf:
            self._api = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=api_env, cwd=tmp)
        _wait_http(self.url + "/", self._api, self.startup_timeout, "stac-fastapi-pgstac", api_log)
        self.timings["api"] = time.perf_counter() - t
        log.debug("pgstac serving at %s (%s)", self.url, self.timings)

    def _pg_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGUSER=self._user or "", PGHOST=LOOPBACK, PGPORT=str(self._pg_port), PGDATABASE="postgis")
        return env

    def _wait_pg(self, bindir: Path, run_as: tuple[str, int, int] | None, pg_log: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._pg is not None and self._pg.poll() is not None:
                raise HarnessError(f"postgres exited with status {self._pg.returncode}:\n{_tail(pg_log)}")
            r = subprocess.run([str(bindir / "pg_isready"), "-h", LOOPBACK, "-p", str(self._pg_port), "-q"], check=False,
                               capture_output=True, timeout=10)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise HarnessError(f"postgres did not accept connections within {self.startup_timeout:g} s:\n{_tail(pg_log)}")

    def _run_pg(self, cmd: list[str], run_as: tuple[str, int, int] | None, logp: Path) -> None:
        with open(logp, "wb") as lf:
            r = subprocess.run(cmd, check=False, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               timeout=self.startup_timeout, cwd=logp.parent, **_demote(run_as))
        if r.returncode != 0:
            raise HarnessError(f"{Path(cmd[0]).name} failed with status {r.returncode}:\n{_tail(logp)}")

    def _run(self, cmd: list[str], env: dict[str, str], logp: Path) -> None:
        with open(logp, "wb") as lf:
            r = subprocess.run(cmd, check=False, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               timeout=self.startup_timeout, env=env)
        if r.returncode != 0:
            raise HarnessError(f"{' '.join(cmd[2:4])} failed with status {r.returncode}:\n{_tail(logp)}")

    def _load(self, tmp: Path) -> None:
        """Load collections and items with pypgstac, then register numeric queryables."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        items: list[dict[str, Any]] = []
        for p in self.item_files:
            doc = json.loads(p.read_text())
            items += doc["features"] if doc.get("type") == "FeatureCollection" else [doc]
        collections = {}
        for p in self.collection_files:
            c = json.loads(p.read_text())
            for one in (c if isinstance(c, list) else c.get("collections", [c])):
                collections[one["id"]] = one
        for cid in sorted({it["collection"] for it in items} - set(collections)):
            collections[cid] = _collection_from_items(cid, [it for it in items if it["collection"] == cid])
        with PgstacDB(dsn=self.dsn) as db:
            loader = Loader(db=db)
            loader.load_collections(iter(collections.values()), insert_mode=Methods.upsert)
            loader.load_items(iter(items), insert_mode=Methods.upsert)
            for name in self.numeric_queryables:
                db.query_one(
                    "INSERT INTO queryables (name, collection_ids, definition, property_wrapper) "
                    "VALUES (%s, NULL, %s, 'to_float') "
                    "ON CONFLICT DO NOTHING RETURNING name",
                    (name, json.dumps({"type": "number"})),
                )
        self.n_items = len(items)

    def stop(self) -> None:
        _stop_process(self._api)
        self._api = None
        self._api_port = None
        if self._pg is not None and self._pg.poll() is None:
            self._pg.terminate()  # SIGTERM: postgres "smart" shutdown; pass to fast below
            try:
                self._pg.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._pg.kill()
                self._pg.wait(timeout=5)
        self._pg = None
        self._pg_port = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _collection_from_items(cid: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A minimal valid STAC Collection whose extent covers ``items``."""
    bboxes = [it["bbox"] for it in items if it.get("bbox")]
    dts = sorted(it["properties"].get("datetime") or it["properties"].get("start_datetime") for it in items)
    bbox = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)]
    return {
        "type": "Collection", "stac_version": "1.0.0", "id": cid, "description": f"{cid} (test fixture)",
        "license": "proprietary", "links": [],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[dts[0], dts[-1]]]}},
    }


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _nonroot_user() -> tuple[str, int, int] | None:
    """A non-root account to run PostgreSQL as (postgres preferred), or None."""
    import pwd

    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        if pw.pw_uid != 0:
            return name, pw.pw_uid, pw.pw_gid
    return None


def _demote(run_as: tuple[str, int, int] | None) -> dict[str, Any]:
    """subprocess kwargs that run the child as ``run_as`` (only when we are root)."""
    if run_as is None:
        return {}
    _, uid, gid = run_as
    return {"user": uid, "group": gid, "extra_groups": []}
