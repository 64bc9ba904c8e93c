"""Areas of interest for city-scale maps: which part of New York City a map covers, and when.

:func:`resolve_aoi` turns a user's ``aoi`` into an :class:`AOI`, a lon/lat outline plus the grid
(``Settings.crs`` at ``resolution_m``, snapped outward to the lattice) that covers it::

    a = resolve_aoi("brooklyn")                    # a borough envelope (a rectangle)
    a = resolve_aoi("-74.02,40.70,-73.97,40.75")   # a bbox, lon/lat
    a = resolve_aoi("parks.geojson")               # an exact outline; a.mask(a.grid): pixels inside

Boroughs are approximate envelopes (rectangles: they overlap and take in water and some New Jersey
shore); a GeoJSON file gives a borough's exact outline. With ``Settings.domain_check`` an AOI partly
outside the NYC domain is clipped to it (a logged warning says how much was cut) and one wholly
outside is an OutsideDomainError. :func:`check_when_list` resolves one or several date windows (one
map each) and checks that they are oldest first and do not overlap.
"""

from __future__ import annotations

import difflib
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
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely.errors import ShapelyError
from shapely.geometry import MultiPolygon, Polygon, box, mapping, shape
from shapely.geometry.base import BaseGeometry

from ..dates import resolve_when
from ..errors import InvalidInputError, OutsideDomainError, shown
from ..grid import MAX_SIDE_PX, ChipGrid
from ..settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from pyproj import Transformer

__all__ = ["AOI", "BOROUGHS", "check_when_list", "resolve_aoi"]

log = logging.getLogger(__name__)

#: Borough -> approximate ``(minlon, minlat, maxlon, maxlat)`` envelope in WGS84 degrees: the
#: bounding rectangles of the NYC Department of City Planning borough boundaries, rounded to
#: 0.001 degree. Rectangles, not outlines; pass a GeoJSON file for a borough's exact shape.
BOROUGHS: dict[str, tuple[float, float, float, float]] = {
    "manhattan": (-74.048, 40.680, -73.906, 40.882),
    "brooklyn": (-74.042, 40.570, -73.833, 40.740),
    "queens": (-73.963, 40.542, -73.700, 40.801),
    "bronx": (-73.934, 40.785, -73.765, 40.916),
    "staten_island": (-74.256, 40.496, -74.052, 40.649),
}
#: Names (lower case, ``_``/``-`` read as spaces) -> a :data:`BOROUGHS` key, or ``"nyc"`` (the domain).
_NAMES: dict[str, str] = {
    "nyc": "nyc", "new york city": "nyc", "manhattan": "manhattan", "new york county": "manhattan",
    "brooklyn": "brooklyn", "kings": "brooklyn", "kings county": "brooklyn", "queens": "queens",
    "queens county": "queens", "bronx": "bronx", "the bronx": "bronx", "bronx county": "bronx",
    "staten island": "staten_island", "richmond": "staten_island", "richmond county": "staten_island",
}
_FORMS = ("'nyc', a borough ('manhattan', 'brooklyn', 'queens', 'bronx', 'staten_island'), a bbox "
          "'minlon,minlat,maxlon,maxlat' or 4 numbers, a GeoJSON dict or the path of a .geojson/.json file, a "
          "shapely Polygon or MultiPolygon in lon/lat, or a ChipGrid")
_WINDOWS = "e.g. [('2024-06-01', '2024-06-30'), '2024-07-01/2024-07-31']"


