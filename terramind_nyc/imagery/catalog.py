"""STAC providers, signing, search and scene choice: which items a chip is read from.

Three providers share one interface, :class:`Catalog`:

- ``planetary-computer`` (default): Microsoft Planetary Computer's STAC API; asset URLs are
  signed with ``planetary_computer.sign`` (only Azure blob hosts; ``PC_SDK_SUBSCRIPTION_KEY``
  is honoured by that package);
- ``stac-api``: any STAC API at ``Settings.catalog_url`` (pystac-client, with a timeout and
  bounded retries of timeouts, 429 and 5xx);
- ``local``: a STAC ItemCollection file or a folder of item JSON files
  (``Settings.catalog_path``), searched in-process with the same filters.

Servers differ in what they honour (``rustac serve`` ignores ``sortby``; ``query`` is sent
only to servers that advertise it), so every search is filtered and sorted again on the
client: right collection, footprint intersecting the chip, datetime inside the window,
scene-wide cloud below the prefilter, newest first.

Scene choice never trusts the scene-wide ``eo:cloud_cover`` alone: :func:`choose_s2_scene`
reads the SCL band on the chip grid for the newest candidates in parallel and picks the newest
acquisition whose *chip-level* cloud and nodata fractions are within the settings' limits.
Items of one acquisition (same platform and orbit, same pass) that together cover the chip, a
chip across an MGRS tile edge, are one candidate and are mosaicked.

Every network step has a timeout and runs under one overall :class:`Deadline`; a server that
hangs ends in :class:`~terramind_nyc.errors.DeadlineExceededError` at the deadline, not later.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor
from concurrent.futures import wait as _wait_futures
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar
from urllib.parse import urlsplit

import numpy as np

from ..errors import (
    CatalogError,
    ChipError,
    ChipNodataError,
    DeadlineExceededError,
    InvalidInputError,
    NoSceneError,
)
from ..dates import iso_z, parse_iso, utc
from ..deadline import Deadline, call_with_deadline
from ..sensors import SCL_CLOUD, SCL_NODATA
from ..settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    import pystac

    from ..grid import ChipGrid

__all__ = [
    "Catalog",
    "S2Choice",
    "SceneCheck",
    "Signer",
    "choose_s2_scene",
    "find_dem",
    "footprint_coverage",
    "get_catalog",
    "item_crs",
    "item_datetime",
    "make_signer",
    "pair_s1",
    "pick_s1",
    "planetary_computer_signer",
    "redact",
    "s2_acquisitions",
    "scl_fractions",
    "service_of",
    "strip_query",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Asset URL signer: takes an href, returns the href to read (possibly with a token).
Signer = Callable[[str], str]

_PAGE_SIZE = 100
_DEFAULT_LIMIT = 500


# ----------------------------------------------------------------------------------------
# Request-scoped I/O
# ----------------------------------------------------------------------------------------
class _PoolSlot:
    """A process-wide I/O thread pool per size, kept warm between requests.

    Threads that already read once skip GDAL's and PROJ's per-thread start-up (about 70 ms of a
    parallel chip read on two cores). A pool with abandoned work still running (a hung server,
    see :class:`_Runner`) is retired: the next request gets a fresh pool and the old threads
    exit once their HTTP timeouts end them. A forked child never reuses its parent's pool.
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
        with cls._lock:
            entry = cls._pools.get(threads)
            if entry is not None and entry[1] is pool:
                del cls._pools[threads]
        pool.shutdown(wait=False)


