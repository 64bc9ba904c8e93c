"""A STAC API searched with pystac-client: a timeout, and bounded retries of timeouts, 429 and 5xx.

``query``, ``filter`` and ``sortby`` are sent only to servers that advertise them in their
conformance classes; whatever is sent, :class:`~.catalog.Catalog` filters and sorts again.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from ..deadline import Deadline, call_with_deadline
from ..errors import CatalogError
from ..settings import Settings
from .urls import redact

__all__ = ["StacApiBackend"]

log = logging.getLogger(__name__)

_PAGE_SIZE = 100
_RETRY_AFTER_MAX_S = 10.0


class StacApiBackend:
    """Raw item dicts from a STAC API (pystac-client; timeout + urllib3 Retry on 429/5xx/timeouts)."""

    def __init__(self, provider: str, url: str, *, settings: Settings) -> None:
        host = urlsplit(url).netloc.rsplit("@", 1)[-1] or url
        self.provider = provider
        self.source = f"{provider} ({host})"
        self.url = url
        self._timeout = float(settings.http_timeout_s)
        self._retries = int(settings.http_retries)
        self._backoff = float(settings.http_backoff_s)
        self._client: Any = None
        self._lock = threading.Lock()
        self.supports: dict[str, bool] = {}
        """Which of ``QUERY``, ``FILTER``, ``SORT`` the server advertises (filled on first open)."""

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
                self.supports[name] = ok
                if ok and not client.conforms_to(name):
                    client.add_conforms_to(name)  # e.g. v1.1.0 sort: pystac-client 0.9 knows only v1.0.*
            self._client = client
            return client

    def _search_kwargs(self, collection: str, bbox: Sequence[float], start: datetime | None, end: datetime | None,
                       cloud_lt: float | None, limit: int) -> dict[str, Any]:
        kw: dict[str, Any] = {"collections": [collection], "bbox": list(bbox),
                              "limit": min(_PAGE_SIZE, limit), "max_items": limit}
        if start is not None and end is not None:
            kw["datetime"] = [start, end]
        if cloud_lt is not None:
            if self.supports.get("QUERY"):
                kw["query"] = {"eo:cloud_cover": {"lt": cloud_lt}}
            elif self.supports.get("FILTER"):
                kw["filter"] = {"op": "<", "args": [{"property": "eo:cloud_cover"}, cloud_lt]}
                kw["filter_lang"] = "cql2-json"
        if self.supports.get("SORT"):
            kw["sortby"] = [{"field": "properties.datetime", "direction": "desc"}]
        return kw

    def search_dicts(self, collection: str, bbox: Sequence[float], start: datetime | None, end: datetime | None,
                     cloud_lt: float | None, limit: int, deadline: Deadline) -> list[dict[str, Any]]:
        step = f"searching {collection}"

        def run() -> list[dict[str, Any]]:
            try:
                client = self._open()
            except Exception as exc:  # noqa: BLE001 - any failure of a dependency becomes CatalogError
                status = _status_of(exc)
                raise CatalogError(
                    f"opening the STAC API {self.source} failed ({type(exc).__name__}"
                    f"{f' HTTP {status}' if status else ''}: {redact(str(exc))[:300]}); "
                    + _advice(status, self._retries, default="check `catalog_url` and the network, or try again later")
                ) from None
            kw = self._search_kwargs(collection, bbox, start, end, cloud_lt, limit)
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
                    status = _status_of(exc)
                    advice = _advice(status, self._retries,
                                     default="the service may be down or overloaded: try again later, or raise "
                                             "`http_retries` / `http_timeout_s`")
                    raise CatalogError(
                        f"{step} at {self.source} failed ({type(exc).__name__}"
                        f"{f' HTTP {status}' if status else ''}: {redact(str(exc))[:300]}); {advice}"
                    ) from None

        return call_with_deadline(run, deadline, step, self.source)

    def __repr__(self) -> str:
        return f"<StacApiBackend {self.source}>"


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status of a failed request: pystac-client's ``APIError.status_code``, or the
    ``response`` of a requests ``HTTPError``; None when no answer came (connection, timeout)."""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) and 100 <= status <= 599 else None


def _advice(status: int | None, retries: int, *, default: str) -> str:
    """What to do about a STAC API answer with ``status`` (``default`` when there is none)."""
    if status in (401, 403):
        return (f"the STAC API refused access (HTTP {status}): the service needs valid credentials; check "
                "`catalog_url` and the key or token it expects (PC_SDK_SUBSCRIPTION_KEY for the Planetary Computer)")
    if status in (404, 410):
        return (f"the STAC API has no such endpoint or collection (HTTP {status}): check `catalog_url` and the "
                "collection ids (`s2_collection`, `s1_collection`, `dem_collection`); the catalog may have moved")
    if status is not None and (status in (408, 429) or status >= 500):
        busy = "is rate limiting" if status == 429 else "kept failing"
        return (f"the service {busy} (HTTP {status}) after {retries} retries: try again later, or raise "
                "`http_retries` / `http_backoff_s` / `http_timeout_s`")
    if status is not None and 400 <= status < 500:
        return "the server refused the search: check `catalog_url` and the collection ids"
    return default


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
