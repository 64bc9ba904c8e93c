"""Writing the fixture files: COGs, footprints and bboxes, STAC asset and projection fields, collections.

The COGs are DEFLATE, 256 px tiles, header first, with no overviews (full-resolution chip
reads never touch them). Nothing here draws random numbers or knows the scenarios.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np

from ..settings import Settings

__all__ = [
    "ARCSEC",
    "COG_TYPE",
    "S2_COMMON_NAMES",
    "S2_WAVELENGTHS",
    "STAC_EXTENSIONS",
    "CogWriter",
    "cog_asset",
    "footprint",
    "geometry_bbox",
    "proj_properties",
    "stac_datetime",
    "stac_extensions",
    "write_collections",
]

#: Media type of a cloud-optimised GeoTIFF asset.
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
#: Schema URLs of the STAC extensions the fixture items declare.
STAC_EXTENSIONS = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj1": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "proj2": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
}
#: Centre wavelength (micrometres) of each S2 band, for ``eo:bands``.
S2_WAVELENGTHS = {"B01": 0.443, "B02": 0.49, "B03": 0.56, "B04": 0.665, "B05": 0.704, "B06": 0.74, "B07": 0.783,
                  "B08": 0.842, "B8A": 0.865, "B09": 0.945, "B11": 1.61, "B12": 2.19}
#: ``eo:bands`` common name of each S2 band.
S2_COMMON_NAMES = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge",
                   "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22"}

#: One arc-second in degrees: the Copernicus DEM GLO-30 pixel.
ARCSEC = 1.0 / 3600.0


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


class CogWriter:
    """Writes COGs as they are generated, and counts them.

    Serial on purpose: rasterio holds the GIL while GDAL builds a COG, so threads only add
    contention (measured: 20 files, 0.30 s serial, 0.43 s on two threads).
    """

    def __init__(self) -> None:
        self.count = 0

    def add(self, path: Path, data: np.ndarray, **kw: Any) -> None:
        """Write ``data`` as a COG at ``path`` (``crs``, ``transform``, ``nodata``, ``description``, ``tags``)."""
        _write_cog(path, data, **kw)
        self.count += 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: object, ev: object, tb: object) -> None:
        return None


def footprint(valid: np.ndarray, transform: Any, crs: str) -> dict[str, Any]:
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


def geometry_bbox(geom: Mapping[str, Any]) -> list[float]:
    """``[west, south, east, north]`` of a GeoJSON polygon's outer ring."""
    xs = [p[0] for p in geom["coordinates"][0]]
    ys = [p[1] for p in geom["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


def stac_datetime(dt: datetime) -> str:
    """``dt`` as a STAC datetime string in UTC, whole seconds (``2024-07-18T15:48:21Z``)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stac_extensions(*names: str) -> list[str]:
    """Schema URLs of the named extensions (keys of :data:`STAC_EXTENSIONS`), in order."""
    return [STAC_EXTENSIONS[n] for n in names]


def proj_properties(style: str, epsg: int) -> tuple[dict[str, Any], str]:
    """Item properties and extension name for ``style`` "epsg" (``proj:epsg``, v1.1) or else ``proj:code`` (v2.0)."""
    if style == "epsg":
        return {"proj:epsg": epsg}, "proj1"
    return {"proj:code": f"EPSG:{epsg}"}, "proj2"


def cog_asset(href: str, title: str, *, transform: Any, shape: tuple[int, int], dtype: str, nodata: float | None,
              gsd: float, extra: Mapping[str, Any] | None = None, unit: str | None = None) -> dict[str, Any]:
    """A STAC asset for one single-band COG, with ``proj:shape``/``proj:transform`` and ``raster:bands``."""
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


def write_collections(root: Path, items: Sequence[Mapping[str, Any]], s: Settings) -> Iterable[Path]:
    """Write ``root/collections/<id>.json`` for each collection that has items; yields the paths."""
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
