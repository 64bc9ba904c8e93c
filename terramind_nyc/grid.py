"""Point -> chip grid: the pixel lattice every modality is read onto.

A chip grid is a north-up raster grid in a projected CRS (default EPSG:32618, UTM 18N, which
covers New York City) at a fixed resolution (default 10 m). :func:`chip_grid` centres a square
window on a WGS84 point and snaps its origin to whole pixels of the CRS's lattice (multiples of
the resolution from the CRS origin), so that Sentinel-2 10/20/60 m pixels, whose edges lie on
the same lattice, map onto chip pixels without resampling::

    g = chip_grid(40.7484, -73.9857)          # 224 x 224 px, 2.24 km, EPSG:32618
    g.bounds, g.bounds_4326, g.transform
    mask = summary_mask(g, 40.7484, -73.9857, radius_m=500)

:func:`chip_grid` checks the point first with :func:`terramind_nyc.location.validate_location`,
the one gate for user coordinates.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from .errors import InvalidInputError, InvalidLocationError, OutsideDomainError, shown
from .location import as_coordinate, validate_location
from .settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from odc.geo.geobox import GeoBox
    from pyproj import Transformer

__all__ = [
    "MAX_SIDE_PX",
    "ChipGrid",
    "as_metres",
    "chip_grid",
    "summary_mask",
    "union_grid",
]

log = logging.getLogger(__name__)

#: Tolerance, in pixels, for deciding that two grids share a lattice.
_LATTICE_TOL_PX = 1e-6
#: Most pixels along one side of a grid :func:`chip_grid` builds (20 km at 1 m, the settings' limits).
MAX_SIDE_PX = 20_000


@functools.lru_cache(maxsize=32)
def _transformer(src: str, dst: str) -> Transformer:
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


@functools.lru_cache(maxsize=32)
def _area_of_use(crs: str) -> tuple[float, float, float, float] | None:
    from pyproj import CRS

    aou = CRS.from_user_input(crs).area_of_use
    return None if aou is None else (aou.west, aou.south, aou.east, aou.north)


def _check_crs(crs: str) -> str:
    if not isinstance(crs, str):
        raise InvalidInputError(f"a CRS is a string such as 'EPSG:32618', got {type(crs).__name__} {shown(crs)}")
    return _check_crs_name(crs)


@functools.lru_cache(maxsize=32)
def _check_crs_name(crs: str) -> str:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        c = CRS.from_user_input(crs)
    except CRSError as exc:
        raise InvalidInputError(f"unknown CRS {shown(crs)} ({str(exc)[:200]}); set Settings(crs=...) to a projected "
                                "CRS in metres such as 'EPSG:32618'") from None
    if not c.is_projected:
        raise InvalidInputError(f"a chip grid needs a projected CRS in metres, got {shown(crs)}; set Settings(crs=...) "
                                "to one such as 'EPSG:32618'")
    return crs


def _utm_code(lat: float, lon: float) -> str:
    zone = min(60, max(1, int((lon + 180.0) // 6.0) + 1))
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def _round_half_up(v: float) -> int:
    return math.floor(v + 0.5)


def as_metres(value: Any, name: str) -> float:
    """``value`` as a finite float > 0 (a distance in metres), or InvalidInputError naming ``name``.

    The one gate for user distances (``size_m``, ``radius_m``, a resolution): a string, None, a
    bool, NaN, infinity, zero, a negative number or an integer too large for a float is refused.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} must be a number of metres, got {type(value).__name__} {shown(value)}")
    try:
        v = float(value)
    except (OverflowError, TypeError, ValueError):
        v = math.inf
    if not math.isfinite(v) or v <= 0:
        raise InvalidInputError(f"{name} must be a finite number of metres > 0, got {shown(value)}")
    return v


