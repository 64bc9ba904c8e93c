"""Acquisitions: which searched items belong together, how much of the chip they cover, S1 pairing.

Items of one acquisition (same platform and orbit, same pass) that together cover the chip, a
chip across an MGRS tile edge, are one candidate and are mosaicked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from ..dates import utc
from ..deadline import Deadline
from ..settings import Settings
from .items import item_datetime, item_props

if TYPE_CHECKING:  # pragma: no cover
    import pystac

    from ..grid import ChipGrid
    from .catalog import Catalog

__all__ = ["chip_polygon_4326", "find_dem", "footprint_coverage", "pick_s1", "s2_acquisitions"]

log = logging.getLogger(__name__)

_ORBIT_RE = re.compile(r"_R(\d{3})_")
_TILE_RE = re.compile(r"_T(\d{2}[A-Z]{3})_")
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


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
def _s2_orbit(item: pystac.Item) -> int | None:
    o = item_props(item).get("sat:relative_orbit")
    if o is not None:
        return int(o)
    m = _ORBIT_RE.search(item.id)
    return int(m.group(1)) if m else None


def _s2_tile(item: pystac.Item) -> str | None:
    t = item_props(item).get("s2:mgrs_tile")
    if t:
        return str(t)
    m = _TILE_RE.search(item.id)
    return m.group(1) if m else None


def _baseline_key(item: pystac.Item) -> tuple[float, str, str]:
    b = item_props(item).get("s2:processing_baseline")
    try:
        bv = float(b) if b is not None else -1.0
    except ValueError:
        bv = -1.0
    return (bv, str(item_props(item).get("s2:generation_time") or ""), item.id)


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


def _platform(item: pystac.Item) -> str:
    return str(item_props(item).get("platform") or "").lower()


def _same_s2_pass(a: pystac.Item, b: pystac.Item) -> bool:
    da, db = item_datetime(a), item_datetime(b)
    if da is None or db is None:
        return False
    pa, pb = _platform(a), _platform(b)
    oa, ob = _s2_orbit(a), _s2_orbit(b)
    if pa and pb and oa is not None and ob is not None:
        return pa == pb and oa == ob and abs(da - db) <= timedelta(hours=1)
    return abs(da - db) <= timedelta(minutes=2)


def _same_s1_pass(a: pystac.Item, b: pystac.Item) -> bool:
    da, db = item_datetime(a), item_datetime(b)
    if da is None or db is None:
        return False
    sa, sb = item_props(a).get("sat:orbit_state"), item_props(b).get("sat:orbit_state")
    return _platform(a) == _platform(b) and sa == sb and abs(da - db) <= timedelta(minutes=10)


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
# S1 and DEM
# ----------------------------------------------------------------------------------------
def pick_s1(grid: ChipGrid, items: Sequence[pystac.Item], s2_datetime: datetime, *,
            settings: Settings) -> list[pystac.Item] | None:
    """The S1 RTC acquisition among ``items`` nearest in time to ``s2_datetime`` within +-``s1_window_days``.

    ``items`` may come from any search window around the S2 date (the reader searches the S2
    window widened by ``s1_window_days`` before the S2 date is known). Items of one pass (same
    platform and orbit direction, within 10 minutes) are returned together for mosaicking. A
    pass whose footprints cover at least ``1 - max_nodata`` of the chip is preferred to a nearer
    one that covers less; passes covering less than ``min_valid_fraction`` are ignored. None
    when nothing fits.
    """
    t0 = utc(s2_datetime)
    w = timedelta(days=settings.s1_window_days)
    near = [i for i in items if (dt := item_datetime(i)) is not None and abs(dt - t0) <= w]
    if not near:
        return None
    groups = _group(near, same_pass=_same_s1_pass)

    def dist(g: list[pystac.Item]) -> tuple[float, float]:
        dt = item_datetime(g[0]) or _EPOCH
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
