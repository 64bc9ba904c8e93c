"""``rustac serve`` as a subprocess: an in-memory STAC API over item and collection files.

The in-memory backend handles collections, bbox, intersects, datetime and ids; ``query``,
``filter`` and ``sortby`` are ignored, as on some real servers.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from ._process import stop_process, tail, wait_http
from .loopback import LOOPBACK, HarnessError, HarnessUnavailable, free_port

__all__ = ["StacServer"]

log = logging.getLogger(__name__)


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
                wait_http(f"http://{LOOPBACK}:{port}/", self._proc, self.startup_timeout, "rustac serve", logp)
            except HarnessError:
                stop_process(self._proc)
                self._proc = None
                if attempt == 2 or "in use" not in tail(logp).lower():
                    self._cleanup()
                    raise
                continue
            self._port = port
            log.debug("rustac serving %s at %s", self.hrefs, self.url)
            return self
        raise HarnessError("rustac serve could not start")  # pragma: no cover - loop always returns/raises

    def stop(self) -> None:
        stop_process(self._proc)
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
