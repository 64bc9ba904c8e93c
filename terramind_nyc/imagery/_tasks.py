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
    parallel chip read on two cores). Requests take a pool with :meth:`acquire` and give it back
    with :meth:`release`. A request that ran out of time with work still running (a hung
    server, see :class:`Runner`) retires its pool: new requests get a fresh one, while the
    requests that hold the old one keep using it; it is shut down only when the last of them
    releases it, and its threads then exit as their HTTP timeouts end the abandoned reads. So
    no request ever shuts down a pool another one uses. A forked child never reuses its
    parent's pool.
    """

    _lock = threading.Lock()
    _pools: ClassVar[dict[int, tuple[int, ThreadPoolExecutor]]] = {}
    _holders: ClassVar[dict[ThreadPoolExecutor, int]] = {}
    _retired: ClassVar[set[ThreadPoolExecutor]] = set()

    @classmethod
    def acquire(cls, threads: int) -> ThreadPoolExecutor:
        """The current pool of ``threads`` threads, held until :meth:`release`."""
        with cls._lock:
            entry = cls._pools.get(threads)
            if entry is None or entry[0] != os.getpid():
                pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"terramind-nyc-io{threads}")
                cls._pools[threads] = entry = (os.getpid(), pool)
            cls._holders[entry[1]] = cls._holders.get(entry[1], 0) + 1
            return entry[1]

    @classmethod
    def release(cls, threads: int, pool: ThreadPoolExecutor, *, retire: bool = False) -> None:
        """Give ``pool`` back; ``retire``: hand it to no new request. A retired pool no one holds
        is shut down (without waiting for its running tasks)."""
        with cls._lock:
            if retire:
                entry = cls._pools.get(threads)
                if entry is not None and entry[1] is pool:
                    del cls._pools[threads]
                cls._retired.add(pool)
            left = cls._holders.get(pool, 1) - 1
            if left > 0:
                cls._holders[pool] = left
                return
            cls._holders.pop(pool, None)
            if pool not in cls._retired:
                return
            cls._retired.discard(pool)
        pool.shutdown(wait=False)


class Runner:
    """Runs a request's I/O tasks on a shared thread pool; its waits stop at a :class:`Deadline`.

    Tasks are leaves (one search, one asset read); only the caller waits on them, so a pool of
    one thread is a strictly sequential reader. A task still running when the deadline passes
    is abandoned, not joined: its own HTTP timeout ends it later in the background.
    """

    def __init__(self, threads: int, deadline: Deadline) -> None:
        self.deadline = deadline
        self.threads = max(1, int(threads))
        self._pool = PoolSlot.acquire(self.threads)
        self._futures: list[Future[Any]] = []
        self._released = False

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
        """Cancel this request's queued tasks and give the pool back.

        Tasks still running are left to finish (each is bounded by its HTTP timeout and
        retries). When the request ran out of time with tasks still running, they are likely
        hung: the pool is retired so that new requests do not queue behind them.
        """
        if self._released:
            return
        self._released = True
        running = [f for f in self._futures if not f.done() and not f.cancel()]
        retire = bool(running) and self.deadline.expired
        if retire:
            log.debug("%d I/O task(s) still running at the deadline; retiring their pool", len(running))
        self._futures.clear()
        PoolSlot.release(self.threads, self._pool, retire=retire)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