# ----------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChipGrid:
    """A north-up raster grid: the pixels a chip's modalities are read onto."""

    crs: str
    """CRS of the grid, as given to pyproj (``"EPSG:32618"``)."""
    resolution: float
    """Pixel side in CRS units (metres)."""
    width: int
    """Number of columns (pixels)."""
    height: int
    """Number of rows (pixels)."""
    transform: Affine
    """Pixel -> CRS affine transform; north-up, origin at the top-left corner of pixel (0, 0)."""
    bounds: tuple[float, float, float, float]
    """``(minx, miny, maxx, maxy)`` in ``crs`` (metres)."""
    bounds_4326: tuple[float, float, float, float]
    """``(minlon, minlat, maxlon, maxlat)`` in WGS84 degrees (densified envelope of ``bounds``)."""
    center_lat: float
    """Latitude of the point the grid was requested for (WGS84 degrees)."""
    center_lon: float
    """Longitude of the point the grid was requested for (WGS84 degrees)."""

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise InvalidInputError(f"a grid needs at least 1 x 1 pixels, got {self.width} x {self.height}")
        if not (math.isfinite(self.resolution) and self.resolution > 0):
            raise InvalidInputError(f"grid resolution must be finite and > 0, got {self.resolution!r}")
        t = self.transform
        if t.b != 0 or t.d != 0 or t.a != self.resolution or t.e != -self.resolution:
            raise InvalidInputError(f"a chip grid is north-up with square pixels of {self.resolution}; got {t!r}")

    # --- constructors ------------------------------------------------------------------
    @classmethod
    def from_bounds(
        cls,
        crs: str,
        bounds: Iterable[float],
        resolution: float,
        *,
        snap: bool = False,
        center: tuple[float, float] | None = None,
    ) -> ChipGrid:
        """The grid covering ``bounds`` (``minx, miny, maxx, maxy`` in ``crs``) at ``resolution``.

        Without ``snap`` the bounds are kept as given (any origin, e.g. a source raster's) and
        must span a whole number of pixels; with ``snap`` they are widened outwards to the
        ``resolution`` lattice. ``center`` is the ``(lat, lon)`` to record as the requested
        point (default: the centre of the bounds).
        """
        _check_crs(crs)
        res = as_metres(resolution, "resolution")
        try:
            b = tuple(float(v) for v in bounds)
        except (TypeError, ValueError, OverflowError):
            b = ()
        if len(b) != 4 or not all(math.isfinite(v) for v in b) or b[2] <= b[0] or b[3] <= b[1]:
            raise InvalidInputError(f"bounds must be finite (minx, miny, maxx, maxy) with max > min, got {shown(bounds)}")
        minx, miny, maxx, maxy = b
        if snap:
            minx = math.floor(minx / res + _LATTICE_TOL_PX) * res
            miny = math.floor(miny / res + _LATTICE_TOL_PX) * res
            maxx = math.ceil(maxx / res - _LATTICE_TOL_PX) * res
            maxy = math.ceil(maxy / res - _LATTICE_TOL_PX) * res
        w, h = (maxx - minx) / res, (maxy - miny) / res
        width, height = _round_half_up(w), _round_half_up(h)
        if abs(w - width) > 1e-3 or abs(h - height) > 1e-3:
            raise InvalidInputError(
                f"bounds {b} are not a whole number of {res} m pixels ({w:.4f} x {h:.4f}); pass snap=True"
            )
        maxx, miny = minx + width * res, maxy - height * res
        if center is None:
            clon, clat = _transformer(crs, "EPSG:4326").transform((minx + maxx) / 2, (miny + maxy) / 2)
        else:
            clat, clon = as_coordinate(center[0], "latitude"), as_coordinate(center[1], "longitude")
        return cls._build(crs, res, minx, maxy, width, height, clat, clon)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChipGrid:
        """Inverse of :meth:`to_dict` (InvalidInputError for a dict it did not write)."""
        try:
            t = [float(v) for v in d["transform"]]
            args = (str(d["crs"]), float(d["resolution"]), t[2], t[5], int(d["width"]), int(d["height"]),
                    float(d["center_lat"]), float(d["center_lon"]))
        except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
            raise InvalidInputError(f"not a ChipGrid.to_dict() description ({type(exc).__name__}: {exc})") from None
        _check_crs(args[0])
        return cls._build(*args)

    @classmethod
    def _build(cls, crs: str, res: float, minx: float, maxy: float, width: int, height: int,
               clat: float, clon: float) -> ChipGrid:
        maxx, miny = minx + width * res, maxy - height * res
        w, s, e, n = _transformer(crs, "EPSG:4326").transform_bounds(minx, miny, maxx, maxy, densify_pts=21)
        return cls(
            crs=crs,
            resolution=res,
            width=width,
            height=height,
            transform=Affine(res, 0.0, minx, 0.0, -res, maxy),
            bounds=(minx, miny, maxx, maxy),
            bounds_4326=(float(w), float(s), float(e), float(n)),
            center_lat=clat,
            center_lon=clon,
        )

    # --- views -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels (numpy order)."""
        return (self.height, self.width)

    @property
    def size_m(self) -> tuple[float, float]:
        """``(width, height)`` of the grid in CRS units (metres)."""
        return (self.width * self.resolution, self.height * self.resolution)

    @property
    def geobox(self) -> GeoBox:
        """The grid as an ``odc.geo`` GeoBox (what odc-stac's ``load(geobox=...)`` takes).

        Needs ``odc-geo`` (installed with odc-stac; not a dependency of this library)."""
        try:
            from odc.geo.geobox import GeoBox
        except ImportError:
            raise ImportError("ChipGrid.geobox needs odc-geo: pip install odc-stac (or odc-geo)") from None

        return GeoBox((self.height, self.width), self.transform, self.crs)

    def cache_key(self) -> tuple[Any, ...]:
        """Hashable identity of the grid for cache keys: CRS, transform (to 1e-6 m), size."""
        return (self.crs, tuple(round(v, 6) for v in tuple(self.transform)[:6]), self.width, self.height)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description: CRS, resolution, size, transform (6 numbers a..f), bounds."""
        return {
            "crs": self.crs,
            "resolution": float(self.resolution),
            "width": int(self.width),
            "height": int(self.height),
            "transform": [float(v) for v in tuple(self.transform)[:6]],
            "bounds": [float(v) for v in self.bounds],
            "bounds_4326": [float(v) for v in self.bounds_4326],
            "center_lat": float(self.center_lat),
            "center_lon": float(self.center_lon),
        }

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        """A WGS84 point in the grid's CRS, ``(x, y)`` metres."""
        x, y = _transformer("EPSG:4326", self.crs).transform(float(lon), float(lat))
        return float(x), float(y)

    def rowcol(self, lat: float, lon: float) -> tuple[int, int]:
        """Row and column of the pixel holding a WGS84 point (may lie outside the grid)."""
        x, y = self.xy(lat, lon)
        col = (x - self.bounds[0]) / self.resolution
        row = (self.bounds[3] - y) / self.resolution
        return math.floor(row), math.floor(col)

    def contains(self, lat: float, lon: float, radius_m: float = 0.0) -> bool:
        """Whether the disc of ``radius_m`` metres around a WGS84 point lies inside the grid."""
        x, y = self.xy(lat, lon)
        r = float(radius_m)
        minx, miny, maxx, maxy = self.bounds
        return minx <= x - r and x + r <= maxx and miny <= y - r and y + r <= maxy

    def window(self, other: ChipGrid) -> tuple[int, int]:
        """``(row_off, col_off)`` of ``other`` inside this grid.

        ``other`` must share the CRS, resolution and lattice and lie wholly inside this grid;
        then ``array[..., r:r + other.height, c:c + other.width]`` is ``other``'s part.
        """
        if other.crs != self.crs or not math.isclose(other.resolution, self.resolution, rel_tol=1e-9):
            raise InvalidInputError(
                f"grids differ: {other.crs} at {other.resolution} m is not a sub-grid of {self.crs} at {self.resolution} m"
            )
        col = (other.bounds[0] - self.bounds[0]) / self.resolution
        row = (self.bounds[3] - other.bounds[3]) / self.resolution
        r, c = _round_half_up(row), _round_half_up(col)
        if abs(row - r) > _LATTICE_TOL_PX or abs(col - c) > _LATTICE_TOL_PX:
            raise InvalidInputError(f"grid is offset by a fraction of a pixel ({row:.4f}, {col:.4f}); not on this lattice")
        if r < 0 or c < 0 or r + other.height > self.height or c + other.width > self.width:
            raise InvalidInputError(
                f"grid at rows {r}..{r + other.height}, cols {c}..{c + other.width} does not fit in "
                f"this {self.height} x {self.width} grid"
            )
        return r, c


