"""Where dataset chips go: centres tiling a bbox, centres from a points file, stable chip ids."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from terramind_nyc.grid import ChipGrid
from terramind_nyc.settings import Settings

from .errors import DatasetError

__all__ = ["chip_id", "read_points", "tile_centres"]


def tile_centres(bbox: Sequence[float], *, settings: Settings, size_px: int = 224) -> list[tuple[float, float]]:
    """Centres of non-overlapping chips tiling ``bbox`` (minlon, minlat, maxlon, maxlat) on the chip lattice."""
    from pyproj import Transformer

    if len(bbox) != 4 or not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
        raise DatasetError(f"bbox must be minlon,minlat,maxlon,maxlat with min < max, got {list(bbox)}")
    fwd = Transformer.from_crs("EPSG:4326", settings.crs, always_xy=True)
    inv = Transformer.from_crs(settings.crs, "EPSG:4326", always_xy=True)
    x0, y0, x1, y1 = fwd.transform_bounds(bbox[0], bbox[1], bbox[2], bbox[3], densify_pts=21)
    side = size_px * settings.resolution_m
    x0 = math.floor(x0 / side) * side
    y0 = math.floor(y0 / side) * side
    out = []
    y = y0
    while y < y1:
        x = x0
        while x < x1:
            lon, lat = inv.transform(x + side / 2, y + side / 2)
            if bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]:
                out.append((float(lat), float(lon)))
            x += side
        y += side
    return out


def read_points(path: str | Path) -> list[tuple[float, float]]:
    """Chip centres from a CSV with ``lat``/``lon`` columns or a GeoJSON of points."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"points file {p} does not exist")
    if p.suffix.lower() in (".geojson", ".json"):
        data = json.loads(p.read_text())
        feats = data["features"] if data.get("type") == "FeatureCollection" else [data]
        pts = []
        for f in feats:
            g = f.get("geometry") or {}
            if g.get("type") != "Point":
                raise DatasetError(f"{p}: only Point features are chip centres, got {g.get('type')}")
            lon, lat = g["coordinates"][:2]
            pts.append((float(lat), float(lon)))
        return pts
    with p.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"lat", "lon"} <= set(rows[0]):
        raise DatasetError(f"{p}: a CSV of chip centres needs 'lat' and 'lon' columns")
    return [(float(r["lat"]), float(r["lon"])) for r in rows]


def chip_id(grid: ChipGrid) -> str:
    """Stable id of a chip: its upper-left corner in metres (``e<minx>_n<maxy>``)."""
    return f"e{round(grid.bounds[0])}_n{round(grid.bounds[3])}"
