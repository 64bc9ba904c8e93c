"""The request-scoped I/O pool: every search and asset read of a request runs on it.

A module private to :mod:`terramind_nyc.imagery` as a whole; the names inside are public to
the package's other modules.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, ClassVar, Self, TypeVar

from ..deadline import Deadline

__all__ = ["Describe", "PoolSlot", "Runner"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: ``describe(future) -> (step, service)``: how a deadline message names a pending task.
Describe = Callable[[Future[Any]], tuple[str, str]]


class PoolSlot:
    """A process-wide I/O thread pool per size, kept warm between requests.

    Threads that already read once skip GDAL's and PROJ's per-thread start-up (about 70 ms of a
    parallel chip read on two cores). A pool with abandoned work still running (a hung server,
    see :class:`Runner`) is retired: the next request gets a fresh pool. A retired pool is never
    shut down, because other requests may still hold it and submit to it: it is only forgotten,
    and its threads exit once the last request holding it is gone and their HTTP timeouts have
    ended the abandoned reads. A forked child never reuses its parent's pool.
    """

    _lock = threading.Lock()
    _pools: ClassVar[dict[int, tuple[int, ThreadPoolExecutor]]] = {}

    @classmethod
    def get(cls, threads: int) -> ThreadPoolExecutor:
        with cls._lock:
            entry = cls._pools.get(threads)
            if entry is None or entry[0] != os.getpid():
                pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"terramind-nyc-io{threads}")
                cls._pools[threads] = entry = (os.getpid(), pool)
            return entry[1]

    @classmethod
    def retire(cls, threads: int, pool: ThreadPoolExecutor) -> None:
        """Stop handing ``pool`` to new requests (it is not shut down: see the class docstring)."""
        with cls._lock:
            entry = cls._pools.get(threads)
            if entry is not None and entry[1] is pool:
                del cls._pools[threads]


class Runner:
    """Runs a request's I/O tasks on a shared thread pool; its waits stop at a :class:`Deadline`.

    Tasks are leaves (one search, one asset read); only the caller waits on them, so a pool of
    one thread is a strictly sequential reader. A task still running when the deadline passes
    is abandoned, not joined: its own HTTP timeout ends it later in the background.
    """

    def __init__(self, threads: int, deadline: Deadline) -> None:
        self.deadline = deadline
        self.threads = max(1, int(threads))
        self._pool = PoolSlot.get(self.threads)
        self._futures: list[Future[Any]] = []

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        fut = self._pool.submit(fn, *args, **kwargs)
        self._futures.append(fut)
        return fut

    def wait(self, fut: Future[T], step: str, service: str) -> T:
        """The task's result, its exception, or DeadlineExceededError at the deadline."""
        done, _ = wait_futures([fut], timeout=self.deadline.timeout())
        if not done:
            fut.cancel()
            raise self.deadline.error(step, service)
        return fut.result()

    def wait_all(self, futs: Sequence[Future[Any]], describe: Describe, *, fail_fast: bool = True) -> None:
        """Wait for every future; on the first exception (``fail_fast``) or at the deadline raise.

        ``describe(fut)`` gives ``(step, service)`` for the deadline message.
        """
        pending = set(futs)
        while pending:
            done, pending = wait_futures(pending, timeout=self.deadline.timeout(),
                                         return_when=FIRST_EXCEPTION if fail_fast else ALL_COMPLETED)
            if fail_fast:
                for f in done:
                    if not f.cancelled() and f.exception() is not None:
                        for p in pending:
                            p.cancel()
                        raise f.exception()  # type: ignore[misc]
            if pending and self.deadline.expired:
                for p in pending:
                    p.cancel()
                step, service = describe(next(iter(pending)))
                raise self.deadline.error(step, service)

    def close(self) -> None:
        """Cancel this request's queued tasks; retire the pool if any of them is still running."""
        running = [f for f in self._futures if not f.done() and not f.cancel()]
        if running:
            log.debug("%d I/O task(s) still running after the request ended; retiring their pool", len(running))
            PoolSlot.retire(self.threads, self._pool)
        self._futures.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
