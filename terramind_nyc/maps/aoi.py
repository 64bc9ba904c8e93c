"""Areas of interest for city-scale maps: which part of New York City a map covers, and when.

:func:`resolve_aoi` turns ``"brooklyn"``, ``"-74.02,40.70,-73.97,40.75"``, ``"parks.geojson"``, ... into
an :class:`AOI`: a lon/lat outline plus the grid (``Settings.crs`` at ``resolution_m``, snapped outward)
covering it; ``aoi.mask(aoi.grid)`` marks the pixels inside. Boroughs are approximate envelopes
(rectangles that overlap and take in water and some New Jersey shore); a GeoJSON file gives a borough's
exact outline. With ``Settings.domain_check`` an AOI partly outside the NYC domain is clipped (a logged
warning says how much). :func:`check_when_list` resolves one or several date windows (one map each).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import numbers
import os.path
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.errors import ShapelyError
from shapely.geometry import MultiPolygon, Polygon, box, mapping, shape
from shapely.geometry.base import BaseGeometry

from ..dates import resolve_when
from ..errors import InvalidInputError, OutsideDomainError, shown
from ..grid import MAX_SIDE_PX, ChipGrid
from ..settings import Settings

__all__ = ["AOI", "BOROUGHS", "check_when_list", "resolve_aoi"]

log = logging.getLogger(__name__)

#: Borough -> approximate ``(minlon, minlat, maxlon, maxlat)`` envelope in WGS84 degrees: the
#: bounding rectangles of the NYC Department of City Planning borough boundaries, rounded to
#: 0.001 degree. Rectangles, not outlines; pass a GeoJSON file for a borough's exact shape.
BOROUGHS: dict[str, tuple[float, float, float, float]] = {
    "manhattan": (-74.048, 40.680, -73.906, 40.882), "brooklyn": (-74.042, 40.570, -73.833, 40.740),
    "queens": (-73.963, 40.542, -73.700, 40.801), "bronx": (-73.934, 40.785, -73.765, 40.916),
    "staten_island": (-74.256, 40.496, -74.052, 40.649),
}
#: Names (lower case, ``_``/``-`` read as spaces) -> a :data:`BOROUGHS` key, or ``"nyc"`` (the domain).
_NAMES: dict[str, str] = {b.replace("_", " "): b for b in BOROUGHS} | {
    "nyc": "nyc", "new york city": "nyc", "new york county": "manhattan", "kings": "brooklyn", "the bronx": "bronx",
    "kings county": "brooklyn", "queens county": "queens", "bronx county": "bronx", "richmond": "staten_island",
    "richmond county": "staten_island"}
_FORMS = ("'nyc', a borough ('manhattan', 'brooklyn', 'queens', 'bronx', 'staten_island'), a bbox 'minlon,minlat,"
          "maxlon,maxlat' or 4 numbers, a GeoJSON dict or .geojson/.json path, a shapely Polygon/MultiPolygon, "
          "or a ChipGrid")
_WINDOWS = "e.g. [('2024-06-01', '2024-06-30'), '2024-07-01/2024-07-31']"


@dataclass(frozen=True)
class AOI:
    """An area of interest: a lon/lat outline and the grid of pixels that covers it."""

    name: str
    """Its source: ``"nyc"``, a borough, ``"bbox"``, ``"geojson"`` (dict), ``"geometry"``, a file name, ``"grid"``."""
    geometry_4326: Any
    """The outline: a shapely Polygon or MultiPolygon in WGS84 lon/lat degrees (clipped to the domain)."""
    grid: ChipGrid
    """The grid on the ``Settings.crs`` / ``resolution_m`` lattice, snapped outward, covering the outline."""

    def mask(self, grid: ChipGrid) -> np.ndarray:
        """Bool ``(height, width)`` over ``grid``: True where a pixel's centre lies inside the AOI."""
        from rasterio.features import geometry_mask

        if not isinstance(grid, ChipGrid):
            raise InvalidInputError(f"mask() takes a ChipGrid, got {type(grid).__name__} {shown(grid)}")
        geom = _to_crs(self.geometry_4326, "EPSG:4326", grid.crs, 5e-4)  # lon/lat edges densified to ~50 m
        return np.asarray(geometry_mask([geom], out_shape=grid.shape, transform=grid.transform, invert=True), bool)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description: name, lon/lat bounds of the outline, the outline as GeoJSON, the grid."""
        return {"name": self.name, "bounds_4326": [float(v) for v in self.geometry_4326.bounds],
                "geometry": json.loads(json.dumps(mapping(self.geometry_4326))), "grid": self.grid.to_dict()}


def resolve_aoi(aoi: Any, settings: Settings | None = None) -> AOI:
    """The :class:`AOI` for a user's ``aoi``; coordinates are WGS84 lon/lat throughout.

    ``aoi``: ``"nyc"`` (the settings' domain rectangle), a borough or alias (:data:`BOROUGHS`: an envelope), a bbox
    ``"minlon,minlat,maxlon,maxlat"`` or 4 numbers, a GeoJSON dict or .geojson/.json path (Polygon, MultiPolygon,
    or a Feature/FeatureCollection of them, unioned), a shapely Polygon/MultiPolygon, or a ChipGrid (used exactly,
    never clipped; on the settings' CRS and resolution). InvalidInputError for anything else, a non-polygonal,
    empty or non-finite geometry, a reversed bbox, a bad file or a grid over MAX_SIDE_PX a side;
    OutsideDomainError for an AOI outside the NYC domain (``domain_check``) or the CRS's area of use.
    """
    s = Settings.resolve(settings)
    if isinstance(aoi, ChipGrid):
        grid = _check_grid(aoi, s)
        footprint = _to_crs(box(*grid.bounds), grid.crs, "EPSG:4326", 8 * grid.resolution)  # its mask: all True
        if s.domain_check:
            _clip(footprint, "the grid", s, warn=False)  # refused when wholly outside; kept whole otherwise
        return AOI("grid", footprint, grid)
    name, geom = _parse(aoi, s)
    b = geom.bounds
    if not (-180 <= b[0] and b[2] <= 180 and -90 <= b[1] and b[3] <= 90):
        raise InvalidInputError(f"the AOI ({_fmt(b)}) is not in lon/lat degrees{_swap_hint(b, s)}; pass WGS84")
    geom = _clip(geom, f"AOI {name!r}", s) if s.domain_check else geom
    try:
        a, b = CRS.from_user_input(s.crs).area_of_use, geom.bounds
    except CRSError:
        raise InvalidInputError(f"unknown CRS {shown(s.crs)}; set Settings(crs=...) to one like 'EPSG:32618'") from None
    if a and a.west < a.east and not (a.west - 1 <= b[0] and b[2] <= a.east + 1 and a.south - 1 <= b[1]
                                      and b[3] <= a.north + 1):  # 1 degree of slack, as chip_grid allows
        raise OutsideDomainError(f"AOI {name!r} ({_fmt(b)}) lies outside the area of use of {s.crs} ({_fmt(a.bounds)})"
                                 f"{_swap_hint(b, s)}; set Settings(crs=...) to a CRS that covers it")
    bounds = _transformer("EPSG:4326", s.crs).transform_bounds(b[0], b[1], b[2], b[3], densify_pts=21)
    c = geom.centroid
    return AOI(name, geom, _check_grid(ChipGrid.from_bounds(s.crs, bounds, s.resolution_m, snap=True,
                                                            center=(c.y, c.x)), s))


def check_when_list(when: Any, settings: Settings | None = None) -> tuple[tuple[datetime, datetime], ...]:
    """One or several date windows, each resolved by :func:`~terramind_nyc.dates.resolve_when`.

    ``when``: one window in a form ``resolve_when`` takes (None, a date, ``"start/end"``, a ``(start, end)``
    pair) -> a 1-tuple; or a list/tuple whose items are all pairs or ``"start/end"`` strings, oldest first,
    none overlapping (one may start where the last ended): InvalidInputError names offending windows.
    """
    s = Settings.resolve(settings)
    if not isinstance(when, list | tuple):
        return (resolve_when(when, s),)
    if not when:
        raise InvalidInputError(f"`when` is an empty list of date windows; pass at least one, {_WINDOWS}")
    several = [isinstance(w, list | tuple) or (isinstance(w, str) and "/" in w) for w in when]
    if not all(several):
        if len(when) == 2 and not any(several):
            return (resolve_when(when, s),)  # one (start, end) pair
        i = several.index(False)
        raise InvalidInputError(f"`when` {shown(when)} is neither one (start, end) pair nor a list of windows "
                                f"(when[{i}] is {shown(when[i])}); pass each as a pair or 'start/end', {_WINDOWS}")
    windows: list[tuple[datetime, datetime]] = []
    for i, w in enumerate(when):
        try:
            windows.append(resolve_when(w, s))
        except InvalidInputError as exc:
            raise InvalidInputError(f"date window when[{i}] {shown(w)}: {exc}") from None
    f = "%Y-%m-%d %H:%M"
    for i in range(1, len(windows)):
        (a0, a1), (b0, b1) = windows[i - 1], windows[i]
        if b0 < a1:  # (b0 < a0 implies it)
            why, ends, fix = ("are not in chronological order", "", "list them oldest first") if b0 < a0 else \
                ("overlap", " ends", "start each window after the last one ends")
            raise InvalidInputError(f"date windows {why}: when[{i}] ({b0:{f}} .. {b1:{f}} UTC) starts before "
                                    f"when[{i - 1}] ({a0:{f}} .. {a1:{f}} UTC){ends}; {fix}")
    return tuple(windows)


# ----------------------------------------------------------------------------------------
def _parse(aoi: Any, s: Settings) -> tuple[str, Any]:
    """``(name, valid polygonal lon/lat geometry)`` for every form but a ChipGrid or an AOI."""
    if isinstance(aoi, str):
        key = " ".join(aoi.lower().replace("_", " ").replace("-", " ").split())
        if key in _NAMES:
            (la0, la1), (lo0, lo1) = s.domain_lat, s.domain_lon
            return _NAMES[key], box(lo0, la0, lo1, la1) if _NAMES[key] == "nyc" else box(*BOROUGHS[_NAMES[key]])
        path = Path(aoi.strip()).expanduser()
        if path.suffix.lower() in (".geojson", ".json") or os.path.isfile(path):
            return path.name, _from_file(path)
        if "," in aoi:
            return "bbox", _bbox(aoi.split(","), aoi, s)
        raise InvalidInputError(f"unknown AOI {shown(aoi)}; an AOI is {_FORMS}")
    if isinstance(aoi, os.PathLike):
        return Path(aoi).name, _from_file(Path(aoi))
    if isinstance(aoi, Mapping):
        return "geojson", _from_geojson(aoi, "GeoJSON")
    if isinstance(aoi, Polygon | MultiPolygon):
        return "geometry", _clean(aoi, "the shapely geometry")
    if isinstance(aoi, list | tuple) or (isinstance(aoi, np.ndarray) and aoi.ndim == 1):
        return "bbox", _bbox(list(aoi), aoi, s)
    what = f"a shapely {aoi.geom_type}, not a polygon" if isinstance(aoi, BaseGeometry) else type(aoi).__name__
    raise InvalidInputError(f"an AOI is {_FORMS}; got {what} {shown(aoi)}")


def _bbox(values: list[Any], given: Any, s: Settings) -> Any:
    try:
        b = tuple(float(v) for v in values if isinstance(v, str | numbers.Real) and not isinstance(v, bool | np.bool_))
    except OverflowError:  # an int too large for a float
        b = (math.inf,) * 4
    except ValueError:  # a string that is not a number
        b = ()
    if len(b) != 4 or len(values) != 4:
        raise InvalidInputError(f"a bbox is 4 numbers 'minlon,minlat,maxlon,maxlat', got {shown(given)}")
    if not all(math.isfinite(v) for v in b):
        raise InvalidInputError(f"bbox {shown(given)} holds a non-finite number (NaN, infinity); pass degrees")
    if b[0] >= b[2] or b[1] >= b[3]:
        what = "minlon >= maxlon" if b[0] >= b[2] else "minlat >= maxlat"
        raise InvalidInputError(f"bbox {shown(given)} is reversed or empty ({what}){_swap_hint(b, s)}; pass "
                                "'minlon,minlat,maxlon,maxlat' with each min below its max")
    return box(*b)


def _from_file(path: Path) -> Any:
    where = f"GeoJSON file {str(path)!r}"
    try:
        with path.open(encoding="utf-8-sig") as fh:
            obj = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:  # missing, unreadable, not UTF-8, not JSON
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else shown(str(exc))
        raise InvalidInputError(f"cannot read {where} as JSON ({why}); check the path and the file") from None
    return _from_geojson(obj, where)


def _from_geojson(obj: Any, where: str) -> Any:
    """The polygonal geometry of a GeoJSON object, or InvalidInputError naming the type found."""
    kind = obj.get("type") if isinstance(obj, Mapping) else None
    if kind == "FeatureCollection":
        feats = obj.get("features")
        if not isinstance(feats, list) or not feats:
            raise InvalidInputError(f"{where} is a FeatureCollection without features; it needs a polygon feature")
        return shapely.union_all([_from_geojson(f, f"{where} feature {i}") for i, f in enumerate(feats)])
    if kind == "Feature":
        return _from_geojson(obj.get("geometry"), where)
    if kind not in ("Polygon", "MultiPolygon"):
        found = "no geometry" if obj is None else f"type {shown(kind)}" if isinstance(obj, Mapping) else shown(obj)
        raise InvalidInputError(f"{where} has {found}, not a polygon; an AOI needs a Polygon or MultiPolygon (or a "
                                "Feature or FeatureCollection of them) in lon/lat")
    try:
        geom = shapely.force_2d(shape(obj))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, ShapelyError) as exc:
        raise InvalidInputError(f"{where} has malformed {kind} coordinates ({shown(str(exc))})") from None
    return _clean(geom, where)


def _clean(geom: Any, where: str) -> Any:
    """``geom`` checked finite and made valid; refused when nothing with an area is left."""
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        raise InvalidInputError(f"{where} has non-finite coordinates (NaN, infinity); pass lon/lat degrees")
    if not geom.is_valid:  # parts repaired one by one, then unioned: overlapping parts count once
        geom = shapely.union_all([_polygonal(shapely.make_valid(g)) for g in shapely.get_parts(geom)])
    if geom.is_empty or not geom.area > 0:
        raise InvalidInputError(f"{where} is empty or has zero area; an AOI needs a polygon with an inside")
    return geom


def _polygonal(geom: Any) -> Any:  # the union of the polygons among geom's parts (maybe empty)
    return shapely.union_all([g for g in shapely.get_parts(geom) if isinstance(g, Polygon | MultiPolygon)])


def _clip(geom: Any, what: str, s: Settings, *, warn: bool = True) -> Any:
    """``geom`` clipped to the NYC domain (a warning says how much that cut); OutsideDomainError if nothing is left."""
    (la0, la1), (lo0, lo1) = s.domain_lat, s.domain_lon
    clipped = _polygonal(geom.intersection(box(lo0, la0, lo1, la1)))
    domain = f"the NYC domain (lat {la0:g}..{la1:g}, lon {lo0:g}..{lo1:g})"
    if clipped.is_empty or not clipped.area > 0:
        raise OutsideDomainError(f"{what} ({_fmt(geom.bounds)}) lies outside {domain}{_swap_hint(geom.bounds, s)}; "
                                 "pass an area in New York City, or Settings(domain_check=False) to map anywhere")
    cut = 1.0 - clipped.area / geom.area
    if warn and cut > 1e-9:
        log.warning("%s (%s) extends outside %s; clipped to it, cutting %.1f%% of its area", what,
                    _fmt(geom.bounds), domain, 100.0 * cut)
    return clipped


def _check_grid(grid: ChipGrid, s: Settings) -> ChipGrid:
    if grid.crs.upper() != s.crs.upper() or not math.isclose(grid.resolution, s.resolution_m, rel_tol=1e-9):
        raise InvalidInputError(f"the grid is {grid.crs} at {grid.resolution:g} m, the settings {s.crs} at "
                                f"{s.resolution_m:g} m; build it from the same settings")
    if max(grid.width, grid.height) > MAX_SIDE_PX:
        raise InvalidInputError(f"the AOI needs {grid.width} x {grid.height} pixels at {grid.resolution:g} m, over the "
                                f"{MAX_SIDE_PX} a side a grid may have; pass a smaller area or a coarser resolution_m")
    return grid


def _swap_hint(b: tuple[float, ...], s: Settings) -> str:
    """`` (lat and lon look swapped)`` when ``b`` misses the domain but its lat/lon swap meets it."""
    (la0, la1), (lo0, lo1) = s.domain_lat, s.domain_lon
    (x0, x1), (y0, y1) = sorted((b[0], b[2])), sorted((b[1], b[3]))
    meets = [u0 <= lo1 and u1 >= lo0 and v0 <= la1 and v1 >= la0
             for u0, u1, v0, v1 in ((x0, x1, y0, y1), (y0, y1, x0, x1))]
    return " (lat and lon look swapped)" if meets == [False, True] else ""


def _to_crs(geom: Any, src: str, dst: str, step: float) -> Any:
    """``geom`` from ``src`` to ``dst``, its edges densified to ``step`` (``src`` units) first."""
    tr = _transformer(src, dst)
    out = shapely.transform(shapely.segmentize(geom, step), lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
    if not np.isfinite(shapely.get_coordinates(out)).all():
        raise InvalidInputError(f"the AOI cannot be expressed in {dst} (it lies outside what that CRS can project)")
    return out


def _fmt(b: tuple[float, ...]) -> str:
    return f"lon {b[0]:.6g}..{b[2]:.6g}, lat {b[1]:.6g}..{b[3]:.6g}"


@functools.lru_cache(maxsize=16)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)

