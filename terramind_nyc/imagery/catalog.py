"""The STAC catalog a chip is searched in: one interface, :class:`Catalog`, over three providers.

- ``planetary-computer`` (default): Microsoft Planetary Computer's STAC API; asset URLs are
  signed with ``planetary_computer.sign`` (only Azure blob hosts; ``PC_SDK_SUBSCRIPTION_KEY``
  is honoured by that package);
- ``stac-api``: any STAC API at ``Settings.catalog_url`` (:mod:`.stac_api`: pystac-client, with
  a timeout and bounded retries of timeouts, 429 and 5xx);
- ``local``: a STAC ItemCollection file or a folder of item JSON files
  (``Settings.catalog_path``; :mod:`.local_catalog`), searched in-process with the same filters.

A :class:`Catalog` wraps a provider's :class:`Backend` (which fetches raw item dicts) and adds
what every provider shares: input checks, the client-side filter (:func:`.items.client_filter`),
the STAC search cache and signing. Every network step has a timeout and runs under one overall
:class:`~terramind_nyc.deadline.Deadline`; a server that hangs ends in
:class:`~terramind_nyc.errors.DeadlineExceededError` at the deadline, not later.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..dates import iso_z
from ..deadline import Deadline
from ..errors import CatalogError, InvalidInputError
from ..settings import Settings
from .items import client_filter
from .local_catalog import LocalBackend
from .stac_api import StacApiBackend
from .urls import Signer, make_signer, redact, strip_query

if TYPE_CHECKING:  # pragma: no cover
    import pystac

__all__ = ["Backend", "Catalog", "get_catalog", "warm_pystac"]

log = logging.getLogger(__name__)

_DEFAULT_LIMIT = 500


class Backend(Protocol):
    """How one provider fetches raw item dicts (:class:`~.stac_api.StacApiBackend`,
    :class:`~.local_catalog.LocalBackend`, or your own)."""

    provider: str
    """``"planetary-computer"``, ``"stac-api"``, ``"local"``, ..."""
    source: str
    """A token-free label for provenance and messages."""

    def search_dicts(self, collection: str, bbox: Sequence[float], start: datetime | None, end: datetime | None,
                     cloud_lt: float | None, limit: int, deadline: Deadline) -> list[dict[str, Any]]:
        """Item dicts of ``collection`` (filtered again on the client); CatalogError on failure."""
        ...  # pragma: no cover


class Catalog:
    """A searchable STAC catalog (one per provider configuration; see :func:`get_catalog`).

    Attributes:
        provider: ``"planetary-computer"``, ``"stac-api"`` or ``"local"``.
        source: a token-free label of the catalog for provenance and messages
            (``"planetary-computer (planetarycomputer.microsoft.com)"``, ``"local (items.json)"``).
        backend: the provider's :class:`Backend`.
    """

    provider: str
    source: str

    def __init__(self, backend: Backend, *, signer: Signer, settings: Settings) -> None:
        self.backend = backend
        self.provider = backend.provider
        self.source = backend.source
        self._signer = signer
        self._cache_enabled = settings.cache_enabled
        self._settings = settings

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
                # the configuration, and the backend for catalogs built around one of your own
                key = stable_key("stac", self._settings.key("catalog"), self.provider, self.source, collection,
                                 [round(v, 7) for v in bbox],
                                 iso_z(start) if start else None, iso_z(end) if end else None, cloud_lt, limit)
        dicts = caches.stac.get(key) if caches is not None and key is not None else None
        if dicts is None:
            t = time.perf_counter()
            raw = self.backend.search_dicts(collection, bbox, start, end, cloud_lt, limit, deadline)
            dicts = client_filter(raw, collection, bbox, start, end, cloud_lt)
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
                    a["href"] = self._sign(a["href"])
            out.append(pystac.Item.from_dict(d2, preserve_dict=False))
        return out

    def _sign(self, href: str) -> str:
        try:
            return self._signer(href)
        except Exception as exc:  # noqa: BLE001 - a signer is user code or a network call
            raise CatalogError(
                f"signing the asset URL {strip_query(href)} failed ({type(exc).__name__}: {redact(str(exc))}); "
                "check the signer (Settings.signer / PC_SDK_SUBSCRIPTION_KEY) or use signer='none' for public data"
            ) from None

    def __repr__(self) -> str:
        return f"<Catalog {self.source}>"


_pystac_warm = False


def warm_pystac() -> None:
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
    timeout/retry settings and STAC cache settings (``Settings.key("catalog")``).
    """
    s = Settings.resolve(settings)
    warm_pystac()
    sign = make_signer(signer if signer is not None else s.signer)
    key = (s.key("catalog"), sign)
    with _catalogs_lock:
        cat = _catalogs.get(key)
        if cat is None:
            backend: Backend
            if s.catalog_provider == "local":
                assert s.catalog_path is not None  # validated by Settings
                backend = LocalBackend(s.catalog_path)
            else:
                backend = StacApiBackend(s.catalog_provider, s.catalog_url, settings=s)
            cat = _catalogs[key] = Catalog(backend, signer=sign, settings=s)
        return cat