# ----------------------------------------------------------------------------------------
# Public helpers
# ----------------------------------------------------------------------------------------
def chip_grid(lat: Any, lon: Any, *, size_m: float | None = None, settings: Settings | None = None) -> ChipGrid:
    """The square grid centred on a WGS84 point, snapped to the ``settings.resolution_m`` lattice.

    Args:
        lat, lon: WGS84 degrees (validated with :func:`~terramind_nyc.location.validate_location`).
        size_m: side of the window in metres (default ``settings.size_m``, 2240 m = 224 px);
            the side in pixels is ``round(size_m / resolution)``, at least 1.
        settings: CRS, resolution and domain (default ``Settings.resolve(None)``).

    The origin is the lattice point nearest to ``point - side / 2``, so the point lies within
    half a pixel of the grid's centre. Raises InvalidLocationError for a bad point (or one
    outside the CRS's area of use) and InvalidInputError for a bad ``size_m``.
    """
    s = Settings.resolve(settings)
    la, lo = validate_location(lat, lon, s)
    size = s.size_m if size_m is None else as_metres(size_m, "size_m")
    res = float(s.resolution_m)
    _check_crs(s.crs)
    aou = _area_of_use(s.crs)
    if aou is not None:
        w, so, e, n = aou
        if not (w - 1.0 <= lo <= e + 1.0 and so - 1.0 <= la <= n + 1.0):
            raise OutsideDomainError(
                f"point ({la}, {lo}) lies outside the area of use of {s.crs} (lon {w}..{e}, lat {so}..{n}); "
                f"set Settings(crs=...) to a CRS that covers it, e.g. {_utm_code(la, lo)}"
            )
    n_px = max(1, _round_half_up(size / res))
    if n_px > MAX_SIDE_PX:
        raise InvalidInputError(f"size_m={size:g} at {res:g} m is {n_px} pixels a side, more than the {MAX_SIDE_PX} a "
                                "grid may have; pass a smaller size_m")
    x, y = _transformer("EPSG:4326", s.crs).transform(lo, la)
    minx = _round_half_up(x / res - n_px / 2.0) * res
    maxy = _round_half_up(y / res + n_px / 2.0) * res
    return ChipGrid._build(s.crs, res, minx, maxy, n_px, n_px, la, lo)


