"""One overall time budget per request (:class:`Deadline`) and a call that stops waiting at it.

Every network step of a request (catalog searches, asset reads, hub probes) runs under one
:class:`Deadline`; a server that hangs ends in
:class:`~terramind_nyc.errors.DeadlineExceededError` at the deadline, not later.
"""

from __future__ import annotations

import math
import numbers
import reprlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import TypeVar

from .errors import DeadlineExceededError, InvalidInputError

__all__ = ["Deadline", "call_with_deadline"]

T = TypeVar("T")


class Deadline:
    """One overall time budget for a request, on the monotonic clock.

    ``Deadline(120)`` starts now; :meth:`remaining` is what is left (seconds, >= 0);
    :meth:`check` raises :class:`DeadlineExceededError` naming the step and the service when
    it has passed. ``Deadline(None)`` never expires.
    """

    def __init__(self, seconds: float | None) -> None:
        s = None if seconds is None else _seconds(seconds)
        self.seconds: float | None = s
        self._start = time.monotonic()
        self._end = math.inf if s is None else self._start + s

    def remaining(self) -> float:
        """Seconds left (``inf`` for a deadline that never expires; 0 once passed)."""
        return max(0.0, self._end - time.monotonic())

    def elapsed(self) -> float:
        """Seconds since the deadline was created."""
        return time.monotonic() - self._start

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self._end

    def timeout(self, cap: float | None = None) -> float | None:
        """Seconds to wait for something: the remaining time, at most ``cap`` (None: no limit).

        Never more than :data:`threading.TIMEOUT_MAX`, the longest wait the standard library
        takes (``concurrent.futures.wait``, ``Lock.acquire``, ``Event.wait`` raise OverflowError
        above it), so a finite but huge deadline waits as long as it may instead of failing.
        """
        rem = self.remaining()
        if cap is not None:
            rem = min(rem, cap)
        return None if math.isinf(rem) else min(rem, threading.TIMEOUT_MAX)

    def error(self, step: str, service: str) -> DeadlineExceededError:
        """The error to raise when ``step`` at ``service`` did not finish in time."""
        total = "no" if self.seconds is None else f"the {self.seconds:g} s"
        return DeadlineExceededError(
            f"{step} at {service} did not finish within {total} deadline (after {self.elapsed():.1f} s); "
            "the service may be slow or down: try again later or raise `deadline_s`"
        )

    def check(self, step: str, service: str) -> None:
        """Raise :class:`DeadlineExceededError` if the deadline has passed before ``step``."""
        if self.expired:
            raise self.error(step, service)

    def __repr__(self) -> str:
        return f"Deadline({self.seconds!r}, remaining={self.remaining():.2f})"


def _seconds(value: object) -> float:
    """A deadline's length: a finite number of seconds > 0, else InvalidInputError."""
    v = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            v = float(value)
        except (OverflowError, TypeError, ValueError):  # an int too large for a float
            v = math.inf
    if not math.isfinite(v) or v <= 0:
        try:
            shown = reprlib.repr(value)
        except Exception:
            shown = f"<unprintable {type(value).__name__}>"
        raise InvalidInputError(f"a deadline must be a finite number of seconds > 0 or None, got {shown}; "
                                "pass e.g. 120 (Settings.deadline_s)")
    return v


def call_with_deadline(fn: Callable[[], T], deadline: Deadline, step: str, service: str) -> T:
    """Run ``fn`` in a daemon thread and stop waiting for it at the deadline."""
    deadline.check(step, service)
    fut: Future[T] = Future()

    def run() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)

    threading.Thread(target=run, name="terramind-nyc-stac", daemon=True).start()
    done, _ = wait_futures([fut], timeout=deadline.timeout())
    if not done:
        raise deadline.error(step, service)
    return fut.result()
