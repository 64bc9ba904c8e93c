"""Generated test imagery: small, realistic COGs and matching STAC items around NYC points.

:func:`build_fixture_catalog` writes, under ``root``:

- ``cogs/<collection>/<item id>/<asset>.tif``: cloud-optimised GeoTIFFs (DEFLATE, 256 px tiles,
  header first; no overviews, which full-resolution chip reads never touch);
- ``items.json``: one STAC ItemCollection with every item, asset hrefs ``{base_url}/cogs/...``;
- ``collections/<id>.json``: the three collections (``sentinel-2-l2a``, ``sentinel-1-rtc``,
  ``cop-dem-glo-30``).

The data follow the real products (see DESIGN section 2): Sentinel-2 L2A uint16 DN
(reflectance x 10000, nodata 0) for B01..B12 at their native 10/20/60 m and SCL at 20 m, with
``s2:processing_baseline`` "02.14" (no offset) or >= "04.00" (+1000 on every valid DN);
``proj:epsg`` on some items and ``proj:code`` on others; Sentinel-1 RTC vv/vh float32 linear
power with nodata -32768; Copernicus DEM float32 metres in EPSG:4326 at 1 arc-second (~30 m),
with the half-pixel origin of the real tiles. Every scenario lives in its own few-km region of
New York City, so a bbox search for one never returns another's items.

Scenarios (:attr:`FixtureCatalog.points`, facts in :attr:`FixtureCatalog.expected`):

``clear``            the newest scene is clear over the chip (plus older 04.00 and 02.14 scenes).
``cloudy_vs_clear``  the newest scene has a LOW ``eo:cloud_cover`` but its SCL is cloudy over the
                     chip; an older one has a HIGH ``eo:cloud_cover`` and is clear over the chip:
                     the older one is the right choice (and so is the S1 scene nearest to it).
``tile_edge``        the chip straddles two items (two MGRS tiles) of the same acquisition, one
                     with ``proj:epsg``, one with ``proj:code``; each alone covers about half of
                     it; an older single scene covers it all (picking it is wrong); two DEM
                     tiles split the chip too.
``no_s1``            S2 and DEM, no S1 item intersects.
``no_dem``           S2 and S1, no DEM item intersects.
``mostly_nodata``    the only S2 item covers < 30 % of the chip (a swath edge).
``all_cloudy``       every scene is cloudy over the chip; the one clear scene has a scene-wide
                     ``eo:cloud_cover`` above the 80 % prefilter (a server or client that
                     ignores the prefilter would pick it).

:func:`build_real_chip` serves one real TerraMind example tile (shipped in
``terramind_nyc/testing/data``) the same way, for value round-trip tests.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import numpy as np
from affine import Affine

from ..sensors import S2_BANDS
from ..grid import ChipGrid, chip_grid
from ..settings import Settings

__all__ = [
    "S1_NODATA",
    "S2_BANDS",
    "S2_OFFSET",
    "S2_RESOLUTION",
    "SCENARIOS",
    "SCL_CLOUD",
    "SCL_NODATA",
    "FixtureCatalog",
    "RealChip",
    "baseline_has_offset",
    "build_fixture_catalog",
    "build_real_chip",
    "chip_fractions",
    "data_dir",
    "fixture_elevation",
]

log = logging.getLogger(__name__)

#: Sentinel-2 L2A bands in the order TerraMind takes them (no B10).
#: Native pixel size (m) of each S2 asset.
S2_RESOLUTION: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
    "B8A": 20, "B09": 60, "B11": 20, "B12": 20, "SCL": 20,
}
#: DN added to every valid S2 L2A pixel from processing baseline 04.00 on.
S2_OFFSET = 1000
#: SCL classes counted as cloud (cloud shadow, medium, high, thin cirrus).
SCL_CLOUD: tuple[int, ...] = (3, 8, 9, 10)
#: SCL classes excluded from the cloud-fraction denominator (no data, saturated/defective).
SCL_NODATA: tuple[int, ...] = (0, 1)
S1_NODATA = -32768.0
SCENARIOS: tuple[str, ...] = ("clear", "cloudy_vs_clear", "tile_edge", "no_s1", "no_dem", "mostly_nodata",
                              "all_cloudy")

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_EXT = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj1": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "proj2": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
}
_WAVELENGTH = {"B01": 0.443, "B02": 0.49, "B03": 0.56, "B04": 0.665, "B05": 0.704, "B06": 0.74, "B07": 0.783,
               "B08": 0.842, "B8A": 0.865, "B09": 0.945, "B11": 1.61, "B12": 2.19}
_COMMON = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge",
           "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22"}

# Surface reflectance x 10000 per land-cover class (water, vegetation, built-up, bare), bands as S2_BANDS.
_SIGNATURE = np.array([
    [600, 520, 480, 320, 260, 210, 190, 160, 140, 90, 70, 50],                       # water
    [300, 350, 620, 360, 1050, 2500, 3000, 3250, 3350, 3300, 1800, 900],              # vegetation
    [1250, 1150, 1200, 1250, 1380, 1470, 1560, 1620, 1660, 1600, 1900, 1720],         # built-up
    [900, 1000, 1300, 1620, 1800, 2000, 2200, 2300, 2400, 2400, 2850, 2300],          # bare
], dtype=np.float64)
_CLOUD_SIG = np.array([6800, 7000, 7150, 7300, 7400, 7500, 7600, 7700, 7700, 4200, 5100, 4100], dtype=np.float64)
_SCL_OF_CLASS = np.array([6, 4, 5, 5], dtype=np.uint8)
# Linear gamma0 (vv, vh) per land-cover class.
_S1_SIG = np.array([[0.004, 0.0007], [0.09, 0.022], [0.45, 0.06], [0.06, 0.012]], dtype=np.float64)

_REGION_MARGIN_M = 660.0  # data extent around each scenario's default chip (metres)
_ARCSEC = 1.0 / 3600.0


def data_dir() -> Path:
    """The folder of real sample data shipped with the package (see its README)."""
    return Path(__file__).resolve().parent / "data"


def baseline_has_offset(baseline: str | None) -> bool:
    """Whether S2 L2A DN of this ``s2:processing_baseline`` carry the +1000 offset (>= 04.00)."""
    if not baseline:
        return False
    try:
        return float(baseline) >= 4.0
    except ValueError:
        return False


def fixture_elevation(lon: Any, lat: Any) -> np.ndarray:
    """The fixture DEM's terrain: metres above sea level at WGS84 ``lon, lat`` (arrays or scalars).

    A smooth analytic surface (0..~110 m, like NYC), so a DEM read onto any grid can be
    checked against the truth at its pixel centres; bilinear resampling of the 1 arc-second
    fixture DEM reproduces it to a few centimetres.
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    z = (45.0 + 30.0 * np.sin(2 * np.pi * (lon + 74.0) / 0.07) * np.cos(2 * np.pi * (lat - 40.7) / 0.05)
         + 120.0 * (lat - 40.7) + 15.0 * np.cos(2 * np.pi * (lon + 74.0) / 0.23))
    return np.clip(z, 0.0, None)