def union_grid(grids: Iterable[ChipGrid]) -> ChipGrid:
    """The smallest grid on the same lattice that holds every grid of ``grids``.

    All grids must share CRS and resolution; the result is centred (``center_lat/lon``) on
    the middle of the union. Each input is then a :meth:`ChipGrid.window` of the result.
    """
    gs = list(grids)
    if not gs:
        raise InvalidInputError("union_grid needs at least one grid")
    first = gs[0]
    for g in gs[1:]:
        if g.crs != first.crs or not math.isclose(g.resolution, first.resolution, rel_tol=1e-9):
            raise InvalidInputError(f"cannot join grids in {first.crs}@{first.resolution} and {g.crs}@{g.resolution}")
    bounds = (min(g.bounds[0] for g in gs), min(g.bounds[1] for g in gs),
              max(g.bounds[2] for g in gs), max(g.bounds[3] for g in gs))
    out = ChipGrid.from_bounds(first.crs, bounds, first.resolution)
    for g in gs:
        out.window(g)  # raises when a grid is off the lattice
    return out


def summary_mask(grid: ChipGrid, lat: float, lon: float, radius_m: float | None = None) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the pixels to summarise around a point.

    ``radius_m=None`` selects the whole grid. Otherwise the pixels whose centres lie within
    ``radius_m`` metres of the point (in the grid's CRS) are selected, and always the pixel
    holding the point, so a radius under half a pixel still selects one pixel.

    Raises InvalidInputError for a radius that is not a finite number > 0 and
    InvalidLocationError for a point outside the grid.
    """
    if radius_m is None:
        return np.ones(grid.shape, dtype=bool)
    r = as_metres(radius_m, "radius_m")
    la = as_coordinate(lat, "latitude")
    lo = as_coordinate(lon, "longitude")
    x, y = grid.xy(la, lo)
    minx, miny, maxx, maxy = grid.bounds
    if not (minx <= x <= maxx and miny <= y <= maxy):
        raise InvalidLocationError(f"point ({la}, {lo}) lies outside the grid {grid.bounds} ({grid.crs})")
    res = grid.resolution
    xs = minx + (np.arange(grid.width) + 0.5) * res
    ys = maxy - (np.arange(grid.height) + 0.5) * res
    d2 = (ys[:, None] - y) ** 2 + (xs[None, :] - x) ** 2
    mask = d2 <= r * r
    row = min(grid.height - 1, int((maxy - y) // res))
    col = min(grid.width - 1, int((x - minx) // res))
    mask[row, col] = True
    return mask
