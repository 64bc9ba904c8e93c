"""Thread-safe caches for STAC searches (TTL), chips (LRU bounded by bytes) and results (TTL).

Keys are built by the callers from everything that changes the answer (snapped grid, date
window, size, radius, checkpoint sha256, the settings that matter) and nothing else. A cache
hit never runs the model. Caches are per process, can be disabled with
``Settings(cache_enabled=False)`` and emptied with :func:`clear_caches`. An optional on-disk
chip cache (``Settings.cache_dir``) keeps chips across processes as ``.npz`` + JSON (no pickle).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import zipfile
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from cachetools import LRUCache, TTLCache

from .atomic import atomic_path, atomic_write_text
from .errors import InvalidInputError
from .settings import Settings

__all__ = ["Caches", "get_caches", "clear_caches", "stable_key"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def stable_key(*parts: Any) -> str:
    """A short, stable hex digest of JSON-serialisable ``parts`` (usable as a file name)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class _Locked:
    """A cachetools cache guarded by one lock, with per-key single flight for computations."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.lock = threading.RLock()
        self._inflight: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def peek(self, key: Hashable) -> Any:
        """The cached value (counted as a hit) or None (not counted: a get_or_compute follows)."""
        with self.lock:
            value = self.cache.get(key)
            if value is not None:
                self.hits += 1
            return value

    def get(self, key: Hashable) -> Any:
        """The cached value or None; both are counted (hits / misses)."""
        with self.lock:
            value = self.peek(key)
            if value is None:
                self.misses += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self.lock:
            try:
                self.cache[key] = value
            except ValueError:  # larger than the whole cache: just don't keep it
                log.debug("value for %s too large for cache", key)

    def get_or_compute(self, key: Hashable, compute: Callable[[], T],
                       keep: Callable[[T], bool] | None = None) -> T:
        """Return the cached value or compute it once (concurrent callers for one key wait).

        ``keep``: whether a computed value is stored (default always); a value it refuses is
        returned but computed afresh next time.
        """
        value = self.peek(key)
        if value is not None:
            return value  # type: ignore[no-any-return]
        with self.lock:
            flight = self._inflight.setdefault(key, threading.Lock())
        with flight:
            value = self.peek(key)
            if value is not None:
                return value  # type: ignore[no-any-return]
            with self.lock:
                self.misses += 1
            value = compute()
            if keep is None or keep(value):
                self.put(key, value)
        with self.lock:
            self._inflight.pop(key, None)
        return value

    def clear(self) -> None:
        with self.lock:
            self.cache.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        with self.lock:
            return len(self.cache)


def _nbytes(value: Any) -> int:
    return int(getattr(value, "nbytes", 0)) or 1


class Caches:
    """The three in-memory caches of one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.stac = _Locked(TTLCache(maxsize=1024, ttl=max(settings.stac_cache_ttl_s, 1e-9)))
        self.chips = _Locked(LRUCache(maxsize=settings.chip_cache_bytes, getsizeof=_nbytes))
        self.results = _Locked(TTLCache(maxsize=settings.result_cache_size, ttl=max(settings.result_cache_ttl_s, 1e-9)))
        self.cache_dir = Path(settings.cache_dir).expanduser() if settings.cache_dir else None

    def clear(self) -> None:
        for c in (self.stac, self.chips, self.results):
            c.clear()

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {"entries": len(c), "hits": c.hits, "misses": c.misses}
            for name, c in (("stac", self.stac), ("chips", self.chips), ("results", self.results))
        }

    # --- on-disk chips ------------------------------------------------------------------
    def disk_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"chip-{key}"

    def write_disk(self, key: str, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        """Atomically write arrays (.npz, no pickle) and JSON metadata for ``key`` (:mod:`terramind_nyc.atomic`)."""
        path = self.disk_path(key)
        if path is None:
            return
        import numpy as np

        try:
            with atomic_path(str(path) + ".npz") as tmp, tmp.open("wb") as fh:
                np.savez(fh, **arrays)
            atomic_write_text(str(path) + ".json", json.dumps(meta, default=str))
        except InvalidInputError as exc:  # cache_dir is a file: the cache is optional, the read goes on
            log.warning("not writing the on-disk chip cache: %s", exc)

    def read_disk(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        path = self.disk_path(key)
        if path is None:
            return None
        npz, js = Path(str(path) + ".npz"), Path(str(path) + ".json")
        if not (npz.is_file() and js.is_file()):
            return None
        import numpy as np

        try:
            with np.load(npz, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError, EOFError, RecursionError, zipfile.BadZipFile) as exc:
            log.warning("ignoring unreadable chip cache entry %s: %s", npz.name, exc)
            return None
        if not isinstance(meta, dict):
            log.warning("ignoring chip cache entry %s: its metadata is not a JSON object", npz.name)
            return None
        return arrays, meta


_lock = threading.Lock()
_caches: dict[tuple[Any, ...], Caches] = {}


def _config_key(settings: Settings) -> tuple[Any, ...]:
    return settings.key("caches")


def get_caches(settings: Settings) -> Caches | None:
    """The process-wide caches for this cache configuration, or None when caching is disabled."""
    if not settings.cache_enabled:
        return None
    key = _config_key(settings)
    with _lock:
        caches = _caches.get(key)
        if caches is None:
            caches = _caches[key] = Caches(settings)
        return caches


def clear_caches() -> None:
    """Empty every in-memory cache of this process (the on-disk chip cache is left alone)."""
    with _lock:
        for c in _caches.values():
            c.clear()