def chip_fractions(scl: np.ndarray) -> tuple[float, float]:
    """``(cloud_fraction, nodata_fraction)`` of SCL classes on a chip (DESIGN section 2).

    cloud = pixels in {3, 8, 9, 10} / pixels not in {0, 1}; nodata = pixels in {0, 1} / all
    pixels. A chip without valid pixels has cloud fraction 1.
    """
    scl = np.asarray(scl)
    invalid = np.isin(scl, SCL_NODATA)
    valid = int((~invalid).sum())
    cloud = int(np.isin(scl, SCL_CLOUD).sum())
    return (cloud / valid if valid else 1.0), float(invalid.mean()) if scl.size else 1.0


# ----------------------------------------------------------------------------------------
# The catalog object
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FixtureCatalog:
    """A generated catalog: files on disk, the URL they are served under, and the facts."""

    root: Path
    """Folder holding ``cogs/``, ``items.json`` and ``collections/``."""
    items_path: Path
    """The STAC ItemCollection of every item (``root / "items.json"``)."""
    base_url: str
    """URL the ``root`` folder is served under; asset hrefs start with ``{base_url}/cogs/``."""
    points: dict[str, tuple[float, float]]
    """Scenario name -> ``(lat, lon)`` of its chip centre (all inside the NYC domain)."""
    expected: dict[str, dict[str, Any]]
    """Scenario name -> facts to assert on (see :func:`build_fixture_catalog`)."""
    item_facts: dict[str, dict[str, Any]]
    """Item id -> what the generator put in it (collection, scenario, datetime, baseline,
    offset, chip fractions on the scenario's default chip, ...)."""
    collection_paths: tuple[Path, ...]
    """One JSON file per collection (for servers that load collections separately)."""
    now: datetime
    """A reference 'now' (UTC) for recency windows: every scene is within 120 days before it."""
    size_m: float = 2240.0
    """Chip side the chip-level facts in :attr:`expected` were computed for (metres)."""

    def items(self) -> list[dict[str, Any]]:
        """The item dicts of :attr:`items_path`."""
        return list(json.loads(self.items_path.read_text())["features"])

    def item(self, item_id: str) -> dict[str, Any]:
        """One item dict by id."""
        for it in self.items():
            if it["id"] == item_id:
                return it
        raise KeyError(item_id)

    def grid(self, scenario: str, settings: Settings | None = None) -> ChipGrid:
        """The default chip grid of a scenario (the grid the facts were computed on)."""
        lat, lon = self.points[scenario]
        return chip_grid(lat, lon, size_m=self.size_m, settings=settings)

    def when(self, scenario: str) -> tuple[str, str]:
        """The scenario's search window as two ISO dates ``(start, end)``."""
        start, end = self.expected[scenario]["when"]
        return str(start), str(end)

    def settings(self, **overrides: Any) -> Settings:
        """Settings for the local provider over this catalog (no signing), plus ``overrides``."""
        base: dict[str, Any] = {"catalog_provider": "local", "catalog_path": str(self.items_path), "signer": "none"}
        base.update(overrides)
        return Settings(**base)


# ----------------------------------------------------------------------------------------
# Scenario specification
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _S2:
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


@dataclass(frozen=True)
class _S1:
    dt: str
    orbit_state: str = "ascending"
    proj: str = "epsg"
    platform: str = "A"


@dataclass(frozen=True)
class _Scenario:
    name: str
    lat: float
    lon: float
    when: tuple[str, str]
    s2: tuple[_S2, ...]
    s1: tuple[_S1, ...]
    dem_split: float | None  # None: no DEM; 1.0: one tile; else split at this fraction of the chip
    choose: tuple[int, ...]  # indices into s2 of the expected choice (empty: none)
    s1_choose: int | None
    reason: str | None = None  # why nothing is chosen


_NOW = datetime(2024, 7, 31, 23, 59, 59, tzinfo=UTC)
_WHEN = ("2024-05-01", "2024-07-31")


def _scenarios() -> tuple[_Scenario, ...]:
    return (
        _Scenario(
            "clear", 40.7484, -73.9857, _WHEN,
            s2=(_S2("2024-07-18T15:48:21Z", "05.10", 18.4, 0.02, "18TWL", "code"),
                _S2("2022-04-12T15:49:01Z", "04.00", 6.2, 0.0, "18TWL", "epsg", sat="A", gain=0.98),
                _S2("2021-08-20T15:48:41Z", "02.14", 9.7, 0.0, "18TWL", "epsg", sat="A", gain=1.01)),
            s1=(_S1("2024-07-20T22:54:12Z", "ascending"), _S1("2024-07-14T10:59:40Z", "descending", "code")),
            dem_split=1.0, choose=(0,), s1_choose=0,
        ),
        _Scenario(
            "cloudy_vs_clear", 40.6782, -73.9442, _WHEN,
            s2=(_S2("2024-07-13T15:48:29Z", "05.10", 2.3, 0.65, "18TWK", "code", outside_cloud=0.0),
                _S2("2024-07-03T15:48:31Z", "05.10", 64.8, 0.0, "18TWK", "epsg", outside_cloud=0.6, gain=1.02),
                _S2("2024-06-13T15:48:19Z", "05.10", 4.0, 0.0, "18TWK", "code", gain=0.99)),
            s1=(_S1("2024-07-12T22:54:20Z", "ascending"), _S1("2024-07-05T10:59:44Z", "descending", "code"),
                _S1("2024-06-29T22:54:18Z", "ascending")),
            dem_split=1.0, choose=(1,), s1_choose=1,
        ),
        _Scenario(
            "tile_edge", 40.7769, -73.8740, _WHEN,
            s2=(_S2("2024-07-16T15:38:21Z", "05.10", 11.0, 0.0, "18TWL", "epsg", sat="A", orbit=11, cols=(0.0, 0.48)),
                _S2("2024-07-16T15:38:21Z", "05.10", 7.5, 0.0, "18TXL", "code", sat="A", orbit=11, cols=(0.46, 1.0)),
                _S2("2024-06-26T15:38:19Z", "05.10", 5.5, 0.0, "18TWL", "code", sat="A", orbit=11, gain=1.02)),
            s1=(_S1("2024-07-17T22:46:02Z", "ascending", "code", platform="A"),),
            dem_split=0.45, choose=(0, 1), s1_choose=0,
        ),
        _Scenario(
            "no_s1", 40.8448, -73.8648, _WHEN,
            s2=(_S2("2024-07-08T15:48:21Z", "05.10", 8.8, 0.0, "18TWL", "code"),),
            s1=(), dem_split=1.0, choose=(0,), s1_choose=None,
        ),
        _Scenario(
            "no_dem", 40.5795, -74.1502, _WHEN,
            s2=(_S2("2024-07-08T15:48:21Z", "05.10", 8.1, 0.0, "18TWK", "code"),),
            s1=(_S1("2024-07-09T22:54:16Z", "ascending"),), dem_split=None, choose=(0,), s1_choose=0,
        ),
        _Scenario(
            "mostly_nodata", 40.7282, -73.7949, _WHEN,
            s2=(_S2("2024-07-10T15:38:19Z", "05.10", 4.4, 0.0, "18TXL", "code", sat="A", orbit=11, chip_valid=0.25),),
            s1=(_S1("2024-07-11T22:46:00Z", "ascending"),), dem_split=1.0, choose=(), s1_choose=None,
            reason="nodata",
        ),
        _Scenario(
            "all_cloudy", 40.6501, -73.7900, _WHEN,
            s2=(_S2("2024-07-15T15:38:21Z", "05.10", 45.0, 0.7, "18TXK", "code", sat="A", orbit=11),
                _S2("2024-06-30T15:48:19Z", "05.10", 12.0, 0.45, "18TXK", "epsg"),
                _S2("2024-06-10T15:38:19Z", "05.10", 78.0, 0.9, "18TXK", "code", sat="A", orbit=11),
                _S2("2024-05-26T15:48:21Z", "05.10", 93.0, 0.0, "18TXK", "code", outside_cloud=0.95)),
            s1=(_S1("2024-07-14T22:46:00Z", "ascending"),), dem_split=1.0, choose=(), s1_choose=None,
            reason="cloud",
        ),
    )


