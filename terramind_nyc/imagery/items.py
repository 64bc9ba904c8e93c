"""STAC item accessors, on plain dicts and ``pystac.Item`` alike, and the client-side search filter.

Servers differ in what they honour (``rustac serve`` ignores ``sortby``; ``query`` is sent
only to servers that advertise it), so every search result passes :func:`client_filter`:
right collection, footprint intersecting the chip, datetime inside the window, scene-wide
cloud below the prefilter, newest first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dates import parse_iso, utc
from ..errors import ChipError
from .urls import is_remote, service_of

if TYPE_CHECKING:  # pragma: no cover
    import pystac

__all__ = [
    "absolute_hrefs",
    "asset_crs",
    "asset_href",
    "asset_nodata",
    "asset_service",
    "bbox_intersects",
    "client_filter",
    "item_crs",
    "item_datetime",
    "item_dt_range",
    "item_props",
]

log = logging.getLogger(__name__)

#: Sorts items without a datetime last (newest first).
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


def item_props(item: pystac.Item) -> Mapping[str, Any]:
    """The item's properties (never None)."""
    return item.properties or {}


def item_datetime(item: Mapping[str, Any] | pystac.Item) -> datetime | None:
    """The item's acquisition datetime (``datetime``, else ``start_datetime``), aware UTC."""
    if not isinstance(item, Mapping):
        if item.datetime is not None:
            return utc(item.datetime)
        return parse_iso((item.properties or {}).get("start_datetime"))
    props = item.get("properties", {})
    return parse_iso(props.get("datetime")) or parse_iso(props.get("start_datetime"))


def item_dt_range(d: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    """``(start_datetime, end_datetime)`` of an item dict, ``(datetime, datetime)``, or None."""
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


def asset_crs(item: pystac.Item, asset: str) -> str | None:
    """:func:`item_crs` of a ``pystac.Item``'s asset (never ``Item.to_dict()``: with an API client
    as root it resolves links over the network)."""
    a = item.assets.get(asset)
    return item_crs({"properties": item.properties or {},
                     "assets": {asset: a.extra_fields if a is not None else {}}}, asset)


def asset_href(item: pystac.Item, key: str, modality: str) -> str:
    """The href of asset ``key``; ChipError when the item has no such asset."""
    asset = item.assets.get(key)
    if asset is None or not asset.href:
        raise ChipError(
            f"{modality} item {item.id} has no asset {key!r} (it has {sorted(item.assets)}); "
            "the catalog does not follow the expected asset naming: use a catalog with the "
            "Planetary Computer asset keys"
        )
    return asset.href


def asset_nodata(item: pystac.Item, key: str) -> float | None:
    """The nodata value ``raster:bands`` declares for asset ``key`` (None when it says none)."""
    asset = item.assets.get(key)
    if asset is None:
        return None
    for b in asset.extra_fields.get("raster:bands") or []:
        if isinstance(b, Mapping) and b.get("nodata") is not None:
            try:
                return float(b["nodata"])
            except (TypeError, ValueError):
                return None
    return None


def asset_service(item: pystac.Item, key: str) -> str:
    """Where asset ``key`` is served from (:func:`~.urls.service_of`), ``"catalog"`` without it."""
    a = item.assets.get(key)
    return service_of(a.href) if a is not None else "catalog"


def bbox_intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two ``(minx, miny, maxx, maxy)`` boxes touch or overlap."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def client_filter(items: Iterable[Mapping[str, Any]], collection: str, bbox: Sequence[float],
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
            if not bbox_intersects(ib4, bbox):
                continue
        geom = d.get("geometry")
        if geom:
            try:
                if not shape(geom).intersects(qbox):
                    continue
            except (ValueError, TypeError, AttributeError):
                log.debug("item %s has an unreadable geometry; keeping it on its bbox", iid)
        if start is not None or end is not None:
            rng = item_dt_range(d)
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
    out.sort(key=lambda x: item_datetime(x) or _EPOCH, reverse=True)
    return out


def absolute_hrefs(d: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve relative asset hrefs of an item read from a file against that file's folder."""
    assets = d.get("assets") or {}
    changed = {}
    for k, a in assets.items():
        href = a.get("href") if isinstance(a, Mapping) else None
        if not href:
            continue
        if is_remote(href):
            continue
        p = Path(href)
        if not p.is_absolute():
            changed[k] = {**a, "href": str((base / p).resolve())}
    if changed:
        d = {**d, "assets": {**assets, **changed}}
    return d
