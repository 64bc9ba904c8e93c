"""Building footprints -> the buildings label mask.

Two sources:

- :class:`SocrataFootprints`: NYC Open Data dataset ``5zhs-2jue`` (Building Footprints) through
  the Socrata SODA API as GeoJSON, paged with ``$limit``/``$offset`` in a stable ``$order=:id``,
  filtered server-side with ``within_box(the_geom, ...)``; every request has a timeout and
  bounded retries; an app token (``SOCRATA_APP_TOKEN``) raises the rate limit and is never logged.
- :class:`LocalFootprints`: a local GeoJSON, GPKG (or anything GDAL reads) or GeoParquet file in
  any CRS; it is reprojected to the chip grid's CRS.

:func:`rasterize_footprints` burns polygons onto a chip grid (pixel-centre rule): 1 building,
0 background, and -1 outside an optional labelled extent (for chips that reach beyond the area
the footprints cover, e.g. New Jersey across the Hudson).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import DatasetError, TrainingError
from .labels import IGNORE_INDEX

__all__ = [
    "SOCRATA_DATASET",
    "SOCRATA_DOMAIN",
    "FootprintSource",
    "FootprintsUnavailableError",
    "LocalFootprints",
    "SocrataFootprints",
    "open_footprints",
    "rasterize_footprints",
]

log = logging.getLogger(__name__)

SOCRATA_DOMAIN = "https://data.cityofnewyork.us"
SOCRATA_DATASET = "5zhs-2jue"
Bounds = tuple[float, float, float, float]


class FootprintsUnavailableError(TrainingError, OSError):
    """The footprint source could not be read (network failure after retries, bad response)."""


class FootprintSource(Protocol):
    """Anything that returns the footprints intersecting a box, in the box's CRS."""

    def query(self, bounds: Bounds, crs: str) -> Any:
        """A GeoDataFrame of (multi)polygons intersecting ``bounds`` (in ``crs``), in ``crs``."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-safe provenance of the source (no secrets)."""
        ...


def _polygons(gdf: Any) -> Any:
    """Keep polygonal geometries, repairing invalid ones."""
    import shapely

    if len(gdf) == 0:
        return gdf
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty].copy()
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        gdf.loc[invalid, "geometry"] = shapely.make_valid(gdf.geometry[invalid].values)
    return gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon", "GeometryCollection"])]


class LocalFootprints:
    """Footprints from a local file (GeoJSON, GPKG, shapefile, GeoParquet), reprojected on query.

    ``assume_crs`` is used only when the file declares no CRS (a GeoJSON without ``crs`` is
    read as EPSG:4326 by GDAL, per RFC 7946). The file is read once and queried through its
    spatial index.
    """

    def __init__(self, path: str | os.PathLike[str], *, assume_crs: str | None = None,
                 layer: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"footprints file {self.path} does not exist")
        self.assume_crs = assume_crs
        self.layer = layer
        self._gdf: Any = None
        self._by_crs: dict[str, Any] = {}

    def _load(self) -> Any:
        if self._gdf is None:
            import geopandas as gpd

            if self.path.suffix.lower() in (".parquet", ".geoparquet"):
                gdf = gpd.read_parquet(self.path)
            else:
                gdf = gpd.read_file(self.path, layer=self.layer) if self.layer else gpd.read_file(self.path)
            if gdf.crs is None:
                if self.assume_crs is None:
                    raise DatasetError(
                        f"footprints file {self.path} declares no CRS; pass its CRS (--footprints-crs EPSG:XXXX)"
                    )
                gdf = gdf.set_crs(self.assume_crs)
            self._gdf = _polygons(gdf[["geometry"]])
            log.info("read %d footprints from %s (%s)", len(self._gdf), self.path, self._gdf.crs)
        return self._gdf

    def query(self, bounds: Bounds, crs: str) -> Any:
        from shapely.geometry import box

        if crs not in self._by_crs:
            self._by_crs[crs] = self._load().to_crs(crs)
        gdf = self._by_crs[crs]
        if len(gdf) == 0:
            return gdf
        idx = gdf.sindex.query(box(*bounds), predicate="intersects")
        return gdf.iloc[np.sort(idx)]

    def describe(self) -> dict[str, Any]:
        gdf = self._load()
        return {"kind": "file", "name": self.path.name, "crs": gdf.crs.to_string(), "features": len(gdf)}


