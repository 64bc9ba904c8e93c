"""A Range-capable COG server: serves the files under a folder over HTTP on 127.0.0.1.

Built on ``rangehttpserver`` (in the ``dev`` extra), plus the shared faults and request log.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, BinaryIO

try:
    from RangeHTTPServer import RangeRequestHandler, parse_byte_range
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "terramind_nyc.testing needs the `rangehttpserver` package: pip install 'terramind-nyc[dev]'"
    ) from _exc

from .faults import Faults
from .loopback import FaultHandlerMixin, LoopbackServer

__all__ = ["CogServer"]


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


class _CogHandler(FaultHandlerMixin, RangeRequestHandler):
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
                    self._hold_if_stalled(rule)
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


class CogServer(LoopbackServer):
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