@dataclass(frozen=True)
class AOI:
    """An area of interest: a lon/lat outline and the grid of pixels that covers it."""

    name: str
    """Its source: ``"nyc"``, a borough (``"staten_island"``), ``"bbox"``, ``"geojson"`` (a dict),
    ``"geometry"`` (shapely), the file name (``"parks.geojson"``) or ``"grid"`` (a ChipGrid)."""
    geometry_4326: Any
    """The outline: a shapely Polygon or MultiPolygon in WGS84 lon/lat degrees (clipped to the domain)."""
    grid: ChipGrid
    """The grid on the ``Settings.crs`` / ``resolution_m`` lattice, snapped outward, covering the outline."""
    exact_grid: bool = False
    """True for a ChipGrid input (``grid`` is that grid): :meth:`mask` is then its exact footprint."""

    def mask(self, grid: ChipGrid) -> np.ndarray:
        """Bool ``(height, width)`` over ``grid``: True where a pixel's centre lies inside the AOI."""
        from rasterio.features import geometry_mask

        if not isinstance(grid, ChipGrid):
            raise InvalidInputError(f"mask() takes a ChipGrid, got {type(grid).__name__} {shown(grid)}")
        g = self.grid
        geom = _to_crs(box(*g.bounds), g.crs, grid.crs, 8 * g.resolution) if self.exact_grid \
            else _to_crs(self.geometry_4326, "EPSG:4326", grid.crs, 5e-4)  # lon/lat edges densified to ~50 m
        return np.asarray(geometry_mask([geom], out_shape=grid.shape, transform=grid.transform, invert=True), bool)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description: name, lon/lat bounds of the outline, the outline as GeoJSON, the grid."""
        return {"name": self.name, "bounds_4326": [float(v) for v in self.geometry_4326.bounds],
                "geometry": json.loads(json.dumps(mapping(self.geometry_4326))), "grid": self.grid.to_dict(),
                "exact_grid": self.exact_grid}


def resolve_aoi(aoi: Any, settings: Settings | None = None) -> AOI:
    """The :class:`AOI` for a user's ``aoi``; coordinates are WGS84 lon/lat throughout.

    ``aoi``: ``"nyc"`` (the settings' domain rectangle), a borough or alias (:data:`BOROUGHS`, an
    envelope), a bbox ``"minlon,minlat,maxlon,maxlat"`` or 4 numbers, a GeoJSON dict or .geojson/.json
    path (Polygon, MultiPolygon, or a Feature/FeatureCollection of them, unioned), a shapely
    Polygon/MultiPolygon, a ChipGrid (used exactly, never clipped; on the settings' CRS and
    resolution) or an AOI (returned as is). InvalidInputError for anything else, a non-polygonal,
    empty or non-finite geometry, a reversed bbox, a bad file or a grid over MAX_SIDE_PX a side;
    OutsideDomainError for an AOI outside the NYC domain (``domain_check``) or the CRS's area of use.
    """
    s = Settings.resolve(settings)
    if isinstance(aoi, AOI | ChipGrid):
        grid = _check_grid(aoi.grid if isinstance(aoi, AOI) else aoi, s)
        if isinstance(aoi, AOI):
            return aoi
        footprint = _to_crs(box(*grid.bounds), grid.crs, "EPSG:4326", 8 * grid.resolution)
        if s.domain_check:
            _clip(footprint, "the grid", s, warn=False)  # refused when wholly outside; kept whole otherwise
        return AOI("grid", footprint, grid, exact_grid=True)
    name, geom = _parse(aoi, s)
    b = geom.bounds
    if not (-180 <= b[0] and b[2] <= 180 and -90 <= b[1] and b[3] <= 90):
        raise InvalidInputError(f"the AOI's bounds ({_fmt(b)}) are not lon/lat degrees{_swap_hint(b, s)}; pass "
                                "WGS84 coordinates in (lon, lat) order")
    geom = _clip(geom, f"AOI {name!r}", s) if s.domain_check else geom
    b, w = geom.bounds, _area_of_use(s.crs)
    if w is not None and not (w[0] - 1 <= b[0] and b[2] <= w[2] + 1 and w[1] - 1 <= b[1] and b[3] <= w[3] + 1):
        raise OutsideDomainError(f"AOI {name!r} ({_fmt(b)}) lies outside the area of use of {s.crs} "
                                 f"({_fmt(w)}){_swap_hint(b, s)}; set Settings(crs=...) to a CRS that covers it")
    bounds = _transformer("EPSG:4326", s.crs).transform_bounds(b[0], b[1], b[2], b[3], densify_pts=21)
    c = geom.centroid
    return AOI(name, geom, _check_grid(ChipGrid.from_bounds(s.crs, bounds, s.resolution_m, snap=True,
                                                            center=(c.y, c.x)), s))


def check_when_list(when: Any, settings: Settings | None = None) -> tuple[tuple[datetime, datetime], ...]:
    """One or several date windows, each resolved by :func:`~terramind_nyc.dates.resolve_when`.

    ``when``: one window in a form ``resolve_when`` takes (None, a date, ``"start/end"``, a ``(start,
    end)`` pair) -> a 1-tuple; or a list/tuple whose items are all pairs or ``"start/end"`` strings.
    Windows go oldest first and may not overlap (one may start where the last ended); an
    InvalidInputError names the offending windows by index and dates.
    """
    s = Settings.resolve(settings)
    if not isinstance(when, list | tuple):
        return (resolve_when(when, s),)
    if not when:
        raise InvalidInputError(f"`when` is an empty list of date windows; pass at least one, {_WINDOWS}, or None "
                                "for the newest imagery")
    several = [isinstance(w, list | tuple) or (isinstance(w, str) and "/" in w) for w in when]
    if not all(several):
        if len(when) == 2 and not any(several):
            return (resolve_when(when, s),)  # one (start, end) pair
        i = several.index(False)
        raise InvalidInputError(f"`when` {shown(when)} is neither one (start, end) pair nor a list of windows "
                                f"(when[{i}] is {shown(when[i])}); pass each window as a (start, end) pair or a "
                                f"'start/end' string, {_WINDOWS}")
    windows: list[tuple[datetime, datetime]] = []
    for i, w in enumerate(when):
        try:
            windows.append(resolve_when(w, s))
        except InvalidInputError as exc:
            raise InvalidInputError(f"date window when[{i}] {shown(w)}: {exc}") from None
    for i in range(1, len(windows)):
        this, last = f"when[{i}] {_span(windows[i])}", f"when[{i - 1}] {_span(windows[i - 1])}"
        if windows[i][0] < windows[i - 1][0]:
            raise InvalidInputError(f"date windows are not in chronological order: {this} starts before {last}; "
                                    "list them oldest first")
        if windows[i][0] < windows[i - 1][1]:
            raise InvalidInputError(f"date windows overlap: {this} starts before {last} ends; start each window "
                                    "after the last one ends")
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
            try:
                values = [float(p) for p in aoi.split(",")]
            except ValueError:
                values = []
            if len(values) != 4:
                raise InvalidInputError(f"bbox {shown(aoi)} is not four numbers 'minlon,minlat,maxlon,maxlat'")
            return "bbox", _bbox(values, aoi, s)
        close = difflib.get_close_matches(key, list(_NAMES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidInputError(f"unknown AOI {shown(aoi)}; {hint}an AOI is {_FORMS}")
    if isinstance(aoi, os.PathLike):
        return Path(aoi).name, _from_file(Path(aoi))
    if isinstance(aoi, Mapping):
        return "geojson", _from_geojson(aoi, "GeoJSON")
    if isinstance(aoi, Polygon | MultiPolygon):
        return "geometry", _clean(aoi, "the shapely geometry")
    if isinstance(aoi, list | tuple) or (isinstance(aoi, np.ndarray) and aoi.ndim == 1):
        if len(aoi) != 4:
            raise InvalidInputError(f"a bbox is 4 numbers (minlon, minlat, maxlon, maxlat), got {shown(aoi)}")
        return "bbox", _bbox(list(aoi), aoi, s)
    what = f"a shapely {aoi.geom_type}, not a polygon" if isinstance(aoi, BaseGeometry) else type(aoi).__name__
    raise InvalidInputError(f"an AOI is {_FORMS}; got {what} {shown(aoi)}")


def _bbox(values: list[Any], given: Any, s: Settings) -> Any:
    if any(isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real) for v in values):
        raise InvalidInputError(f"bbox {shown(given)} must be 4 numbers (minlon, minlat, maxlon, maxlat)")
    try:
        b = tuple(float(v) for v in values)
    except (OverflowError, TypeError, ValueError):
        b = (math.inf,) * 4
    if not all(math.isfinite(v) for v in b):
        raise InvalidInputError(f"bbox {shown(given)} holds a non-finite number (NaN, infinity); pass lon/lat degrees")
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
    except OSError as exc:
        raise InvalidInputError(f"cannot read {where} ({exc.strerror or exc}); check the path") from None
    except (ValueError, RecursionError) as exc:  # bad JSON or bad UTF-8
        raise InvalidInputError(f"{where} is not valid JSON ({shown(str(exc))}); pass a GeoJSON file") from None
    return _from_geojson(obj, where)


def _from_geojson(obj: Any, where: str) -> Any:
    """The polygonal geometry of a GeoJSON object, or InvalidInputError naming the type found."""
    kind = obj.get("type") if isinstance(obj, Mapping) else None
    if kind == "FeatureCollection":
        feats = obj.get("features")
        if not isinstance(feats, list) or not feats:
            raise InvalidInputError(f"{where} is a FeatureCollection without features; it needs at least one "
                                    "Polygon or MultiPolygon feature")
        return shapely.union_all([_from_geojson(f, f"{where} feature {i}") for i, f in enumerate(feats)])
    if kind == "Feature":
        return _from_geojson(obj.get("geometry"), where)
    if kind not in ("Polygon", "MultiPolygon"):
        found = "no geometry" if obj is None else f"type {shown(kind)}" if isinstance(obj, Mapping) \
            else f"a {type(obj).__name__}"
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
        geom = shapely.union_all([_polygonal(shapely.make_valid(g)) for g in getattr(geom, "geoms", [geom])])
    if geom.is_empty or not geom.area > 0:
        raise InvalidInputError(f"{where} is empty or has zero area; an AOI needs a polygon with an inside")
    return geom


def _polygonal(geom: Any) -> Any:
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    parts = [g for g in getattr(geom, "geoms", ()) if isinstance(g, Polygon | MultiPolygon)]
    return shapely.union_all(parts) if parts else Polygon()


def _clip(geom: Any, what: str, s: Settings, *, warn: bool = True) -> Any:
    """``geom`` clipped to the NYC domain (a warning when that cuts some); OutsideDomainError if nothing is left."""
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
        raise InvalidInputError(f"the grid is in {grid.crs} at {grid.resolution:g} m but the settings ask for {s.crs} "
                                f"at {s.resolution_m:g} m; build it from the same settings or pass matching ones")
    if max(grid.width, grid.height) > MAX_SIDE_PX:
        raise InvalidInputError(f"the AOI needs a {grid.width} x {grid.height} pixel grid at {grid.resolution:g} m, "
                                f"more than the {MAX_SIDE_PX} a side a grid may have; pass a smaller area or a "
                                "coarser Settings(resolution_m=...)")
    return grid


def _swap_hint(b: tuple[float, ...], s: Settings) -> str:
    """`` (lat and lon look swapped)`` when ``b`` misses the domain but its lat/lon swap meets it."""
    (la0, la1), (lo0, lo1) = s.domain_lat, s.domain_lon
    (x0, x1), (y0, y1) = sorted((b[0], b[2])), sorted((b[1], b[3]))
    as_is = x0 <= lo1 and x1 >= lo0 and y0 <= la1 and y1 >= la0
    swapped = y0 <= lo1 and y1 >= lo0 and x0 <= la1 and x1 >= la0
    return " (lat and lon look swapped)" if swapped and not as_is else ""


def _to_crs(geom: Any, src: str, dst: str, step: float) -> Any:
    """``geom`` from ``src`` to ``dst``, its edges densified to ``step`` (``src`` units) first."""
    if src.upper() == dst.upper():
        return geom
    tr = _transformer(src, dst)
    out = shapely.transform(shapely.segmentize(geom, step), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    if not np.isfinite(shapely.get_coordinates(out)).all():
        raise InvalidInputError(f"the AOI cannot be expressed in {dst} (it lies outside what that CRS can project)")
    return out


def _span(w: tuple[datetime, datetime]) -> str:
    return f"({w[0]:%Y-%m-%d %H:%M} .. {w[1]:%Y-%m-%d %H:%M} UTC)"


def _fmt(b: tuple[float, ...]) -> str:
    return f"lon {b[0]:.6g}..{b[2]:.6g}, lat {b[1]:.6g}..{b[3]:.6g}"


@functools.lru_cache(maxsize=16)
def _transformer(src: str, dst: str) -> Transformer:
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


@functools.lru_cache(maxsize=16)
def _area_of_use(crs: str) -> tuple[float, float, float, float] | None:
    """``(west, south, east, north)`` of the CRS's area of use (None: none, or across the antimeridian)."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        a = CRS.from_user_input(crs).area_of_use
    except CRSError:
        raise InvalidInputError(f"unknown CRS {shown(crs)}; set Settings(crs=...) to one such as 'EPSG:32618'") from None
    return None if a is None or a.west > a.east else (a.west, a.south, a.east, a.north)