# ----------------------------------------------------------------------------------------
# Raster helpers
# ----------------------------------------------------------------------------------------
def _smooth(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance smooth noise (float32) with features about ``scale`` pixels across."""
    from scipy.ndimage import zoom

    ch, cw = math.ceil(shape[0] / scale) + 2, math.ceil(shape[1] / scale) + 2
    coarse = rng.standard_normal((ch, cw)).astype(np.float32)
    fine = zoom(coarse, scale, order=1, grid_mode=False)
    out = fine[: shape[0], : shape[1]]
    if out.shape != shape:  # zoom rounding: pad by edge values
        out = np.pad(out, ((0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1])), mode="edge")
    out = out - out.mean()
    return out / (out.std() or np.float32(1.0))


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return a
    h, w = a.shape[-2] // k, a.shape[-1] // k
    return a[..., : h * k, : w * k].reshape(*a.shape[:-2], h, k, w, k).mean(axis=(-3, -1))


def _upsample(a: np.ndarray, k: int) -> np.ndarray:
    return a if k == 1 else np.repeat(np.repeat(a, k, axis=-2), k, axis=-1)


def _write_cog(path: Path, data: np.ndarray, *, crs: str, transform: Any, nodata: float | None,
               description: str | None = None, tags: Mapping[str, str] | None = None) -> None:
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = data if data.ndim == 3 else data[None]
    profile: dict[str, Any] = {"driver": "COG", "width": arr.shape[2], "height": arr.shape[1], "count": arr.shape[0],
                                   "dtype": arr.dtype.name, "crs": crs, "transform": transform, "compress": "DEFLATE",
                                   "blocksize": 256, "overview_resampling": "nearest" if arr.dtype.kind in "iu" else "average"}
    # fast DEFLATE and no overviews: these files are written once per test session and read at
    # full resolution (overviews would double the write time of the 10 m bands)
    profile["level"] = 1
    profile["overviews"] = "NONE"
    if arr.dtype.kind == "f":
        profile["predictor"] = 3
    elif arr.dtype.kind in "iu":
        profile["predictor"] = 2
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.Env(GDAL_NUM_THREADS="1"), rasterio.open(path, "w", **profile) as ds:
        ds.write(arr)
        if description:
            ds.set_band_description(1, description)
        if tags:
            ds.update_tags(**tags)


def _footprint(valid: np.ndarray, transform: Any, crs: str) -> dict[str, Any]:
    """GeoJSON polygon (WGS84) of the convex hull of the valid pixels of a raster."""
    import shapely.geometry as sg
    from pyproj import Transformer
    from rasterio.features import shapes
    from shapely.ops import transform as stransform
    from shapely.ops import unary_union

    polys = [sg.shape(geom) for geom, v in shapes(valid.astype(np.uint8), mask=valid, transform=transform) if v]
    hull = unary_union(polys).convex_hull.segmentize(200.0)
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    g = stransform(lambda x, y, z=None: tr.transform(x, y), hull)
    g = sg.polygon.orient(g, 1.0)
    return json.loads(json.dumps(sg.mapping(g), default=list))


def _bbox(geom: Mapping[str, Any]) -> list[float]:
    xs = [p[0] for p in geom["coordinates"][0]]
    ys = [p[1] for p in geom["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _proj_props(style: str, epsg: int) -> tuple[dict[str, Any], str]:
    if style == "epsg":
        return {"proj:epsg": epsg}, _EXT["proj1"]
    return {"proj:code": f"EPSG:{epsg}"}, _EXT["proj2"]


def _asset(href: str, title: str, *, transform: Any, shape: tuple[int, int], dtype: str, nodata: float | None,
           gsd: float, extra: Mapping[str, Any] | None = None, unit: str | None = None) -> dict[str, Any]:
    band: dict[str, Any] = {"data_type": dtype, "spatial_resolution": gsd}
    if nodata is not None:
        band["nodata"] = nodata
    if unit:
        band["unit"] = unit
    a: dict[str, Any] = {
        "href": href, "type": COG_TYPE, "title": title, "roles": ["data"], "gsd": gsd,
        "proj:shape": [int(shape[0]), int(shape[1])], "proj:transform": [float(v) for v in tuple(transform)[:6]],
        "raster:bands": [band],
    }
    if extra:
        a.update(extra)
    return a


# ----------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------
@dataclass
class _Region:
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
        return Affine(res, 0.0, self.minx + col0 * res, 0.0, -res, self.maxy)

    def chip_window(self, a10: np.ndarray) -> np.ndarray:
        return a10[..., self.chip_r:self.chip_r + self.chip.height, self.chip_c:self.chip_c + self.chip.width]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.minx, self.maxy - self.h10 * 10, self.minx + self.w10 * 10, self.maxy)


def _region(lat: float, lon: float, settings: Settings, size_m: float,
            margin_m: float = _REGION_MARGIN_M) -> _Region:
    g = chip_grid(lat, lon, size_m=size_m, settings=settings)
    m = margin_m
    minx = math.floor((g.bounds[0] - m) / 60.0) * 60.0
    miny = math.floor((g.bounds[1] - m) / 60.0) * 60.0
    maxx = math.ceil((g.bounds[2] + m) / 60.0) * 60.0
    maxy = math.ceil((g.bounds[3] + m) / 60.0) * 60.0
    w10, h10 = round((maxx - minx) / 10), round((maxy - miny) / 10)
    return _Region(settings.crs, minx, maxy, w10, h10, g,
                   round((maxy - g.bounds[3]) / 10), round((g.bounds[0] - minx) / 10))


class _Writer:
    """Writes COGs as they are generated, and counts them.

    Serial on purpose: rasterio holds the GIL while GDAL builds a COG, so threads only add
    contention (measured: 20 files, 0.30 s serial, 0.43 s on two threads).
    """

    def __init__(self) -> None:
        self.count = 0

    def add(self, path: Path, data: np.ndarray, **kw: Any) -> None:
        _write_cog(path, data, **kw)
        self.count += 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: object, ev: object, tb: object) -> None:
        return None


def _scl_and_clouds(rng: np.random.Generator, region: _Region, lc20: np.ndarray, spec: _S2) -> np.ndarray:
    """SCL at 20 m over the whole region for one scene (before nodata is applied)."""
    h, w = lc20.shape
    scl = _SCL_OF_CLASS[lc20].copy()
    noise = rng.random((h, w))
    scl[noise < 0.01] = 7  # unclassified
    scl[(noise >= 0.01) & (noise < 0.015)] = 2  # dark area
    # chip window at 20 m (covering every 20 m pixel the chip touches), with a 300 m guard
    r0, c0 = region.chip_r // 2, region.chip_c // 2
    r1 = (region.chip_r + region.chip.height + 1) // 2
    c1 = (region.chip_c + region.chip.width + 1) // 2
    inside = np.zeros((h, w), dtype=bool)
    inside[r0:r1, c0:c1] = True
    # Chebyshev distance (20 m px) from the chip; "outside" clouds keep a 300 m guard (wider
    # than the cloud-shadow offset) and thin out towards it instead of ending in a hard edge
    rr, cc = np.mgrid[0:h, 0:w]
    dist = np.maximum(np.maximum(r0 - rr, rr - (r1 - 1)), np.maximum(c0 - cc, cc - (c1 - 1))).clip(0)
    guard = dist <= 15
    field_ = _smooth(rng, (h, w), 14.0)
    field_out = field_ - np.where(guard, 100.0, 2.5 * np.clip(1.0 - (dist - 15) / 25.0, 0.0, 1.0))

    def clouds(thr: float, fld: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cloud = fld > thr
        cirrus = (fld > thr - 0.25) & ~cloud
        shadow = np.zeros_like(cloud)
        shadow[8:, 10:] = cloud[:-8, :-10]
        shadow &= ~(cloud | cirrus)
        return cloud, cirrus, shadow

    def frac(thr: float, fld: np.ndarray, over: np.ndarray) -> float:
        cl, ci, sh = clouds(thr, fld)
        return float((cl | ci | sh)[over].mean())

    def solve(target: float, fld: np.ndarray, over: np.ndarray) -> float:
        lo, hi = -4.0, 4.0
        for _ in range(24):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if frac(mid, fld, over) < target else (mid, hi)
        return (lo + hi) / 2

    masks = []
    if spec.chip_cloud > 0:
        masks.append(clouds(solve(spec.chip_cloud, field_, inside), field_))
    if spec.outside_cloud > 0:
        cloud, cirrus, shadow = clouds(solve(spec.outside_cloud, field_out, ~guard), field_out)
        masks.append((cloud, cirrus, shadow & ~guard))
    for cloud, cirrus, shadow in masks:
        high = cloud & (field_ > np.quantile(field_[cloud], 0.5) if cloud.any() else cloud)
        scl[shadow] = 3
        scl[cirrus] = 10
        scl[cloud] = 8
        scl[high] = 9
    return scl


def _s2_scene(rng: np.random.Generator, region: _Region, ground10: np.ndarray, lc20: np.ndarray,
              spec: _S2) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """SCL (20 m) and per-band DN arrays at native resolution over the region, for one scene."""
    scl20 = _scl_and_clouds(rng, region, lc20, spec)
    h60, w60 = region.h10 // 6, region.w10 // 6
    valid60 = np.zeros((h60, w60), dtype=bool)
    c0, c1 = round(spec.cols[0] * w60), round(spec.cols[1] * w60)
    valid60[:, c0:c1] = True
    if spec.chip_valid is not None:
        # a swath edge: nodata above a diagonal line, placed so the chip keeps ~chip_valid valid
        rr, cc = np.mgrid[0:h60, 0:w60]
        chip60 = np.zeros((h60, w60), dtype=bool)
        chip60[region.chip_r // 6:(region.chip_r + region.chip.height) // 6,
               region.chip_c // 6:(region.chip_c + region.chip.width) // 6] = True
        score = rr + 0.6 * cc
        thr = np.quantile(score[chip60], 1.0 - spec.chip_valid)
        valid60 &= score >= thr
    valid20 = _upsample(valid60, 3)
    valid10 = _upsample(valid60, 6)
    scl20 = np.where(valid20, scl20, 0).astype(np.uint8)

    cloud10 = _upsample(np.isin(scl20, (8, 9)), 2)
    cirrus10 = _upsample(scl20 == 10, 2)
    shadow10 = _upsample(scl20 == 3, 2)
    refl = ground10 * np.float32(spec.gain)
    if cloud10.any() or cirrus10.any():
        cloud_tex = _upsample(0.85 + 0.1 * _smooth(rng, (region.h10 // 2, region.w10 // 2), 10.0), 2)
        sig = _CLOUD_SIG.astype(np.float32)[:, None]
        refl[:, cirrus10] = 0.6 * refl[:, cirrus10] + 0.4 * sig * cloud_tex[cirrus10][None]
        refl[:, cloud10] = sig * cloud_tex[cloud10][None]
    refl[:, shadow10] *= np.float32(0.35)
    offset = S2_OFFSET if baseline_has_offset(spec.baseline) else 0
    bands: dict[str, np.ndarray] = {}
    for i, b in enumerate(S2_BANDS):
        k = S2_RESOLUTION[b] // 10
        r = _block_mean(refl[i], k)
        dn = np.clip(np.rint(r) + offset, 1, 65535).astype(np.uint16)
        dn[~_upsample(valid60, 6 // k)] = 0
        bands[b] = dn
    bands["SCL"] = scl20
    return valid10, bands


def _ground(rng: np.random.Generator, h10: int, w10: int) -> tuple[np.ndarray, np.ndarray]:
    """Land-cover classes and surface reflectance (x 10000, float32) per band at 10 m."""
    f1 = _smooth(rng, (h10, w10), 60.0)
    f2 = _smooth(rng, (h10, w10), 18.0)
    lc = np.full((h10, w10), 2, dtype=np.uint8)  # built-up
    lc[f2 > 0.55] = 1  # vegetation
    lc[f2 < -1.3] = 3  # bare
    lc[f1 < -1.0] = 0  # water
    tex = 1.0 + 0.06 * _smooth(rng, (h10, w10), 3.0)
    refl = _SIGNATURE.astype(np.float32)[lc].transpose(2, 0, 1) * tex[None]
    return lc, np.clip(refl, 1.0, None)


def build_fixture_catalog(root: str | os.PathLike[str], base_url: str, *, seed: int = 0,
                          settings: Settings | None = None,
                          scenarios: Iterable[str] | None = None,
                          margin_m: float = _REGION_MARGIN_M) -> FixtureCatalog:
    """Write the fixture COGs and STAC items under ``root``; asset hrefs start with ``base_url``.

    ``root`` may already be served (start a :class:`~terramind_nyc.testing.CogServer` on an
    empty folder first, then build into it with its URL). ``seed`` changes the pixel values
    (so chip fractions move a little), never the scenario's choices. ``settings`` gives the grid CRS/resolution and the chip-choice
    limits the expected facts are checked against (default ``Settings()``). ``scenarios``
    builds only those (default all of :data:`SCENARIOS`); a scenario's pixels do not depend on
    which others are built. ``margin_m`` is how far the data extend around each scenario's
    default chip (larger for benchmarks that scatter points around it; the scenarios' facts
    are only guaranteed at the default).

    ``expected[scenario]`` holds: ``when`` (ISO start, end), ``s2_ids`` (the item(s) a correct
    scene choice returns, several when they must be mosaicked; empty when none qualifies),
    ``s2_datetime``, ``s2_baseline``, ``s2_offset`` (DN to subtract), ``s2_offset_removed``,
    ``chip_cloud_fraction`` / ``chip_nodata_fraction`` of that choice (mosaic) on the default
    chip, ``s1_id`` / ``s1_datetime`` (None when no S1 fits), ``dem_ids``, ``reason`` ("cloud",
    "nodata" or None), ``s2_candidates`` (every S2 item id of the scenario, newest first) and
    ``prefiltered_ids`` (those above the ``eo:cloud_cover`` prefilter).
    """
    s = settings if settings is not None else Settings()
    if s.resolution_m != 10.0:
        raise ValueError("the fixture catalog is built on the 10 m lattice; use Settings(resolution_m=10)")
    root = Path(root)
    base_url = base_url.rstrip("/")
    size_m = 2240.0
    every = _scenarios()
    wanted = set(SCENARIOS) if scenarios is None else set(scenarios)
    unknown = wanted - set(SCENARIOS)
    if unknown or not wanted:
        raise ValueError(f"unknown or no scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    with _Writer() as writer:
        items: list[dict[str, Any]] = []
        facts: dict[str, dict[str, Any]] = {}
        expected: dict[str, dict[str, Any]] = {}
        regions: dict[str, _Region] = {}
        epsg = int(s.crs.split(":")[1])
        for si, sc in enumerate(every):
            if sc.name not in wanted:
                continue
            rng = np.random.default_rng([seed, si])
            reg = _region(sc.lat, sc.lon, s, size_m, margin_m)
            regions[sc.name] = reg
            lc10, ground10 = _ground(rng, reg.h10, reg.w10)
            lc20 = lc10[::2, ::2]

            # --- Sentinel-2 ---------------------------------------------------------------
            s2_ids: list[str] = []
            s2_valid_chip: dict[str, np.ndarray] = {}
            s2_scl_chip: dict[str, np.ndarray] = {}
            for spec in sc.s2:
                dt = _parse_dt(spec.dt)
                proc = dt + timedelta(hours=9, minutes=13, seconds=7)
                iid = f"S2{spec.sat}_MSIL2A_{dt:%Y%m%dT%H%M%S}_R{spec.orbit:03d}_T{spec.tile}_{proc:%Y%m%dT%H%M%S}"
                valid10, bands = _s2_scene(rng, reg, ground10, lc20, spec)
                c0 = round(spec.cols[0] * (reg.w10 // 6)) * 6
                c1 = round(spec.cols[1] * (reg.w10 // 6)) * 6
                assets: dict[str, Any] = {}
                for name in (*S2_BANDS, "SCL"):
                    res = S2_RESOLUTION[name]
                    k = res // 10
                    arr = bands[name][:, c0 // k:c1 // k]
                    tr = reg.transform(res, c0 // k)
                    rel = f"cogs/sentinel-2-l2a/{iid}/{name}.tif"
                    writer.add(root / rel, arr, crs=s.crs, transform=tr, nodata=0, description=name)
                    extra: dict[str, Any] = {}
                    if name == "SCL":
                        title = "Scene classification map (SCL)"
                    else:
                        title = f"Band {int(name[1:3]) if name != 'B8A' else '8A'} - {_COMMON[name]} - {res}m"
                        extra["eo:bands"] = [{"name": name, "common_name": _COMMON[name],
                                              "center_wavelength": _WAVELENGTH[name]}]
                    assets[name] = _asset(f"{base_url}/{rel}", title, transform=tr, shape=arr.shape,
                                          dtype="uint8" if name == "SCL" else "uint16", nodata=0, gsd=float(res),
                                          extra=extra)
                raster_valid = valid10[:, c0:c1]
                geom = _footprint(raster_valid, reg.transform(10, c0), s.crs)
                proj, proj_ext = _proj_props(spec.proj, epsg)
                nod_pct = round(100.0 * (1.0 - float(raster_valid.mean())), 4)
                items.append({
                    "type": "Feature", "stac_version": "1.0.0",
                    "stac_extensions": [_EXT["eo"], proj_ext, _EXT["sat"], _EXT["raster"]],
                    "id": iid, "collection": s.s2_collection, "geometry": geom, "bbox": _bbox(geom),
                    "properties": {
                        "datetime": _iso(dt), "platform": f"Sentinel-2{spec.sat}", "constellation": "Sentinel 2",
                        "instruments": ["msi"], "eo:cloud_cover": spec.cloud_cover,
                        "s2:mgrs_tile": spec.tile, "s2:processing_baseline": spec.baseline,
                        "s2:product_type": "S2MSI2A", "s2:nodata_pixel_percentage": nod_pct,
                        "s2:generation_time": _iso(proc), "sat:relative_orbit": spec.orbit,
                        "sat:orbit_state": "descending", **proj,
                    },
                    "links": [], "assets": assets,
                })
                # facts on the default chip (10 m; SCL by nearest = 2x2 repeat on this lattice)
                full_scl10 = _upsample(bands["SCL"], 2)
                chip_scl = reg.chip_window(full_scl10)
                cf, nf = chip_fractions(chip_scl)
                s2_ids.append(iid)
                s2_valid_chip[iid] = reg.chip_window(valid10)
                s2_scl_chip[iid] = chip_scl
                off = S2_OFFSET if baseline_has_offset(spec.baseline) else 0
                facts[iid] = {"collection": s.s2_collection, "scenario": sc.name, "datetime": _iso(dt),
                              "baseline": spec.baseline, "offset": off, "eo:cloud_cover": spec.cloud_cover,
                              "mgrs_tile": spec.tile, "proj": "proj:epsg" if spec.proj == "epsg" else "proj:code",
                              "chip_cloud_fraction": round(cf, 6), "chip_nodata_fraction": round(nf, 6),
                              "chip_valid_fraction": round(float(s2_valid_chip[iid].mean()), 6)}

            # --- Sentinel-1 RTC -----------------------------------------------------------
            s1_ids: list[str] = []
            s1_tex = 1.0 + 0.15 * _smooth(rng, (reg.h10, reg.w10), 10.0) if sc.s1 else None
            for k_s1, s1 in enumerate(sc.s1):
                dt = _parse_dt(s1.dt)
                end = dt + timedelta(seconds=25)
                absorb = 54000 + 37 * si + k_s1
                iid = (f"S1{s1.platform}_IW_GRDH_1SDV_{dt:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}_"
                       f"{absorb:06d}_{(0x6A000 + absorb) & 0xFFFFFF:06X}_rtc")
                # speckle (4.4 looks) drawn at 20 m and repeated: realistic statistics, half the entropy
                speck = _upsample(rng.gamma(4.4, 1.0 / 4.4, (2, reg.h10 // 2, reg.w10 // 2)).astype(np.float32), 2)
                assert s1_tex is not None
                sig = _S1_SIG.astype(np.float32)[lc10].transpose(2, 0, 1) * s1_tex[None]
                lin = np.clip(sig, 1e-5, None) * speck
                # keep 8 mantissa bits (relative precision ~4e-3, far below speckle) so the
                # fixture stays small; the stored values are the truth tests compare against
                lin = (lin.view(np.uint32) & np.uint32(0xFFFF8000)).view(np.float32)
                valid = np.ones((reg.h10, reg.w10), dtype=bool)
                valid[:, : max(1, reg.chip_c // 3)] = False  # a swath-edge stripe west of the chip
                lin[:, ~valid] = S1_NODATA
                tr = reg.transform(10)
                assets = {}
                for pi, pol in enumerate(("vv", "vh")):
                    rel = f"cogs/sentinel-1-rtc/{iid}/{pol}.tif"
                    writer.add(root / rel, lin[pi], crs=s.crs, transform=tr, nodata=S1_NODATA, description=pol)
                    assets[pol] = _asset(f"{base_url}/{rel}", f"{pol.upper()}: vertical transmit, "
                                         f"{'vertical' if pol == 'vv' else 'horizontal'} receive", transform=tr,
                                         shape=lin[pi].shape, dtype="float32", nodata=S1_NODATA, gsd=10.0,
                                         unit="linear power (gamma0)")
                geom = _footprint(valid, tr, s.crs)
                proj, proj_ext = _proj_props(s1.proj, epsg)
                items.append({
                    "type": "Feature", "stac_version": "1.0.0",
                    "stac_extensions": [_EXT["sar"], _EXT["sat"], proj_ext, _EXT["raster"]],
                    "id": iid, "collection": s.s1_collection, "geometry": geom, "bbox": _bbox(geom),
                    "properties": {
                        "datetime": _iso(dt), "start_datetime": _iso(dt), "end_datetime": _iso(end),
                        "platform": f"SENTINEL-1{s1.platform}", "constellation": "Sentinel-1", "instruments": ["c-sar"],
                        "sar:instrument_mode": "IW", "sar:frequency_band": "C", "sar:polarizations": ["VV", "VH"],
                        "sar:product_type": "GRD", "sat:orbit_state": s1.orbit_state,
                        "sat:relative_orbit": 33 if s1.orbit_state == "ascending" else 106, **proj,
                    },
                    "links": [], "assets": assets,
                })
                s1_ids.append(iid)
                facts[iid] = {"collection": s.s1_collection, "scenario": sc.name, "datetime": _iso(dt),
                              "orbit_state": s1.orbit_state, "proj": "proj:epsg" if s1.proj == "epsg" else "proj:code",
                              "units": "linear", "nodata": S1_NODATA}

            # --- DEM ------------------------------------------------------------------------
            dem_ids: list[str] = []
            if sc.dem_split is not None:
                w, so, e, n = _region_4326(reg)
                split_lon = None
                if sc.dem_split < 1.0:
                    cb = reg.chip.bounds_4326
                    split_lon = cb[0] + sc.dem_split * (cb[2] - cb[0])
                pieces = [(w, e)] if split_lon is None else [(w, split_lon), (split_lon, e)]
                for pw, pe in pieces:
                    # real tiles: pixel centres on whole arc-seconds -> edges at half arc-seconds
                    e0 = math.floor(pw / _ARCSEC) - 0.5
                    e1 = math.ceil(pe / _ARCSEC) + 0.5
                    n0 = math.ceil(n / _ARCSEC) + 0.5
                    n1 = math.floor(so / _ARCSEC) - 0.5
                    width, height = round(e1 - e0), round(n0 - n1)
                    tr = Affine(_ARCSEC, 0.0, e0 * _ARCSEC, 0.0, -_ARCSEC, n0 * _ARCSEC)
                    lons = (e0 + 0.5 + np.arange(width)) * _ARCSEC
                    lats = (n0 - 0.5 - np.arange(height)) * _ARCSEC
                    z = fixture_elevation(lons[None, :], lats[:, None]).astype(np.float32)
                    lat_tag = f"N{math.floor(so):02d}_00"
                    lon_tag = f"W{math.ceil(-pw):03d}_00"
                    iid = f"Copernicus_DSM_COG_10_{lat_tag}_{lon_tag}_DEM_{sc.name}_{len(dem_ids)}"
                    rel = f"cogs/cop-dem-glo-30/{iid}/data.tif"
                    writer.add(root / rel, z, crs="EPSG:4326", transform=tr, nodata=None, description="elevation")
                    geom = _footprint(np.ones(z.shape, dtype=bool), tr, "EPSG:4326")
                    items.append({
                        "type": "Feature", "stac_version": "1.0.0",
                        "stac_extensions": [_EXT["proj1"], _EXT["raster"]],
                        "id": iid, "collection": s.dem_collection, "geometry": geom, "bbox": _bbox(geom),
                        "properties": {"datetime": "2021-04-22T00:00:00Z", "start_datetime": "2011-12-11T00:00:00Z",
                                       "end_datetime": "2015-01-21T00:00:00Z", "platform": "TanDEM-X",
                                       "gsd": 30, "proj:epsg": 4326},
                        "links": [],
                        "assets": {"data": _asset(f"{base_url}/{rel}", "Elevation (m)", transform=tr, shape=z.shape,
                                                  dtype="float32", nodata=None, gsd=30.0, unit="metre",
                                                  extra={"roles": ["data"]})},
                    })
                    dem_ids.append(iid)
                    facts[iid] = {"collection": s.dem_collection, "scenario": sc.name, "crs": "EPSG:4326",
                                  "resolution_deg": _ARCSEC, "units": "metre"}

            # --- expected facts -------------------------------------------------------------
            order = sorted(range(len(sc.s2)), key=lambda i: sc.s2[i].dt, reverse=True)
            chosen = [s2_ids[i] for i in sc.choose]
            exp: dict[str, Any] = {
                "when": sc.when, "s2_ids": chosen, "reason": sc.reason,
                "s2_candidates": [s2_ids[i] for i in order],
                "prefiltered_ids": [s2_ids[i] for i in order if sc.s2[i].cloud_cover > s.scene_prefilter_cloud_pct],
                "dem_ids": dem_ids, "s1_ids": s1_ids,
            }
            if chosen:
                spec0 = sc.s2[sc.choose[0]]
                mosaic_scl = np.zeros_like(s2_scl_chip[chosen[0]])
                for iid in chosen:
                    mosaic_scl = np.where(mosaic_scl == 0, s2_scl_chip[iid], mosaic_scl)
                cf, nf = chip_fractions(mosaic_scl)
                off = S2_OFFSET if baseline_has_offset(spec0.baseline) else 0
                exp.update(s2_datetime=_iso(_parse_dt(spec0.dt)), s2_baseline=spec0.baseline, s2_offset=off,
                           s2_offset_removed=bool(off), chip_cloud_fraction=round(cf, 6),
                           chip_nodata_fraction=round(nf, 6))
            else:
                exp.update(s2_datetime=None, s2_baseline=None, s2_offset=None, s2_offset_removed=None,
                           chip_cloud_fraction=None, chip_nodata_fraction=None)
            if sc.s1_choose is not None:
                exp.update(s1_id=s1_ids[sc.s1_choose], s1_datetime=_iso(_parse_dt(sc.s1[sc.s1_choose].dt)))
            else:
                exp.update(s1_id=None, s1_datetime=None)
            expected[sc.name] = exp

        _check_disjoint(regions)
        ids = [it["id"] for it in items]
        if len(ids) != len(set(ids)):  # pragma: no cover - a bug in the scenario table
            raise AssertionError("fixture item ids are not unique")

    root.mkdir(parents=True, exist_ok=True)
    items_path = root / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": items}, indent=1))
    coll_paths = tuple(_write_collections(root, items, s))
    log.debug("fixture catalog: %d items, %d COGs under %s", len(items), writer.count, root)
    return FixtureCatalog(
        root=root, items_path=items_path, base_url=base_url,
        points={sc.name: (sc.lat, sc.lon) for sc in every if sc.name in wanted},
        expected=expected, item_facts=facts, collection_paths=coll_paths, now=_NOW, size_m=size_m,
    )


def _region_4326(reg: _Region) -> tuple[float, float, float, float]:
    from pyproj import Transformer

    tr = Transformer.from_crs(reg.crs, "EPSG:4326", always_xy=True)
    w, so, e, n = tr.transform_bounds(*reg.bounds, densify_pts=21)
    return float(w), float(so), float(e), float(n)


def _check_disjoint(regions: Mapping[str, _Region]) -> None:
    names = list(regions)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ra, rb = regions[a].bounds, regions[b].bounds
            if ra[0] < rb[2] and rb[0] < ra[2] and ra[1] < rb[3] and rb[1] < ra[3]:  # pragma: no cover
                raise AssertionError(f"fixture regions {a} and {b} overlap")


def _write_collections(root: Path, items: Sequence[Mapping[str, Any]], s: Settings) -> Iterable[Path]:
    meta = {
        s.s2_collection: ("Sentinel-2 Level-2A (test fixture)", "ESA Copernicus", "proprietary"),
        s.s1_collection: ("Sentinel 1 Radiometrically Terrain Corrected (RTC) (test fixture)", "ESA Copernicus",
                          "CC-BY-4.0"),
        s.dem_collection: ("Copernicus DEM GLO-30 (test fixture)", "ESA Copernicus", "proprietary"),
    }
    out = root / "collections"
    out.mkdir(parents=True, exist_ok=True)
    for cid, (title, provider, lic) in meta.items():
        mine = [it for it in items if it["collection"] == cid]
        if not mine:
            continue
        bboxes = [it["bbox"] for it in mine]
        dts = sorted(it["properties"]["datetime"] for it in mine)
        coll = {
            "type": "Collection", "stac_version": "1.0.0", "id": cid, "title": title,
            "description": f"{title}: generated by terramind_nyc.testing for loopback tests.",
            "license": lic, "providers": [{"name": provider, "roles": ["producer", "licensor"]}],
            "extent": {"spatial": {"bbox": [[min(b[0] for b in bboxes), min(b[1] for b in bboxes),
                                             max(b[2] for b in bboxes), max(b[3] for b in bboxes)]]},
                       "temporal": {"interval": [[dts[0], dts[-1]]]}},
            "links": [],
        }
        p = out / f"{cid}.json"
        p.write_text(json.dumps(coll, indent=1))
        yield p


# ----------------------------------------------------------------------------------------
# The real chip
# ----------------------------------------------------------------------------------------
REAL_TILE = "433D_629L_3_1"


@dataclass(frozen=True)
class RealChip:
    """One real TerraMind example tile served as COGs with STAC items (see the data README).

    The tile is in Chile (EPSG:32718), not NYC: read it onto :attr:`grid` with
    :meth:`settings` (``domain_check=False``, ``crs`` of the tile).
    """

    tile: str
    """Tile id of the TerraMind example (``433D_629L_3_1``)."""
    root: Path
    """Folder holding ``cogs/`` and ``items.json``."""
    items_path: Path
    """STAC ItemCollection of the tile's three items (S2, S1, DEM)."""
    base_url: str
    """URL ``root`` is served under."""
    grid: ChipGrid
    """The tile's own 224 x 224, 10 m grid (EPSG:32718; its origin is not on the 10 m lattice)."""
    s2_dn: np.ndarray
    """Source S2 L2A DN, uint16 (12, 224, 224), band order :data:`S2_BANDS`, offset included."""
    s1_db: np.ndarray
    """Source S1 RTC backscatter in dB, float64 (2, 224, 224), (vv, vh)."""
    dem: np.ndarray
    """Source DEM in metres on the tile grid, float32 (224, 224)."""
    dem_roundtrip_error_m: float
    """Largest |source - bilinear(source -> served 4326 DEM -> tile grid)| (metres, rasterio):
    the interpolation error a correct DEM read can show."""
    s2_id: str
    s1_id: str
    dem_id: str
    s2_datetime: str
    """ISO datetime given to the S2 item."""
    s1_datetime: str
    """ISO datetime of the S1 item (from the source file's tag)."""
    baseline: str = "04.00"
    """``s2:processing_baseline`` of the S2 item: the DN carry the +1000 offset."""

    @property
    def center(self) -> tuple[float, float]:
        """``(lat, lon)`` of the grid centre."""
        return self.grid.center_lat, self.grid.center_lon

    @property
    def when(self) -> tuple[str, str]:
        """A search window around the acquisition (ISO dates)."""
        return ("2020-04-01", "2020-04-30")

    def items(self) -> list[dict[str, Any]]:
        return list(json.loads(self.items_path.read_text())["features"])

    def settings(self, **overrides: Any) -> Settings:
        """Local-provider settings for this tile: its CRS, no NYC domain check, no signing."""
        base: dict[str, Any] = {"catalog_provider": "local", "catalog_path": str(self.items_path), "signer": "none",
                                "crs": self.grid.crs, "domain_check": False}
        base.update(overrides)
        return Settings(**base)


def build_real_chip(root: str | os.PathLike[str], base_url: str, *, tile: str = REAL_TILE,
                    dem_resolution_deg: float = _ARCSEC) -> RealChip:
    """Serve a real TerraMind example tile as COGs + STAC items under ``root`` (URL ``base_url``).

    S2: the 12 source bands as uint16 COGs at 10 m on the source grid, plus an SCL at 20 m
    derived from the bands (water 6 / vegetation 4 / other 5: the source has no SCL, and the
    scene is clear), baseline "04.00" (the DN carry the offset). S1: the source dB converted
    back to linear power, float32, nodata -32768. DEM: the source resampled (average) to
    EPSG:4326 at ``dem_resolution_deg`` (default 1 arc-second, like Copernicus GLO-30).
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

    root = Path(root)
    base_url = base_url.rstrip("/")
    src_dir = data_dir() / tile
    with rasterio.open(src_dir / "S2L2A.tif") as ds:
        s2 = ds.read()
        crs = ds.crs.to_string()
        transform = ds.transform
        bounds = tuple(ds.bounds)
    with rasterio.open(src_dir / "S1RTC.tif") as ds:
        s1_db = ds.read().astype(np.float64)
        s1_tag = ds.tags().get("datetime", "2020-04-11T23:43:09")
    with rasterio.open(src_dir / "DEM.tif") as ds:
        dem = ds.read(1).astype(np.float32)
    grid = ChipGrid.from_bounds(crs, bounds, abs(transform.a))
    s2_dn = s2.astype(np.uint16)
    h, w = s2_dn.shape[1:]

    s2_dt = datetime(2020, 4, 8, 14, 37, 29, tzinfo=UTC)
    s1_dt = datetime.fromisoformat(s1_tag.split(".")[0]).replace(tzinfo=UTC)
    epsg = int(crs.split(":")[1])
    s2_id = f"S2A_MSIL2A_{s2_dt:%Y%m%dT%H%M%S}_R053_T18HXF_{tile}"
    s1_id = f"S1A_IW_GRDH_1SDV_{s1_dt:%Y%m%dT%H%M%S}_{tile}_rtc"
    dem_id = f"Copernicus_DSM_COG_10_S39_00_W073_00_DEM_{tile}"
    items: list[dict[str, Any]] = []
    jobs = _Writer()

    # S2 bands and SCL
    assets: dict[str, Any] = {}
    for i, b in enumerate(S2_BANDS):
        rel = f"cogs/sentinel-2-l2a/{s2_id}/{b}.tif"
        jobs.add(root / rel, s2_dn[i], crs=crs, transform=transform, nodata=0, description=b)
        assets[b] = _asset(f"{base_url}/{rel}", f"Band {b} - {_COMMON[b]}", transform=transform, shape=(h, w),
                           dtype="uint16", nodata=0, gsd=10.0,
                           extra={"eo:bands": [{"name": b, "common_name": _COMMON[b],
                                                "center_wavelength": _WAVELENGTH[b]}]})
    refl = s2.astype(np.float64) - S2_OFFSET
    red, nir, green = refl[3], refl[7], refl[2]
    ndvi = (nir - red) / np.maximum(nir + red, 1.0)
    ndwi = (green - nir) / np.maximum(green + nir, 1.0)
    scl10 = np.full((h, w), 5, dtype=np.uint8)
    scl10[ndvi > 0.3] = 4
    scl10[ndwi > 0.1] = 6
    scl20 = scl10[::2, ::2].copy()
    tr20 = Affine(20.0, 0.0, transform.c, 0.0, -20.0, transform.f)
    rel = f"cogs/sentinel-2-l2a/{s2_id}/SCL.tif"
    jobs.add(root / rel, scl20, crs=crs, transform=tr20, nodata=0, description="SCL")
    assets["SCL"] = _asset(f"{base_url}/{rel}", "Scene classification map (SCL), derived", transform=tr20,
                           shape=scl20.shape, dtype="uint8", nodata=0, gsd=20.0)
    geom = _footprint(np.ones((h, w), dtype=bool), transform, crs)
    items.append({
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": [_EXT["eo"], _EXT["proj1"], _EXT["raster"]],
        "id": s2_id, "collection": "sentinel-2-l2a", "geometry": geom, "bbox": _bbox(geom),
        "properties": {"datetime": _iso(s2_dt), "platform": "Sentinel-2A", "constellation": "Sentinel 2",
                       "instruments": ["msi"], "eo:cloud_cover": 0.5, "s2:processing_baseline": "04.00",
                       "s2:mgrs_tile": "18HXF", "s2:product_type": "S2MSI2A", "proj:epsg": epsg},
        "links": [], "assets": assets,
    })

    # S1: dB -> linear power
    lin = np.power(10.0, s1_db / 10.0).astype(np.float32)
    lin[~np.isfinite(s1_db)] = S1_NODATA
    assets = {}
    for pi, pol in enumerate(("vv", "vh")):
        rel = f"cogs/sentinel-1-rtc/{s1_id}/{pol}.tif"
        jobs.add(root / rel, lin[pi], crs=crs, transform=transform, nodata=S1_NODATA, description=pol)
        assets[pol] = _asset(f"{base_url}/{rel}", pol.upper(), transform=transform, shape=(h, w), dtype="float32",
                             nodata=S1_NODATA, gsd=10.0, unit="linear power (gamma0)")
    items.append({
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": [_EXT["sar"], _EXT["proj2"], _EXT["raster"]],
        "id": s1_id, "collection": "sentinel-1-rtc", "geometry": geom, "bbox": _bbox(geom),
        "properties": {"datetime": _iso(s1_dt), "platform": "SENTINEL-1A", "constellation": "Sentinel-1",
                       "sar:instrument_mode": "IW", "sar:polarizations": ["VV", "VH"],
                       "sat:orbit_state": "ascending", "proj:code": f"EPSG:{epsg}"},
        "links": [], "assets": assets,
    })

    # DEM: source grid -> EPSG:4326 (average), like a Copernicus tile
    dres = float(dem_resolution_deg)
    west, south, east, north = grid.bounds_4326
    c0, r0 = math.floor(west / dres) - 1.5, math.ceil(north / dres) + 1.5  # pixel centres on whole steps
    dtr = Affine(dres, 0.0, c0 * dres, 0.0, -dres, r0 * dres)
    dw = int(math.ceil(east / dres) + 1.5 - c0)
    dh = int(r0 - (math.floor(south / dres) - 1.5))
    dem4326 = np.full((dh, dw), np.nan, dtype=np.float32)
    reproject(dem, dem4326, src_transform=transform, src_crs=crs, dst_transform=dtr, dst_crs="EPSG:4326",
              resampling=Resampling.average, dst_nodata=np.nan)
    # fill the rim the source does not cover with the nearest value (a real tile has terrain there)
    if np.isnan(dem4326).any():
        from scipy.ndimage import distance_transform_edt

        idx = distance_transform_edt(np.isnan(dem4326), return_distances=False, return_indices=True)
        dem4326 = dem4326[tuple(idx)]
    back = np.full((h, w), np.nan, dtype=np.float32)
    reproject(dem4326, back, src_transform=dtr, src_crs="EPSG:4326", dst_transform=transform, dst_crs=crs,
              resampling=Resampling.bilinear)
    rt_err = float(np.nanmax(np.abs(back - dem)))
    rel = f"cogs/cop-dem-glo-30/{dem_id}/data.tif"
    jobs.add(root / rel, dem4326, crs="EPSG:4326", transform=dtr, nodata=None, description="elevation")
    dgeom = _footprint(np.ones(dem4326.shape, dtype=bool), dtr, "EPSG:4326")
    items.append({
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": [_EXT["proj1"], _EXT["raster"]],
        "id": dem_id, "collection": "cop-dem-glo-30", "geometry": dgeom, "bbox": _bbox(dgeom),
        "properties": {"datetime": "2021-04-22T00:00:00Z", "platform": "TanDEM-X", "gsd": 30, "proj:epsg": 4326},
        "links": [],
        "assets": {"data": _asset(f"{base_url}/{rel}", "Elevation (m)", transform=dtr, shape=dem4326.shape,
                                  dtype="float32", nodata=None, gsd=30.0, unit="metre")},
    })
    root.mkdir(parents=True, exist_ok=True)
    items_path = root / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": items}, indent=1))
    return RealChip(tile=tile, root=root, items_path=items_path, base_url=base_url, grid=grid, s2_dn=s2_dn,
                    s1_db=s1_db, dem=dem, dem_roundtrip_error_m=rt_err, s2_id=s2_id, s1_id=s1_id, dem_id=dem_id,
                    s2_datetime=_iso(s2_dt), s1_datetime=_iso(s1_dt))

