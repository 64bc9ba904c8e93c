"""One real TerraMind example tile, served like the fixtures: COGs and STAC items, for value round trips.

:func:`build_real_chip` serves the tile shipped in ``terramind_nyc/testing/data`` (see its
README) the same way :func:`~terramind_nyc.testing.build_fixture_catalog` serves the
generated scenes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from ..grid import ChipGrid
from ..sensors import S1_NODATA, S2_BANDS, S2_OFFSET_DN
from ..settings import Settings
from .cogs import (
    ARCSEC,
    S2_COMMON_NAMES,
    S2_WAVELENGTHS,
    CogWriter,
    cog_asset,
    footprint,
    geometry_bbox,
    stac_datetime,
    stac_extensions,
)

__all__ = ["REAL_TILE", "RealChip", "build_real_chip", "data_dir"]


def data_dir() -> Path:
    """The folder of real sample data shipped with the package (see its README)."""
    return Path(__file__).resolve().parent / "data"


#: Tile id of the shipped TerraMind example.
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
                    dem_resolution_deg: float = ARCSEC) -> RealChip:
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
    jobs = CogWriter()

    # S2 bands and SCL
    assets: dict[str, Any] = {}
    for i, b in enumerate(S2_BANDS):
        rel = f"cogs/sentinel-2-l2a/{s2_id}/{b}.tif"
        jobs.add(root / rel, s2_dn[i], crs=crs, transform=transform, nodata=0, description=b)
        assets[b] = cog_asset(f"{base_url}/{rel}", f"Band {b} - {S2_COMMON_NAMES[b]}", transform=transform,
                              shape=(h, w), dtype="uint16", nodata=0, gsd=10.0,
                              extra={"eo:bands": [{"name": b, "common_name": S2_COMMON_NAMES[b],
                                                   "center_wavelength": S2_WAVELENGTHS[b]}]})
    refl = s2.astype(np.float64) - S2_OFFSET_DN
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
    assets["SCL"] = cog_asset(f"{base_url}/{rel}", "Scene classification map (SCL), derived", transform=tr20,
                              shape=scl20.shape, dtype="uint8", nodata=0, gsd=20.0)
    geom = footprint(np.ones((h, w), dtype=bool), transform, crs)
    items.append({
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": stac_extensions("eo", "proj1", "raster"),
        "id": s2_id, "collection": "sentinel-2-l2a", "geometry": geom, "bbox": geometry_bbox(geom),
        "properties": {"datetime": stac_datetime(s2_dt), "platform": "Sentinel-2A", "constellation": "Sentinel 2",
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
        assets[pol] = cog_asset(f"{base_url}/{rel}", pol.upper(), transform=transform, shape=(h, w),
                                dtype="float32", nodata=S1_NODATA, gsd=10.0, unit="linear power (gamma0)")
    items.append({
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": stac_extensions("sar", "proj2", "raster"),
        "id": s1_id, "collection": "sentinel-1-rtc", "geometry": geom, "bbox": geometry_bbox(geom),
        "properties": {"datetime": stac_datetime(s1_dt), "platform": "SENTINEL-1A", "constellation": "Sentinel-1",
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
    dgeom = footprint(np.ones(dem4326.shape, dtype=bool), dtr, "EPSG:4326")
    items.append({
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": stac_extensions("proj1", "raster"),
        "id": dem_id, "collection": "cop-dem-glo-30", "geometry": dgeom, "bbox": geometry_bbox(dgeom),
        "properties": {"datetime": "2021-04-22T00:00:00Z", "platform": "TanDEM-X", "gsd": 30, "proj:epsg": 4326},
        "links": [],
        "assets": {"data": cog_asset(f"{base_url}/{rel}", "Elevation (m)", transform=dtr, shape=dem4326.shape,
                                     dtype="float32", nodata=None, gsd=30.0, unit="metre")},
    })
    root.mkdir(parents=True, exist_ok=True)
    items_path = root / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": items}, indent=1))
    return RealChip(tile=tile, root=root, items_path=items_path, base_url=base_url, grid=grid, s2_dn=s2_dn,
                    s1_db=s1_db, dem=dem, dem_roundtrip_error_m=rt_err, s2_id=s2_id, s1_id=s1_id, dem_id=dem_id,
                    s2_datetime=stac_datetime(s2_dt), s1_datetime=stac_datetime(s1_dt))
