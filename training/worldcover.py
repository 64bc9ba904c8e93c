"""ESA WorldCover 2021 v200 onto a chip grid -> the land-cover label mask.

The items come from the same STAC catalog as the imagery (Planetary Computer collection
``esa-worldcover``, asset ``map``: uint8 class codes in EPSG:4326 at 1/12000 degree, nodata 0),
found through terramind_nyc's catalog (same provider, signing, timeouts and retries). Each
covering item is warped onto the chip grid with *mode* resampling (the most frequent code of
the source pixels under a 10 m chip pixel; categorical data must not be interpolated), items are
mosaicked in the order found (first valid code wins), and the codes are mapped to class indices
by :func:`training.labels.map_worldcover` (nodata -> -1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from terramind_nyc.grid import ChipGrid

from .errors import TrainingError
from .labels import WORLDCOVER_NODATA, map_worldcover

__all__ = [
    "WORLDCOVER_ASSET",
    "WORLDCOVER_COLLECTION",
    "WorldCoverLabels",
    "WorldCoverMissingError",
    "WorldCoverReadError",
    "read_worldcover_codes",
    "worldcover_labels",
]

log = logging.getLogger(__name__)

WORLDCOVER_COLLECTION = "esa-worldcover"
WORLDCOVER_ASSET = "map"


class WorldCoverMissingError(TrainingError, LookupError):
    """No WorldCover item covers the chip (or it has no ``map`` asset)."""


class WorldCoverReadError(TrainingError, OSError):
    """A WorldCover raster could not be read (HTTP failure, truncated file); worth a retry later."""


@dataclass(frozen=True)
class WorldCoverLabels:
    """The land-cover mask of one chip and where it came from."""

    mask: np.ndarray
    """int8 (H, W) class index, -1 where WorldCover has no data."""
    item_ids: tuple[str, ...]
    """WorldCover item ids that were read."""
    nodata_fraction: float
    """Share of chip pixels without a WorldCover code (0..1)."""
    codes: Mapping[int, int] = field(default_factory=dict)
    """WorldCover code -> pixel count on the chip."""


def read_worldcover_codes(hrefs: Sequence[str], grid: ChipGrid, *, gdal_env: Mapping[str, Any] | None = None) -> np.ndarray:
    """Warp WorldCover ``map`` rasters onto ``grid`` (mode resampling) and mosaic them; uint8 codes, 0 = nodata."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
           "GDAL_HTTP_TIMEOUT": "60", "GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "1",
           **dict(gdal_env or {})}
    from rasterio.errors import RasterioError

    out = np.zeros(grid.shape, dtype=np.uint8)
    with rasterio.Env(**env):
        for href in hrefs:
            try:
                with rasterio.open(href) as src, WarpedVRT(
                    src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                    resampling=Resampling.mode, src_nodata=WORLDCOVER_NODATA, nodata=WORLDCOVER_NODATA,
                ) as vrt:
                    codes = vrt.read(1)
            except RasterioError as exc:
                raise WorldCoverReadError(
                    f"reading WorldCover {href.split('?')[0]} failed: {str(exc).split('?')[0]}"
                ) from None
            fill = (out == WORLDCOVER_NODATA) & (codes != WORLDCOVER_NODATA)
            out[fill] = codes[fill]
    return out


def _href(item: Any, asset: str) -> str | None:
    """The href of ``asset`` of a pystac Item or an item dict (None when absent)."""
    assets = getattr(item, "assets", None)
    if assets is None and isinstance(item, Mapping):
        assets = item.get("assets") or {}
    a = (assets or {}).get(asset)
    if a is None:
        return None
    return str(a["href"] if isinstance(a, Mapping) else a.href)


def _id(item: Any) -> str:
    return str(item.get("id") if isinstance(item, Mapping) else getattr(item, "id", ""))


def worldcover_labels(grid: ChipGrid, class_names: Sequence[str], *, items: Sequence[Any],
                      sign: Callable[[str], str] | None = None, asset: str = WORLDCOVER_ASSET,
                      gdal_env: Mapping[str, Any] | None = None) -> WorldCoverLabels:
    """The land-cover mask of ``grid`` from the WorldCover STAC ``items`` (pystac Items or dicts) covering it.

    ``sign`` turns an asset href into a readable URL when the items are not signed already; the
    signed URL is never logged or returned.
    """
    usable = [(it, h) for it in items if (h := _href(it, asset)) is not None]
    if not usable:
        raise WorldCoverMissingError(
            f"no {WORLDCOVER_COLLECTION} item with a {asset!r} asset covers the chip "
            f"{tuple(round(v, 4) for v in grid.bounds_4326)}"
        )
    hrefs = [h for _, h in usable]
    if sign is not None:
        hrefs = [sign(h) for h in hrefs]
    codes = read_worldcover_codes(hrefs, grid, gdal_env=gdal_env)
    nodata = float((codes == WORLDCOVER_NODATA).mean())
    values, counts = np.unique(codes, return_counts=True)
    return WorldCoverLabels(
        mask=map_worldcover(codes, class_names), item_ids=tuple(_id(it) for it, _ in usable),
        nodata_fraction=nodata, codes={int(v): int(c) for v, c in zip(values, counts, strict=True)},
    )
