"""The fixture scenarios: what each generated scene is, where, and what a correct client picks.

:func:`scenario_specs` is the table behind :data:`SCENARIOS` (see
:mod:`terramind_nyc.testing.fixture_catalog` for what each scenario tests); every scenario
lives in its own few-km :class:`Region` of New York City, so a bbox search for one never
returns another's items.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from affine import Affine

from ..grid import ChipGrid, chip_grid
from ..settings import Settings

__all__ = [
    "FIXTURE_NOW",
    "REGION_MARGIN_M",
    "SCENARIOS",
    "Region",
    "S1Spec",
    "S2Spec",
    "ScenarioSpec",
    "check_disjoint",
    "scenario_region",
    "scenario_specs",
]

SCENARIOS: tuple[str, ...] = ("clear", "cloudy_vs_clear", "tile_edge", "no_s1", "no_dem", "mostly_nodata",
                              "all_cloudy")
REGION_MARGIN_M = 660.0  # data extent around each scenario's default chip (metres)


@dataclass(frozen=True)
class S2Spec:
    """One Sentinel-2 L2A scene of a scenario (targets the generator meets, and item properties)."""

    dt: str
    baseline: str
    cloud_cover: float  # scene-wide eo:cloud_cover, percent
    chip_cloud: float  # target cloud fraction over the chip (0..1)
    tile: str
    proj: str = "code"  # "code" -> proj:code, "epsg" -> proj:epsg
    sat: str = "B"
    orbit: int = 54
    outside_cloud: float = 0.1  # target cloud fraction in the margin around the chip
    cols: tuple[float, float] = (0.0, 1.0)  # part of the region's width the raster covers
    chip_valid: float | None = None  # swath edge: target valid fraction over the chip
    gain: float = 1.0  # small scene-to-scene radiometric change

    @property
    def acquired(self) -> datetime:
        """``dt`` as a datetime."""
        return datetime.fromisoformat(self.dt)


@dataclass(frozen=True)
class S1Spec:
    """One Sentinel-1 RTC scene of a scenario."""

    dt: str
    orbit_state: str = "ascending"
    proj: str = "epsg"
    platform: str = "A"

    @property
    def acquired(self) -> datetime:
        """``dt`` as a datetime."""
        return datetime.fromisoformat(self.dt)


@dataclass(frozen=True)
class ScenarioSpec:
    """One scenario: its point, window, scenes and the expected choice."""

    name: str
    lat: float
    lon: float
    when: tuple[str, str]
    s2: tuple[S2Spec, ...]
    s1: tuple[S1Spec, ...]
    dem_split: float | None  # None: no DEM; 1.0: one tile; else split at this fraction of the chip
    choose: tuple[int, ...]  # indices into s2 of the expected choice (empty: none)
    s1_choose: int | None
    reason: str | None = None  # why nothing is chosen


#: The reference 'now' of the fixture catalog: every scene is within 120 days before it.
FIXTURE_NOW = datetime(2024, 7, 31, 23, 59, 59, tzinfo=UTC)
_WHEN = ("2024-05-01", "2024-07-31")


def scenario_specs() -> tuple[ScenarioSpec, ...]:
    """Every scenario, in the order of :data:`SCENARIOS` (the order seeds their random streams)."""
    return (
        ScenarioSpec(
            "clear", 40.7484, -73.9857, _WHEN,
            s2=(S2Spec("2024-07-18T15:48:21Z", "05.10", 18.4, 0.02, "18TWL", "code"),
                S2Spec("2022-04-12T15:49:01Z", "04.00", 6.2, 0.0, "18TWL", "epsg", sat="A", gain=0.98),
                S2Spec("2021-08-20T15:48:41Z", "02.14", 9.7, 0.0, "18TWL", "epsg", sat="A", gain=1.01)),
            s1=(S1Spec("2024-07-20T22:54:12Z", "ascending"), S1Spec("2024-07-14T10:59:40Z", "descending", "code")),
            dem_split=1.0, choose=(0,), s1_choose=0,
        ),
        ScenarioSpec(
            "cloudy_vs_clear", 40.6782, -73.9442, _WHEN,
            s2=(S2Spec("2024-07-13T15:48:29Z", "05.10", 2.3, 0.65, "18TWK", "code", outside_cloud=0.0),
                S2Spec("2024-07-03T15:48:31Z", "05.10", 64.8, 0.0, "18TWK", "epsg", outside_cloud=0.6, gain=1.02),
                S2Spec("2024-06-13T15:48:19Z", "05.10", 4.0, 0.0, "18TWK", "code", gain=0.99)),
            s1=(S1Spec("2024-07-12T22:54:20Z", "ascending"), S1Spec("2024-07-05T10:59:44Z", "descending", "code"),
                S1Spec("2024-06-29T22:54:18Z", "ascending")),
            dem_split=1.0, choose=(1,), s1_choose=1,
        ),
        ScenarioSpec(
            "tile_edge", 40.7769, -73.8740, _WHEN,
            s2=(S2Spec("2024-07-16T15:38:21Z", "05.10", 11.0, 0.0, "18TWL", "epsg", sat="A", orbit=11, cols=(0.0, 0.48)),
                S2Spec("2024-07-16T15:38:21Z", "05.10", 7.5, 0.0, "18TXL", "code", sat="A", orbit=11, cols=(0.46, 1.0)),
                S2Spec("2024-06-26T15:38:19Z", "05.10", 5.5, 0.0, "18TWL", "code", sat="A", orbit=11, gain=1.02)),
            s1=(S1Spec("2024-07-17T22:46:02Z", "ascending", "code", platform="A"),),
            dem_split=0.45, choose=(0, 1), s1_choose=0,
        ),
        ScenarioSpec(
            "no_s1", 40.8448, -73.8648, _WHEN,
            s2=(S2Spec("2024-07-08T15:48:21Z", "05.10", 8.8, 0.0, "18TWL", "code"),),
            s1=(), dem_split=1.0, choose=(0,), s1_choose=None,
        ),
        ScenarioSpec(
            "no_dem", 40.5795, -74.1502, _WHEN,
            s2=(S2Spec("2024-07-08T15:48:21Z", "05.10", 8.1, 0.0, "18TWK", "code"),),
            s1=(S1Spec("2024-07-09T22:54:16Z", "ascending"),), dem_split=None, choose=(0,), s1_choose=0,
        ),
        ScenarioSpec(
            "mostly_nodata", 40.7282, -73.7949, _WHEN,
            s2=(S2Spec("2024-07-10T15:38:19Z", "05.10", 4.4, 0.0, "18TXL", "code", sat="A", orbit=11, chip_valid=0.25),),
            s1=(S1Spec("2024-07-11T22:46:00Z", "ascending"),), dem_split=1.0, choose=(), s1_choose=None,
            reason="nodata",
        ),
        ScenarioSpec(
            "all_cloudy", 40.6501, -73.7900, _WHEN,
            s2=(S2Spec("2024-07-15T15:38:21Z", "05.10", 45.0, 0.7, "18TXK", "code", sat="A", orbit=11),
                S2Spec("2024-06-30T15:48:19Z", "05.10", 12.0, 0.45, "18TXK", "epsg"),
                S2Spec("2024-06-10T15:38:19Z", "05.10", 78.0, 0.9, "18TXK", "code", sat="A", orbit=11),
                S2Spec("2024-05-26T15:48:21Z", "05.10", 93.0, 0.0, "18TXK", "code", outside_cloud=0.95)),
            s1=(S1Spec("2024-07-14T22:46:00Z", "ascending"),), dem_split=1.0, choose=(), s1_choose=None,
            reason="cloud",
        ),
    )


@dataclass
class Region:
    """A scenario's data extent on the 60 m lattice of the grid CRS, and its default chip."""

    crs: str
    minx: float
    maxy: float
    w10: int
    h10: int
    chip: ChipGrid
    chip_r: int  # chip offset inside the region, 10 m pixels
    chip_c: int

    def transform(self, res: int, col0: int = 0) -> Affine:
        """Geotransform of a ``res`` metre raster over the region, starting ``col0`` pixels east."""
        return Affine(res, 0.0, self.minx + col0 * res, 0.0, -res, self.maxy)

    def chip_window(self, a10: np.ndarray) -> np.ndarray:
        """The default chip's window of a 10 m array over the region."""
        return a10[..., self.chip_r:self.chip_r + self.chip.height, self.chip_c:self.chip_c + self.chip.width]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` in the grid CRS."""
        return (self.minx, self.maxy - self.h10 * 10, self.minx + self.w10 * 10, self.maxy)

    @property
    def bounds_4326(self) -> tuple[float, float, float, float]:
        """WGS84 bounds ``(west, south, east, north)`` (densified edges)."""
        from pyproj import Transformer

        tr = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        w, so, e, n = tr.transform_bounds(*self.bounds, densify_pts=21)
        return float(w), float(so), float(e), float(n)


def scenario_region(lat: float, lon: float, settings: Settings, size_m: float,
                    margin_m: float = REGION_MARGIN_M) -> Region:
    """The region around the default ``size_m`` chip at ``lat, lon``: ``margin_m`` on every side,
    snapped outwards to the 60 m lattice."""
    g = chip_grid(lat, lon, size_m=size_m, settings=settings)
    m = margin_m
    minx = math.floor((g.bounds[0] - m) / 60.0) * 60.0
    miny = math.floor((g.bounds[1] - m) / 60.0) * 60.0
    maxx = math.ceil((g.bounds[2] + m) / 60.0) * 60.0
    maxy = math.ceil((g.bounds[3] + m) / 60.0) * 60.0
    w10, h10 = round((maxx - minx) / 10), round((maxy - miny) / 10)
    return Region(settings.crs, minx, maxy, w10, h10, g,
                  round((maxy - g.bounds[3]) / 10), round((g.bounds[0] - minx) / 10))


def check_disjoint(regions: Mapping[str, Region]) -> None:
    """Fail when two scenarios' regions overlap (a bbox search for one would return the other's items)."""
    names = list(regions)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ra, rb = regions[a].bounds, regions[b].bounds
            if ra[0] < rb[2] and rb[0] < ra[2] and ra[1] < rb[3] and rb[1] < ra[3]:  # pragma: no cover
                raise AssertionError(f"fixture regions {a} and {b} overlap")