class SocrataFootprints:
    """NYC building footprints from a Socrata SODA endpoint, paged, with timeouts and retries."""

    def __init__(self, *, base_url: str = SOCRATA_DOMAIN, dataset: str = SOCRATA_DATASET,
                 geometry_column: str = "the_geom", page_size: int = 20000, timeout_s: float = 60.0,
                 retries: int = 3, backoff_s: float = 1.0, app_token: str | None = None) -> None:
        if page_size < 1:
            raise DatasetError(f"page_size must be >= 1, got {page_size}")
        self.base_url = base_url.rstrip("/")
        self.dataset = dataset
        self.geometry_column = geometry_column
        self.page_size = page_size
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.app_token = app_token if app_token is not None else os.environ.get("SOCRATA_APP_TOKEN")
        self.requests_made = 0
        self._session: Any = None

    @property
    def url(self) -> str:
        return f"{self.base_url}/resource/{self.dataset}.geojson"

    def _get(self, params: dict[str, str]) -> dict[str, Any]:
        import requests

        if self._session is None:
            self._session = requests.Session()
            if self.app_token:
                self._session.headers["X-App-Token"] = self.app_token
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            self.requests_made += 1
            try:
                resp = self._session.get(self.url, params=params, timeout=self.timeout_s)
                if resp.status_code == 429 or resp.status_code >= 500:
                    raise requests.HTTPError(f"HTTP {resp.status_code}", response=resp)
                if resp.status_code != 200:
                    raise FootprintsUnavailableError(
                        f"footprints request to {self.url} failed with HTTP {resp.status_code}: {resp.text[:200]}"
                    )
                data = resp.json()
                if not isinstance(data, dict) or "features" not in data:
                    raise FootprintsUnavailableError(f"footprints response from {self.url} is not a GeoJSON FeatureCollection")
                return data
            except (requests.ConnectionError, requests.Timeout, requests.HTTPError, ValueError) as exc:
                last = exc
                if attempt < self.retries:
                    delay = min(self.backoff_s * 2**attempt, 30.0)
                    log.warning("footprints request failed (%s); retry %d/%d in %.1f s", exc, attempt + 1,
                                self.retries, delay)
                    time.sleep(delay)
        raise FootprintsUnavailableError(
            f"footprints request to {self.url} failed after {self.retries + 1} attempts: {last}"
        ) from last

    def query(self, bounds: Bounds, crs: str) -> Any:
        import geopandas as gpd
        from pyproj import Transformer
        from shapely.geometry import box

        to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        lon0, lat0, lon1, lat1 = to_ll.transform_bounds(*bounds, densify_pts=21)
        where = f"within_box({self.geometry_column}, {lat1:.7f}, {lon0:.7f}, {lat0:.7f}, {lon1:.7f})"
        features: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self._get({"$where": where, "$order": ":id", "$limit": str(self.page_size),
                              "$offset": str(offset)})["features"]
            features.extend(f for f in page if f.get("geometry"))
            if len(page) < self.page_size:
                break
            offset += len(page)
        if features:
            gdf = gpd.GeoDataFrame.from_features(features, crs="EPSG:4326")[["geometry"]]
        else:
            gdf = gpd.GeoDataFrame({"geometry": []}, geometry="geometry", crs="EPSG:4326")
        gdf = _polygons(gdf).to_crs(crs)
        return gdf[gdf.intersects(box(*bounds))] if len(gdf) else gdf

    def describe(self) -> dict[str, Any]:
        return {"kind": "socrata", "url": self.url, "dataset": self.dataset, "geometry_column": self.geometry_column}


def open_footprints(spec: str, *, assume_crs: str | None = None, **socrata: Any) -> FootprintSource:
    """``socrata`` (NYC Open Data 5zhs-2jue), an ``http(s)://`` Socrata domain, or a local file path."""
    if spec == "socrata":
        return SocrataFootprints(**socrata)
    if spec.startswith(("http://", "https://")):
        return SocrataFootprints(base_url=spec, **socrata)
    return LocalFootprints(spec, assume_crs=assume_crs)


def rasterize_footprints(gdf: Any, *, shape: tuple[int, int], transform: Sequence[float],
                         extent: Any = None) -> np.ndarray:
    """Burn footprints onto a grid: int8 (H, W), 1 building, 0 background, -1 outside ``extent``.

    ``gdf`` must already be in the grid's CRS; ``extent`` (a shapely geometry in the grid's CRS,
    optional) bounds the area where the footprints are complete.
    """
    from affine import Affine
    from rasterio.features import geometry_mask, rasterize

    aff = Affine(*list(transform)[:6])
    out = np.zeros(shape, dtype=np.int8)
    geoms = [g for g in getattr(gdf, "geometry", []) if g is not None and not g.is_empty]
    if geoms:
        burned = rasterize(((g, 1) for g in geoms), out_shape=shape, transform=aff, fill=0, dtype="uint8")
        out[burned == 1] = 1
    if extent is not None:
        outside = geometry_mask([extent], out_shape=shape, transform=aff, invert=False)
        out[outside] = IGNORE_INDEX
    return out
