"""One STAC search per collection over a whole area, then items handed to each window locally.

A city map reads hundreds of windows; searching the catalog once per window would cost as many
round trips per collection and date window. :func:`search_area` runs the three searches the
chip reader runs (S2 in the date window, S1 in the window +- ``s1_window_days``, the DEM
without dates) once over the area's bounding box and keeps the raw, *unsigned* item dicts.
:meth:`AreaItems.for_bbox` keeps the items that touch one window (a small, picklable piece for
a task on another process or machine), and :meth:`AreaItems.catalog` turns that into a
:class:`~.catalog.Catalog` the reader searches as usual: the client-side filters, the scene
choice and the reads are the reader's own, and asset URLs are signed when the task searches,
not when the work is planned (a Planetary Computer token lives about an hour).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..dates import iso_z
from ..deadline import Deadline
from ..errors import CatalogError
from ..settings import Settings
from .catalog import Catalog, get_catalog
from .items import client_filter
from .urls import Signer, make_signer

__all__ = ["AREA_SEARCH_LIMIT", "AreaItems", "search_area"]

log = logging.getLogger(__name__)

#: Most items one area search may return per collection; a search that reaches it is refused
#: (its items would be cut short) with advice to shorten the date window or the area.
AREA_SEARCH_LIMIT = 5000


@dataclass(frozen=True)
class AreaItems:
    """The raw item dicts of the area searches, per collection, and the windows they cover."""

    provider: str
    """The catalog provider the items came from (``planetary-computer``, ``stac-api``, ``local``)."""
    source: str
    """Its token-free label (provenance and messages)."""
    items: Mapping[str, tuple[dict[str, Any], ...]]
    """Collection id -> unsigned item dicts (newest first)."""
    windows: Mapping[str, tuple[datetime | None, datetime | None]]
    """Collection id -> the date window it was searched over ((None, None): without dates)."""
    bbox_4326: tuple[float, float, float, float] = field(default=(-180.0, -90.0, 180.0, 90.0))
    """The area searched, ``(minlon, minlat, maxlon, maxlat)``."""

    def __len__(self) -> int:
        return sum(len(v) for v in self.items.values())

    def for_bbox(self, bbox_4326: Sequence[float]) -> AreaItems:
        """The items whose footprint touches ``bbox_4326`` (one window's share)."""
        bbox = tuple(float(v) for v in bbox_4326)
        kept = {c: tuple(client_filter(ds, c, bbox, None, None, None)) for c, ds in self.items.items()}
        return AreaItems(self.provider, self.source, kept, dict(self.windows), (bbox[0], bbox[1], bbox[2], bbox[3]))

    def catalog(self, settings: Settings, *, signer: Signer | None = None) -> Catalog:
        """A catalog over these items; it signs asset URLs as each search runs (``settings.signer``
        or ``signer``), with the STAC search cache off (these searches cost nothing)."""
        s = settings.replace(cache_enabled=False)
        return Catalog(_AreaBackend(self), signer=make_signer(signer if signer is not None else s.signer), settings=s)


class _AreaBackend:
    """A :class:`~.catalog.Backend` that answers from the area searches."""

    def __init__(self, area: AreaItems) -> None:
        self.area = area
        self.provider = area.provider
        self.source = area.source

    def search_dicts(self, collection: str, bbox: Sequence[float], start: datetime | None, end: datetime | None,
                     cloud_lt: float | None, limit: int, deadline: Deadline) -> list[dict[str, Any]]:
        if collection not in self.area.items:
            raise CatalogError(f"the area search did not cover collection {collection!r} "
                               f"(it searched {', '.join(sorted(self.area.items))})")
        w0, w1 = self.area.windows[collection]
        if w0 is not None and w1 is not None and (start is None or end is None or start < w0 or end > w1):
            raise CatalogError(f"{collection}: a search over {iso_z(start) if start else None}..{iso_z(end) if end else None}"
                               f" lies outside the area search's {iso_z(w0)}..{iso_z(w1)}")
        return list(self.area.items[collection])  # the Catalog filters by bbox, dates and cloud itself


def search_area(bbox_4326: Sequence[float], start: datetime, end: datetime, *, settings: Settings,
                deadline: Deadline, catalog: Catalog | None = None) -> AreaItems:
    """The S2, S1 and DEM searches of the chip reader, once each over ``bbox_4326``.

    Args:
        bbox_4326: the whole area, ``(minlon, minlat, maxlon, maxlat)``.
        start, end: the date window (aware datetimes).
        settings: collections, ``s1_window_days``, ``scene_prefilter_cloud_pct``, the catalog.
        deadline: the searches stop at it (DeadlineExceededError).
        catalog: default ``get_catalog(settings)``.

    Raises CatalogError when a search fails or returns :data:`AREA_SEARCH_LIMIT` items (the
    area or the date window is too large for one search).
    """
    cat = catalog if catalog is not None else get_catalog(settings)
    bbox = tuple(float(v) for v in bbox_4326)
    w = timedelta(days=settings.s1_window_days)
    plan: dict[str, tuple[datetime | None, datetime | None, float | None]] = {
        settings.s2_collection: (start, end, settings.scene_prefilter_cloud_pct),
        settings.s1_collection: (start - w, end + w, None),
        settings.dem_collection: (None, None, None),
    }
    items: dict[str, tuple[dict[str, Any], ...]] = {}
    for collection, (a, b, cloud) in plan.items():
        raw = cat.backend.search_dicts(collection, bbox, a, b, cloud, AREA_SEARCH_LIMIT, deadline)
        if len(raw) >= AREA_SEARCH_LIMIT:
            raise CatalogError(f"the search of {collection} over the area returned {len(raw)} items, the most one "
                               "area search takes; map a shorter date window or a smaller area")
        items[collection] = tuple(client_filter(raw, collection, bbox, a, b, cloud))
        log.info("area search %s at %s: %d items", collection, cat.source, len(items[collection]))
    windows = {c: (a, b) for c, (a, b, _) in plan.items()}
    return AreaItems(cat.provider, cat.source, items, windows, (bbox[0], bbox[1], bbox[2], bbox[3]))
