"""Fault rules for the loopback servers: delay, hang, fail and truncate, matched by request path.

:class:`Faults` is the shared, thread-safe rule book; each matched with
:func:`fnmatch.fnmatchcase` against the request path (no query string). A server asks
:meth:`Faults.decide` once per request and gets a :class:`FaultDecision` back.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FaultDecision", "FaultKind", "FaultRule", "Faults"]

FaultKind = Literal["delay", "hang", "fail", "truncate"]


@dataclass
class FaultRule:
    """One rule of a :class:`Faults` book (what to inject, for which paths, how many times)."""

    kind: FaultKind
    pattern: str
    times: int | None  # None: every matching request
    seconds: float = 0.0
    status: int = 0
    retry_after: str | None = None
    nbytes: int = 0
    short_file: bool = False
    stall: bool = False
    released: threading.Event = field(default_factory=threading.Event)
    hits: int = 0


@dataclass(frozen=True)
class FaultDecision:
    """What to do with one request: the summed delay, then the deciding rule (or None)."""

    delay_s: float = 0.0
    action: FaultRule | None = None

    @property
    def label(self) -> str | None:
        parts = []
        if self.delay_s:
            parts.append(f"delay:{self.delay_s:g}")
        if self.action is not None:
            a = self.action
            parts.append({"hang": "hang", "fail": f"fail:{a.status}",
                          "truncate": f"{'stall' if a.stall else 'truncate'}:{a.nbytes}"}.get(a.kind, a.kind))
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
        self._rules: list[FaultRule] = []

    # --- rules ---------------------------------------------------------------------------
    def delay(self, seconds: float, pattern: str = "*", *, times: int | None = None) -> None:
        """Add ``seconds`` of latency before answering each matching request."""
        if seconds < 0:
            raise ValueError(f"delay must be >= 0 s, got {seconds}")
        self._add(FaultRule("delay", pattern, times, seconds=float(seconds)))

    def hang(self, pattern: str = "*", *, times: int | None = None) -> None:
        """Never answer matching requests: hold the connection until :meth:`clear` or server stop,
        then close it without a response."""
        self._add(FaultRule("hang", pattern, times))

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
        self._add(FaultRule("fail", pattern, times, status=int(status), retry_after=ra))

    def truncate(self, pattern: str = "*", nbytes: int = 1024, *, times: int | None = None,
                 short_file: bool = False, stall: bool = False) -> None:
        """Serve cut-off bodies for matching requests.

        Default: the headers promise the full body (Content-Length), only ``nbytes`` of it are
        sent, then the connection closes (a transfer that dies midway). ``short_file=True``
        instead serves the file as if it were only ``nbytes`` long, with consistent headers
        (a truncated upload): ranges beyond it get 416, ranges across its end come back short.
        ``stall=True`` sends the ``nbytes`` and then stops answering, holding the connection
        open until :meth:`clear` or server stop (a download that stalls midway).
        """
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if stall and short_file:
            raise ValueError("stall and short_file exclude each other")
        self._add(FaultRule("truncate", pattern, times, nbytes=int(nbytes), short_file=short_file, stall=stall))

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
    def _add(self, rule: FaultRule) -> None:
        if rule.times is not None and rule.times < 1:
            raise ValueError(f"times must be >= 1 or None, got {rule.times}")
        with self._lock:
            self._rules.append(rule)

    def decide(self, path: str) -> FaultDecision:
        """Consume the rules matching ``path`` and say what to do with this request."""
        delay = 0.0
        action: FaultRule | None = None
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
        return FaultDecision(delay, action)