class _Runner:
    """Runs a request's I/O tasks on a shared thread pool; its waits stop at a :class:`Deadline`.

    Tasks are leaves (one search, one asset read); only the caller waits on them, so a pool of
    one thread is a strictly sequential reader. A task still running when the deadline passes
    is abandoned, not joined: its own HTTP timeout ends it later in the background.
    """

    def __init__(self, threads: int, deadline: Deadline) -> None:
        self.deadline = deadline
        self.threads = max(1, int(threads))
        self._pool = _PoolSlot.get(self.threads)
        self._futures: list[Future[Any]] = []

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        fut = self._pool.submit(fn, *args, **kwargs)
        self._futures.append(fut)
        return fut

    def wait(self, fut: Future[T], step: str, service: str) -> T:
        """The task's result, its exception, or DeadlineExceededError at the deadline."""
        done, _ = _wait_futures([fut], timeout=self.deadline.timeout())
        if not done:
            fut.cancel()
            raise self.deadline.error(step, service)
        return fut.result()

    def wait_all(self, futs: Sequence[Future[Any]], describe: Callable[[Future[Any]], tuple[str, str]],
                 *, fail_fast: bool = True) -> None:
        """Wait for every future; on the first exception (``fail_fast``) or at the deadline raise.

        ``describe(fut)`` gives ``(step, service)`` for the deadline message.
        """
        pending = set(futs)
        while pending:
            done, pending = _wait_futures(pending, timeout=self.deadline.timeout(),
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
            _PoolSlot.retire(self.threads, self._pool)
        self._futures.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------
# URLs, signing, redaction
# ----------------------------------------------------------------------------------------
_QUERY_RE = re.compile(r"(?i)\b((?:https?|s3|gs|az)://[^\s'\"?#]*)[?#][^\s'\"]*")


def strip_query(href: str) -> str:
    """``href`` without its query string and fragment (where signing tokens live)."""
    parts = urlsplit(href)
    if not parts.scheme or parts.scheme == "file" or len(parts.scheme) == 1:
        return href.split("?", 1)[0]
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def redact(text: str) -> str:
    """``text`` with the query string of every URL in it removed (tokens never leak into messages)."""
    return _QUERY_RE.sub(r"\1", str(text))


def service_of(href: str) -> str:
    """A short, token-free name of where ``href`` lives: ``host[:port]`` or ``local file``."""
    parts = urlsplit(href)
    if parts.scheme in ("http", "https") and parts.netloc:
        return parts.netloc.rsplit("@", 1)[-1]
    if parts.scheme and len(parts.scheme) > 1 and parts.scheme != "file":
        return f"{parts.scheme}://{parts.netloc}"
    return "local file"


def _is_azure_blob(href: str) -> bool:
    host = urlsplit(href).hostname or ""
    return host.endswith(".blob.core.windows.net")


def planetary_computer_signer(href: str) -> str:
    """Sign an Azure blob href with ``planetary_computer.sign``; leave every other href alone.

    The package fetches (and caches) a SAS token per storage container; set
    ``PC_SDK_SUBSCRIPTION_KEY`` for higher rate limits.
    """
    if not _is_azure_blob(href):
        return href
    import planetary_computer

    return str(planetary_computer.sign(href))


def _identity(href: str) -> str:
    return href


def make_signer(spec: str | Signer | None) -> Signer:
    """The signer for ``Settings.signer`` (``"planetary-computer"`` or ``"none"``) or a callable."""
    if spec is None or spec == "none":
        return _identity
    if spec == "planetary-computer":
        return planetary_computer_signer
    if callable(spec):
        return spec
    raise InvalidInputError(f"unknown signer {spec!r}; use 'planetary-computer', 'none' or a callable href -> href")


# ----------------------------------------------------------------------------------------
# Item helpers (plain dicts)
# ----------------------------------------------------------------------------------------
def item_datetime(item: Mapping[str, Any] | pystac.Item) -> datetime | None:
    """The item's acquisition datetime (``datetime``, else ``start_datetime``), aware UTC."""
    if not isinstance(item, Mapping):
        if item.datetime is not None:
            return utc(item.datetime)
        return parse_iso((item.properties or {}).get("start_datetime"))
    props = item.get("properties", {})
    return parse_iso(props.get("datetime")) or parse_iso(props.get("start_datetime"))


def _dt_range(d: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    p = d.get("properties", {})
    s = parse_iso(p.get("start_datetime"))
    e = parse_iso(p.get("end_datetime"))
    dt = parse_iso(p.get("datetime"))
    if s and e:
        return s, e
    if dt:
        return dt, dt
    return None


def item_crs(item: Mapping[str, Any], asset: str | None = None) -> str | None:
    """The item's (or asset's) CRS from ``proj:code`` (projection v2) or ``proj:epsg`` (v1)."""
    sources: list[Mapping[str, Any]] = []
    if asset is not None:
        sources.append(item.get("assets", {}).get(asset, {}))
    sources.append(item.get("properties", {}))
    for src in sources:
        code = src.get("proj:code")
        if code:
            return str(code)
        epsg = src.get("proj:epsg")
        if epsg is not None:
            return f"EPSG:{int(epsg)}"
    return None


def _bbox_intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _client_filter(items: Iterable[Mapping[str, Any]], collection: str, bbox: Sequence[float],
                   start: datetime | None, end: datetime | None, cloud_lt: float | None) -> list[dict[str, Any]]:
    """Apply the search filters again, dedupe by id, sort newest first (then by id)."""
    from shapely.geometry import box, shape

    qbox = box(*bbox)
    seen: dict[str, dict[str, Any]] = {}
    for d in items:
        if d.get("type") not in (None, "Feature"):
            continue
        if d.get("collection") not in (None, collection):
            continue
        iid = d.get("id")
        if not iid or iid in seen:
            continue
        ib = d.get("bbox")
        if ib is not None and len(ib) >= 4:
            ib4 = (ib[0], ib[1], ib[3], ib[4]) if len(ib) == 6 else tuple(ib[:4])
            if not _bbox_intersects(ib4, bbox):
                continue
        geom = d.get("geometry")
        if geom:
            try:
                if not shape(geom).intersects(qbox):
                    continue
            except (ValueError, TypeError, AttributeError):
                log.debug("item %s has an unreadable geometry; keeping it on its bbox", iid)
        if start is not None or end is not None:
            rng = _dt_range(d)
            if rng is None:
                continue
            if (end is not None and rng[0] > end) or (start is not None and rng[1] < start):
                continue
        if cloud_lt is not None:
            cc = d.get("properties", {}).get("eo:cloud_cover")
            if cc is not None and not float(cc) < cloud_lt:
                continue
        seen[str(iid)] = dict(d)
    out = sorted(seen.values(), key=lambda x: str(x["id"]))
    epoch = datetime(1, 1, 1, tzinfo=UTC)
    out.sort(key=lambda x: item_datetime(x) or epoch, reverse=True)
    return out


def _absolute_hrefs(d: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve relative asset hrefs of an item read from a file against that file's folder."""
    assets = d.get("assets") or {}
    changed = {}
    for k, a in assets.items():
        href = a.get("href") if isinstance(a, Mapping) else None
        if not href:
            continue
        if urlsplit(href).scheme and len(urlsplit(href).scheme) > 1:
            continue
        p = Path(href)
        if not p.is_absolute():
            changed[k] = {**a, "href": str((base / p).resolve())}
    if changed:
        d = {**d, "assets": {**assets, **changed}}
    return d


# ----------------------------------------------------------------------------------------
# Catalogs
# ----------------------------------------------------------------------------------------
class Catalog:
    """A searchable STAC catalog (one per provider configuration; see :func:`get_catalog`).

    Attributes:
        provider: ``"planetary-computer"``, ``"stac-api"`` or ``"local"``.
        source: a token-free label of the catalog for provenance and messages
            (``"planetary-computer (planetarycomputer.microsoft.com)"``, ``"local (items.json)"``).
    """

    provider: str
    source: str

    def __init__(self, provider: str, source: str, *, signer: Signer, settings: Settings) -> None:
        self.provider = provider
        self.source = source
        self._signer = signer
        self._cache_enabled = settings.cache_enabled
        self._settings = settings

    # --- provider hooks ----------------------------------------------------------------
    def _search_dicts(self, collection: str, bbox: Sequence[float], start: datetime | None, end: datetime | None,
                      cloud_lt: float | None, limit: int, deadline: Deadline) -> list[dict[str, Any]]:
        raise NotImplementedError  # pragma: no cover

    # --- public ------------------------------------------------------------------------
    def search(
        self,
        collection: str,
        *,
        bbox_4326: Sequence[float],
        start: datetime | None,
        end: datetime | None,
        deadline: Deadline,
        cloud_lt: float | None = None,
        limit: int = _DEFAULT_LIMIT,
    ) -> list[pystac.Item]:
        """Items of ``collection`` over ``bbox_4326`` in ``[start, end]``, newest first, signed.

        Args:
            collection: collection id.
            bbox_4326: ``(minlon, minlat, maxlon, maxlat)``.
            start, end: aware datetimes; both None for a timeless search (DEM).
            deadline: the request's deadline; a search still running at it raises
                DeadlineExceededError.
            cloud_lt: keep items whose scene-wide ``eo:cloud_cover`` (percent) is below this
                (server-side when the server supports it, always client-side).
            limit: most items fetched from the server.

        Raises CatalogError (naming the catalog) when the search fails after retries.
        """
        import pystac

        bbox = tuple(float(v) for v in bbox_4326)
        if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox):
            raise InvalidInputError(f"bbox_4326 must be 4 finite numbers, got {bbox_4326!r}")
        if (start is None) != (end is None):
            raise InvalidInputError("search needs both start and end, or neither")
        key = None
        caches = None
        if self._cache_enabled:
            from ..cache import get_caches, stable_key

            caches = get_caches(self._settings)
            if caches is not None:
                key = stable_key("stac", self.provider, self.source, self._cache_id(), collection,
                                 [round(v, 7) for v in bbox], iso_z(start) if start else None,
                                 iso_z(end) if end else None, cloud_lt, limit)
        dicts = caches.stac.get(key) if caches is not None and key is not None else None
        if dicts is None:
            t = time.perf_counter()
            raw = self._search_dicts(collection, bbox, start, end, cloud_lt, limit, deadline)
            dicts = _client_filter(raw, collection, bbox, start, end, cloud_lt)
            log.debug("search %s at %s: %d returned, %d kept (%.3f s)", collection, self.source, len(raw),
                      len(dicts), time.perf_counter() - t)
            if caches is not None and key is not None:
                caches.stac.put(key, dicts)
        out = []
        for d in dicts:
            d2 = json.loads(json.dumps(d))
            # links to the API (root, parent, collection) would be fetched by pystac's default
            # StacIO, without a timeout, whenever an item is serialised: keep only `self`
            d2["links"] = [lk for lk in d2.get("links") or [] if isinstance(lk, dict) and lk.get("rel") == "self"]
            for a in (d2.get("assets") or {}).values():
                if isinstance(a, dict) and a.get("href"):
                    a["href"] = self._sign(a["href"], deadline)
            out.append(pystac.Item.from_dict(d2, preserve_dict=False))
        return out

    def _sign(self, href: str, deadline: Deadline) -> str:
        try:
            return self._signer(href)
        except Exception as exc:  # noqa: BLE001 - a signer is user code or a network call
            raise CatalogError(
                f"signing the asset URL {strip_query(href)} failed ({type(exc).__name__}: {redact(str(exc))}); "
                "check the signer (Settings.signer / PC_SDK_SUBSCRIPTION_KEY) or use signer='none' for public data"
            ) from None

    def _cache_id(self) -> Any:
        return None

    def __repr__(self) -> str:
        return f"<Catalog {self.source}>"


class _StacApiCatalog(Catalog):
    """A STAC API searched with pystac-client (timeout + urllib3 Retry on 429/5xx/timeouts)."""

    def __init__(self, provider: str, url: str, *, signer: Signer, settings: Settings) -> None:
        host = urlsplit(url).netloc.rsplit("@", 1)[-1] or url
        super().__init__(provider, f"{provider} ({host})", signer=signer, settings=settings)
        self.url = url
        self._timeout = float(settings.http_timeout_s)
        self._retries = int(settings.http_retries)
        self._backoff = float(settings.http_backoff_s)
        self._client: Any = None
        self._lock = threading.Lock()
        self._supports: dict[str, bool] = {}

    def _open(self) -> Any:
        with self._lock:
            if self._client is not None:
                return self._client
            from pystac_client import Client
            from pystac_client.stac_api_io import StacApiIO

            retry = _bounded_retry_class()(
                total=self._retries, connect=self._retries, read=self._retries, status=self._retries, other=0,
                backoff_factor=self._backoff, backoff_max=8.0,
                status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None,
                respect_retry_after_header=True, raise_on_status=False,
            )
            from .._version import __version__

            io = StacApiIO(headers={"User-Agent": f"terramind-nyc/{__version__}"}, timeout=self._timeout,
                           max_retries=retry)
            client = Client.open(self.url, stac_io=io)
            root = client.get_single_link("root")
            if root is not None and isinstance(root.target, str) and root.target.rstrip("/") == self.url.rstrip("/"):
                client.set_root(client)  # the landing page is its own root: do not fetch it a second time
            conforms = client.get_conforms_to()
            for name in ("QUERY", "FILTER", "SORT"):
                pat = re.compile(rf"/item-search#{name.lower()}$")
                ok = any(pat.search(str(u)) for u in conforms)
                self._supports[name] = ok
                if ok and not client.conforms_to(name):
                    client.add_conforms_to(name)  # e.g. v1.1.0 sort: pystac-client 0.9 knows only v1.0.*
            self._client = client
            return client

    def _search_dicts(self, collection: str, bbox: Sequence[float], start: datetime | None, end: datetime | None,
                      cloud_lt: float | None, limit: int, deadline: Deadline) -> list[dict[str, Any]]:
        step = f"searching {collection}"

        def run() -> list[dict[str, Any]]:
            try:
                client = self._open()
            except Exception as exc:  # noqa: BLE001 - any failure of a dependency becomes CatalogError
                raise CatalogError(
                    f"opening the STAC API {self.source} failed ({type(exc).__name__}: {redact(str(exc))[:300]}); "
                    "check `catalog_url` and the network, or try again later"
                ) from None
            kw: dict[str, Any] = {"collections": [collection], "bbox": list(bbox),
                                  "limit": min(_PAGE_SIZE, limit), "max_items": limit}
            if start is not None and end is not None:
                kw["datetime"] = [start, end]
            if cloud_lt is not None:
                if self._supports.get("QUERY"):
                    kw["query"] = {"eo:cloud_cover": {"lt": cloud_lt}}
                elif self._supports.get("FILTER"):
                    kw["filter"] = {"op": "<", "args": [{"property": "eo:cloud_cover"}, cloud_lt]}
                    kw["filter_lang"] = "cql2-json"
            if self._supports.get("SORT"):
                kw["sortby"] = [{"field": "properties.datetime", "direction": "desc"}]
            attempt = 0
            while True:
                try:
                    return list(client.search(**kw).items_as_dicts())
                except Exception as exc:  # noqa: BLE001 - any failure of a dependency becomes CatalogError
                    # urllib3 retries connection failures, timeouts, 429 and 5xx; a body cut off
                    # mid-transfer surfaces only after that, so it is retried here.
                    delay = min(8.0, self._backoff * 2 ** attempt)
                    if _broken_body(exc) and attempt < self._retries and deadline.remaining() > delay:
                        attempt += 1
                        log.debug("%s at %s: broken response (%s); retry %d in %.2f s", step, self.source,
                                  type(exc).__name__, attempt, delay)
                        time.sleep(delay)
                        continue
                    status = getattr(exc, "status_code", None)
                    advice = ("the server refused the search: check `catalog_url` and the collection ids"
                              if isinstance(status, int) and 400 <= status < 500 and status != 429 else
                              "the service may be down or overloaded: try again later, or raise `http_retries` "
                              "/ `http_timeout_s`")
                    raise CatalogError(
                        f"{step} at {self.source} failed ({type(exc).__name__}"
                        f"{f' HTTP {status}' if status else ''}: {redact(str(exc))[:300]}); {advice}"
                    ) from None

        return call_with_deadline(run, deadline, step, self.source)

    def _cache_id(self) -> Any:
        return self.url


_RETRY_AFTER_MAX_S = 10.0
_retry_cls: Any = None


def _bounded_retry_class() -> Any:
    """urllib3 ``Retry`` that honours ``Retry-After`` up to 10 s and tolerates fractional or
    malformed values (falling back to exponential backoff) instead of failing the request."""
    global _retry_cls
    if _retry_cls is None:
        from urllib3.exceptions import InvalidHeader
        from urllib3.util.retry import Retry

        class BoundedRetry(Retry):
            def parse_retry_after(self, retry_after: str) -> float:
                try:
                    seconds = float(super().parse_retry_after(retry_after))
                except InvalidHeader:
                    try:
                        seconds = float(retry_after)
                    except ValueError:
                        return 0.0
                if not math.isfinite(seconds):
                    return 0.0
                return min(max(seconds, 0.0), _RETRY_AFTER_MAX_S)

        _retry_cls = BoundedRetry
    return _retry_cls


def _broken_body(exc: BaseException) -> bool:
    """Whether a search failed on a response body cut off or garbled in transit."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, json.JSONDecodeError) or type(e).__name__ in (
                "ChunkedEncodingError", "ContentDecodingError", "IncompleteRead", "ProtocolError"):
            return True
        if "IncompleteRead" in str(e) or "Connection broken" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


class _LocalCatalog(Catalog):
    """An ItemCollection file or a folder of item JSON files, searched in-process."""

    def __init__(self, path: str, *, signer: Signer, settings: Settings) -> None:
        p = Path(path).expanduser()
        super().__init__("local", f"local ({p.name or path})", signer=signer, settings=settings)
        self.path = p
        self._lock = threading.Lock()
        self._loaded: tuple[Any, list[dict[str, Any]]] | None = None

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if self.path.is_dir():
            return sorted(q for q in self.path.rglob("*.json") if q.is_file())
        raise CatalogError(
            f"local catalog {self.path.name!r} does not exist; set `catalog_path` to an ItemCollection file "
            "or a folder of item JSON files"
        )

    def _items(self) -> list[dict[str, Any]]:
        files = self._files()
        sig = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        with self._lock:
            if self._loaded is not None and self._loaded[0] == sig:
                return self._loaded[1]
            items: list[dict[str, Any]] = []
            for f in files:
                try:
                    doc = json.loads(f.read_text())
                except (OSError, ValueError) as exc:
                    raise CatalogError(f"local catalog file {f.name!r} is not readable JSON ({exc}); fix or remove it") \
                        from None
                feats = doc.get("features") if isinstance(doc, dict) and "features" in doc else [doc]
                for d in feats or []:
                    if isinstance(d, dict) and d.get("type") == "Feature":
                        items.append(_absolute_hrefs(d, f.parent))
            if not items:
                raise CatalogError(f"local catalog {self.path.name!r} holds no STAC items")
            self._loaded = (sig, items)
            return items

    def _search_dicts(self, collection: str, bbox: Sequence[float], start: datetime | None, end: datetime | None,
                      cloud_lt: float | None, limit: int, deadline: Deadline) -> list[dict[str, Any]]:
        deadline.check(f"searching {collection}", self.source)
        return _client_filter(self._items(), collection, bbox, start, end, cloud_lt)[:limit]

    def _cache_id(self) -> Any:
        return str(self.path)


_pystac_warm = False


def _warm_pystac() -> None:
    """Build one item on the calling thread so pystac discovers its extension hooks here.

    The discovery runs once, inside ``warnings.catch_warnings()``, which is not thread-safe:
    done first in a worker thread (searches run there) it can scramble the process's warning
    filters. Callers reach this from their own thread through :func:`get_catalog`.
    """
    global _pystac_warm
    if _pystac_warm:
        return
    import pystac

    pystac.Item.from_dict({"type": "Feature", "stac_version": "1.0.0", "id": "warm-up", "geometry": None,
                           "properties": {"datetime": "2020-01-01T00:00:00Z"}, "links": [], "assets": {}})
    _pystac_warm = True


_catalogs: dict[tuple[Any, ...], Catalog] = {}
_catalogs_lock = threading.Lock()


def get_catalog(settings: Settings | None = None, *, signer: Signer | None = None) -> Catalog:
    """The catalog for ``settings`` (opened once per configuration and reused).

    ``signer`` overrides ``settings.signer`` with any callable ``href -> href`` (for example
    one that adds your own token). The cache key is the provider, URL or path, signer, HTTP
    timeout/retry settings and STAC cache settings.
    """
    s = Settings.resolve(settings)
    _warm_pystac()
    sign = make_signer(signer if signer is not None else s.signer)
    key = (s.key("catalog"), sign)
    with _catalogs_lock:
        cat = _catalogs.get(key)
        if cat is None:
            if s.catalog_provider == "local":
                assert s.catalog_path is not None  # validated by Settings
                cat = _LocalCatalog(s.catalog_path, signer=sign, settings=s)
            else:
                cat = _StacApiCatalog(s.catalog_provider, s.catalog_url, signer=sign, settings=s)
            _catalogs[key] = cat
        return cat


# ----------------------------------------------------------------------------------------
# Geometry: how much of the chip a set of footprints covers
# ----------------------------------------------------------------------------------------
def chip_polygon_4326(grid: ChipGrid) -> Any:
    """The chip's outline in WGS84 (densified), a shapely Polygon."""
    from shapely.geometry import Polygon

    tr = _transformer(grid.crs)
    minx, miny, maxx, maxy = grid.bounds
    n = 8
    xs = np.concatenate([np.linspace(minx, maxx, n), np.full(n, maxx), np.linspace(maxx, minx, n), np.full(n, minx)])
    ys = np.concatenate([np.full(n, miny), np.linspace(miny, maxy, n), np.full(n, maxy), np.linspace(maxy, miny, n)])
    lon, lat = tr.transform(xs, ys)
    return Polygon(zip(lon, lat))


_transformers: dict[str, Any] = {}


def _transformer(crs: str) -> Any:
    t = _transformers.get(crs)
    if t is None:
        from pyproj import Transformer

        t = _transformers[crs] = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return t


def footprint_coverage(grid: ChipGrid, items: Sequence[pystac.Item]) -> float | None:
    """Fraction (0..1) of the chip inside the union of the items' geometries (None: unknown)."""
    from shapely.geometry import shape
    from shapely.ops import unary_union

    geoms = []
    for it in items:
        if not it.geometry:
            return None
        try:
            geoms.append(shape(it.geometry))
        except (ValueError, TypeError, AttributeError):
            return None
    if not geoms:
        return 0.0
    chip = chip_polygon_4326(grid)
    if chip.area <= 0:
        return None
    return float(unary_union(geoms).intersection(chip).area / chip.area)


# ----------------------------------------------------------------------------------------
# Acquisitions
# ----------------------------------------------------------------------------------------
_ORBIT_RE = re.compile(r"_R(\d{3})_")
_TILE_RE = re.compile(r"_T(\d{2}[A-Z]{3})_")


def _props(item: pystac.Item) -> Mapping[str, Any]:
    return item.properties or {}


def _s2_orbit(item: pystac.Item) -> int | None:
    o = _props(item).get("sat:relative_orbit")
    if o is not None:
        return int(o)
    m = _ORBIT_RE.search(item.id)
    return int(m.group(1)) if m else None


def _s2_tile(item: pystac.Item) -> str | None:
    t = _props(item).get("s2:mgrs_tile")
    if t:
        return str(t)
    m = _TILE_RE.search(item.id)
    return m.group(1) if m else None


def _baseline_key(item: pystac.Item) -> tuple[float, str, str]:
    b = _props(item).get("s2:processing_baseline")
    try:
        bv = float(b) if b is not None else -1.0
    except ValueError:
        bv = -1.0
    return (bv, str(_props(item).get("s2:generation_time") or ""), item.id)


def _group(items: Sequence[pystac.Item], *, same_pass: Callable[[pystac.Item, pystac.Item], bool]) -> list[list[pystac.Item]]:
    """Cluster items (sorted newest first) into acquisitions: each joins the first group it matches."""
    groups: list[list[pystac.Item]] = []
    for it in items:
        for g in groups:
            if same_pass(g[0], it):
                g.append(it)
                break
        else:
            groups.append([it])
    return groups


def _same_s2_pass(a: pystac.Item, b: pystac.Item) -> bool:
    da, db = item_datetime(a), item_datetime(b)
    if da is None or db is None:
        return False
    pa, pb = str(_props(a).get("platform") or "").lower(), str(_props(b).get("platform") or "").lower()
    oa, ob = _s2_orbit(a), _s2_orbit(b)
    if pa and pb and oa is not None and ob is not None:
        return pa == pb and oa == ob and abs(da - db) <= timedelta(hours=1)
    return abs(da - db) <= timedelta(minutes=2)


def _same_s1_pass(a: pystac.Item, b: pystac.Item) -> bool:
    da, db = item_datetime(a), item_datetime(b)
    if da is None or db is None:
        return False
    pa, pb = str(_props(a).get("platform") or "").lower(), str(_props(b).get("platform") or "").lower()
    sa, sb = _props(a).get("sat:orbit_state"), _props(b).get("sat:orbit_state")
    return pa == pb and sa == sb and abs(da - db) <= timedelta(minutes=10)


def s2_acquisitions(items: Sequence[pystac.Item]) -> list[list[pystac.Item]]:
    """S2 items (newest first) grouped by acquisition; one item per MGRS tile (newest baseline).

    Items of one pass (same platform and relative orbit, within an hour) over different tiles
    form one group, ordered by id; duplicates of one tile (reprocessed products) keep the item
    with the newest processing baseline.
    """
    out = []
    for g in _group(items, same_pass=_same_s2_pass):
        by_tile: dict[str, pystac.Item] = {}
        for it in g:
            tile = _s2_tile(it) or it.id
            if tile not in by_tile or _baseline_key(it) > _baseline_key(by_tile[tile]):
                by_tile[tile] = it
        out.append(sorted(by_tile.values(), key=lambda i: i.id))
    return out


# ----------------------------------------------------------------------------------------
# Scene choice
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneCheck:
    """One S2 candidate acquisition as judged on the chip."""

    item_ids: tuple[str, ...]
    """Items of the acquisition (several for a chip across a tile edge)."""
    datetime: str
    """Acquisition time, ISO UTC."""
    cloud_fraction: float | None
    """Chip-level cloud fraction (SCL 3, 8, 9, 10 over valid pixels), 0..1; None when not read."""
    nodata_fraction: float | None
    """Chip-level nodata fraction (SCL 0, 1, or outside the footprints), 0..1; None when not read."""
    ok: bool
    """Whether it met the limits."""
    reason: str | None
    """Why it was rejected: ``"cloud"``, ``"nodata"``, ``"coverage"`` (footprints alone cover too
    little), ``"error"`` (its SCL could not be read), or None."""


@dataclass(frozen=True)
class S2Choice:
    """The chosen Sentinel-2 acquisition for a chip."""

    items: tuple[pystac.Item, ...]
    """The acquisition's items (one per MGRS tile), in mosaic order."""
    datetime: datetime
    """Acquisition time, aware UTC."""
    scl: np.ndarray
    """uint8 ``(H, W)`` SCL mosaic on the chip grid (nearest resampling; 0 = no data)."""
    cloud_fraction: float
    """Chip-level cloud fraction, 0..1."""
    nodata_fraction: float
    """Chip-level nodata fraction (SCL 0 or 1), 0..1."""
    checked: tuple[SceneCheck, ...] = field(default=())
    """Every candidate judged, newest first, the chosen one last."""


def scl_fractions(scl: np.ndarray) -> tuple[float, float]:
    """``(cloud_fraction, nodata_fraction)`` of an SCL chip (DESIGN section 2).

    cloud = pixels in {3, 8, 9, 10} / pixels not in {0, 1}; nodata = pixels in {0, 1} / all.
    A chip without a valid pixel has cloud fraction 1.
    """
    invalid = np.isin(scl, SCL_NODATA)
    valid = int(scl.size - invalid.sum())
    cloud = int(np.isin(scl, SCL_CLOUD).sum())
    return (cloud / valid if valid else 1.0), (float(invalid.mean()) if scl.size else 1.0)


def _fmt_window(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"


def choose_s2_scene(
    grid: ChipGrid,
    catalog: Catalog,
    *,
    start: datetime,
    end: datetime,
    settings: Settings,
    deadline: Deadline,
) -> S2Choice:
    """The newest S2 acquisition in ``[start, end]`` that is clear and covered over the chip.

    Searches with the loose ``scene_prefilter_cloud_pct`` prefilter, groups items into
    acquisitions, reads the SCL band on the chip grid for ``scene_candidates`` acquisitions at
    a time (all their items in parallel) and returns the newest one whose chip-level cloud
    fraction is <= ``max_cloud`` and nodata fraction <= ``max_nodata``.

    Raises:
        NoSceneError: nothing in the window, or every candidate too cloudy over the chip (the
            message says how to widen the search).
        ChipNodataError: every candidate leaves too much of the chip without data (a swath
            edge or a point outside the imagery).
        ChipError: the SCL of every remaining candidate failed to read.
        CatalogError, DeadlineExceededError: the search failed or the deadline passed.
    """
    with _Runner(settings.io_threads, deadline) as runner:
        items = catalog.search(settings.s2_collection, bbox_4326=grid.bounds_4326, start=start, end=end,
                               deadline=deadline, cloud_lt=settings.scene_prefilter_cloud_pct)
        return _choose_s2(grid, items, catalog=catalog, start=start, end=end, settings=settings, runner=runner)


def _choose_s2(grid: ChipGrid, items: Sequence[pystac.Item], *, catalog: Catalog, start: datetime, end: datetime,
               settings: Settings, runner: _Runner) -> S2Choice:
    from .reader import read_scl

    s = settings
    window = _fmt_window(start, end)
    if not items:
        raise NoSceneError(
            f"no Sentinel-2 scene over this chip from {window} with scene-wide cloud < "
            f"{s.scene_prefilter_cloud_pct:g}% in {catalog.source}; widen the window (`when`, or "
            f"`recency_days`={s.recency_days}) or raise `scene_prefilter_cloud_pct`"
        )
    groups = s2_acquisitions(items)
    checks: list[SceneCheck] = []
    errors: list[Exception] = []
    need_cover = 1.0 - s.max_nodata
    todo: list[list[pystac.Item]] = []
    for g in groups:
        cov = footprint_coverage(grid, g)
        if cov is not None and cov < need_cover - 0.02:
            dt = item_datetime(g[0])
            checks.append(SceneCheck(tuple(i.id for i in g), iso_z(dt) if dt else "", None, round(1.0 - cov, 6),
                                     False, "coverage"))
            log.debug("S2 %s: footprints cover %.0f%% of the chip; skipped", [i.id for i in g], 100 * cov)
            continue
        todo.append(g)
    n = max(1, s.scene_candidates)
    for b0 in range(0, len(todo), n):
        batch = todo[b0:b0 + n]
        flat = [(gi, it) for gi, g in enumerate(batch) for it in g]
        futs = [runner.submit(read_scl, it, grid, settings=s) for _, it in flat]
        owner = {f: it for f, (_, it) in zip(futs, flat)}

        def describe(f: Future[Any], owner: dict[Future[Any], pystac.Item] = owner) -> tuple[str, str]:
            return f"reading the SCL of {owner[f].id}", _asset_service(owner[f], "SCL")

        runner.wait_all(futs, describe, fail_fast=False)
        per_group: dict[int, list[tuple[pystac.Item, np.ndarray | Exception]]] = {}
        for f, (gi, it) in zip(futs, flat):
            exc = f.exception()
            per_group.setdefault(gi, []).append((it, exc if exc is not None else f.result()))  # type: ignore[arg-type]
        for gi, g in enumerate(batch):
            dt = item_datetime(g[0])
            ids = tuple(i.id for i in g)
            parts = per_group.get(gi, [])
            bad = [r for _, r in parts if isinstance(r, Exception)]
            if bad:
                errors.extend(bad)  # type: ignore[arg-type]
                log.warning("S2 %s skipped: its SCL could not be read (%s)", ids, bad[0])
                checks.append(SceneCheck(ids, iso_z(dt) if dt else "", None, None, False, "error"))
                continue
            mosaic = np.zeros(grid.shape, dtype=np.uint8)
            for _, arr in parts:
                assert isinstance(arr, np.ndarray)
                np.copyto(mosaic, arr, where=(mosaic == 0) & (arr != 0))
            cf, nf = scl_fractions(mosaic)
            ok = cf <= s.max_cloud and nf <= s.max_nodata
            reason = None if ok else ("nodata" if nf > s.max_nodata else "cloud")
            checks.append(SceneCheck(ids, iso_z(dt) if dt else "", round(cf, 6), round(nf, 6), ok, reason))
            log.debug("S2 %s %s: chip cloud %.3f nodata %.3f -> %s", ids, dt, cf, nf, "ok" if ok else reason)
            if ok:
                assert dt is not None
                return S2Choice(items=tuple(g), datetime=dt, scl=mosaic, cloud_fraction=cf, nodata_fraction=nf,
                                checked=tuple(checks))
    # nothing qualified
    judged = [c for c in checks if c.reason in ("cloud", "nodata")]
    if not judged and errors:
        first = errors[0]
        raise ChipError(
            f"the SCL band of every candidate Sentinel-2 scene ({len(checks)}) failed to read; first error: {first}"
        ) from first
    cloudy = [c for c in checks if c.reason == "cloud"]
    if not cloudy:
        best = max(checks, key=lambda c: 1.0 - (c.nodata_fraction if c.nodata_fraction is not None else 1.0))
        covered = 1.0 - (best.nodata_fraction if best.nodata_fraction is not None else 1.0)
        raise ChipNodataError(
            f"no Sentinel-2 scene from {window} covers enough of this chip: the best ({best.datetime[:10]}) has "
            f"data on {covered:.0%} of it, {1.0 - s.max_nodata:.0%} is needed (`max_nodata`={s.max_nodata:g}); "
            "the point may lie at the edge of the imagery: move it, try another window, or raise `max_nodata`"
        )
    least = min(cloudy, key=lambda c: c.cloud_fraction if c.cloud_fraction is not None else 1.0)
    raise NoSceneError(
        f"no Sentinel-2 scene with <= {s.max_cloud:.0%} cloud and <= {s.max_nodata:.0%} nodata over this chip "
        f"among {len(checks)} scene(s) from {window} (least cloudy: {least.cloud_fraction:.0%} on "
        f"{least.datetime[:10]}); widen the window (`when`, or `recency_days`={s.recency_days}) or raise `max_cloud`"
    )


def _asset_service(item: pystac.Item, key: str) -> str:
    a = item.assets.get(key)
    return service_of(a.href) if a is not None else "catalog"


# ----------------------------------------------------------------------------------------
# S1 and DEM
# ----------------------------------------------------------------------------------------
def pair_s1(
    grid: ChipGrid,
    catalog: Catalog,
    s2_datetime: datetime,
    *,
    settings: Settings,
    deadline: Deadline,
) -> list[pystac.Item] | None:
    """The S1 RTC acquisition nearest in time to ``s2_datetime`` within +-``s1_window_days``.

    Items of one pass (same platform and orbit direction, within 10 minutes) are returned
    together for mosaicking. A pass whose footprints cover at least ``1 - max_nodata`` of the
    chip is preferred to a nearer one that covers less; passes covering less than
    ``min_valid_fraction`` are ignored. None when nothing fits. Raises CatalogError /
    DeadlineExceededError when the search fails.
    """
    w = timedelta(days=settings.s1_window_days)
    t0 = utc(s2_datetime)
    items = catalog.search(settings.s1_collection, bbox_4326=grid.bounds_4326, start=t0 - w, end=t0 + w,
                           deadline=deadline)
    return pick_s1(grid, items, t0, settings=settings)


def pick_s1(grid: ChipGrid, items: Sequence[pystac.Item], s2_datetime: datetime, *,
            settings: Settings) -> list[pystac.Item] | None:
    """:func:`pair_s1`'s choice among already searched S1 items (any window around the S2 date)."""
    t0 = utc(s2_datetime)
    w = timedelta(days=settings.s1_window_days)
    near = [i for i in items if (dt := item_datetime(i)) is not None and abs(dt - t0) <= w]
    if not near:
        return None
    groups = _group(near, same_pass=_same_s1_pass)
    epoch = datetime(1, 1, 1, tzinfo=UTC)

    def dist(g: list[pystac.Item]) -> tuple[float, float]:
        dt = item_datetime(g[0]) or epoch
        return abs((dt - t0).total_seconds()), -dt.timestamp()

    groups.sort(key=dist)
    covs = [footprint_coverage(grid, g) for g in groups]
    for need in (1.0 - settings.max_nodata, settings.min_valid_fraction):
        for g, cov in zip(groups, covs):
            if cov is None or cov >= need - 1e-6:
                return sorted(g, key=lambda i: i.id)
    log.debug("no S1 pass within +-%d days covers %.0f%% of the chip", settings.s1_window_days,
              100 * settings.min_valid_fraction)
    return None


def find_dem(grid: ChipGrid, catalog: Catalog, *, settings: Settings, deadline: Deadline) -> list[pystac.Item] | None:
    """The ``dem_collection`` items (tiles) intersecting the chip, or None when there are none."""
    items = catalog.search(settings.dem_collection, bbox_4326=grid.bounds_4326, start=None, end=None,
                           deadline=deadline)
    if not items:
        return None
    return sorted(items, key=lambda i: i.id)
