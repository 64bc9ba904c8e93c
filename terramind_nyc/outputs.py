"""Writers over plain arrays on a :class:`~terramind_nyc.grid.ChipGrid`: GeoTIFF, GeoJSON, PNG quicklook.

Nothing here knows a :class:`~terramind_nyc.result.Result`: each writer takes arrays, the
grid they lie on and the labels to print, so a map of many results (or any raster on the
grid) is written the same way. :class:`~terramind_nyc.result.Result` assembles the layers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from .grid import ChipGrid

__all__ = ["MaskLayer", "polygons_geojson", "quicklook", "write_geotiff"]

log = logging.getLogger(__name__)


def _check_shape(grid: ChipGrid, name: str, array: np.ndarray) -> None:
    if tuple(array.shape[-2:]) != tuple(grid.shape):
        raise InvalidInputError(f"layer {name!r} has shape {array.shape}; the grid is {grid.shape}")


def write_geotiff(path: Path, grid: ChipGrid, layers: Sequence[tuple[str, np.ndarray]], *,
                  valid: np.ndarray | None = None, tags: Mapping[str, str] | None = None) -> Path:
    """Float32 GeoTIFF of ``layers`` (``(name, (H, W) array)`` pairs on ``grid``), one described band each.

    Tiled (256 px) and deflate-compressed, NaN where ``valid`` is False; windows of 512 px and
    more get overviews. ``tags`` are written as dataset tags.
    """
    import rasterio

    if not layers:
        raise InvalidInputError("write_geotiff needs at least one layer")
    for name, a in layers:
        _check_shape(grid, name, np.asarray(a))
    ok = np.ones(grid.shape, bool) if valid is None else np.asarray(valid, bool)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.stack([np.where(ok, a, np.nan).astype(np.float32) for _, a in layers])
    profile: dict[str, Any] = dict(
        driver="GTiff", width=grid.width, height=grid.height, count=data.shape[0], dtype="float32",
        crs=grid.crs, transform=grid.transform, nodata=float("nan"), compress="deflate", predictor=3,
    )
    if grid.width >= 256 and grid.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, (name, _) in enumerate(layers, start=1):
            dst.set_band_description(i, name)
        if tags:
            dst.update_tags(**dict(tags))
        if min(grid.width, grid.height) >= 512:
            dst.build_overviews([2, 4], rasterio.enums.Resampling.average)
    return path


@dataclass(frozen=True)
class MaskLayer:
    """One class of polygons to trace: where ``mask`` is True on the grid."""

    layer: str
    """Layer name written to each feature (``buildings``, ``lulc``, ...)."""
    name: str
    """Class name written to each feature."""
    color: str
    """Display colour ``#rrggbb`` written to each feature."""
    mask: np.ndarray
    """bool (H, W) on the grid."""


def _polygons(mask: np.ndarray, transform: Any) -> list[Any]:
    from rasterio import features
    from shapely.geometry import shape

    return [shape(geom) for geom, val in features.shapes(mask.astype(np.uint8), mask=mask, transform=transform)
            if val == 1]


def polygons_geojson(grid: ChipGrid, layers: Sequence[MaskLayer], *, simplify_m: float = 10.0,
                     properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """FeatureCollection in EPSG:4326: one feature per polygon of each layer's mask.

    Polygons are traced on the grid, simplified by ``simplify_m`` metres in the grid CRS, then
    reprojected. Feature properties: ``layer``, ``class``, ``color``, ``area_m2``; the
    collection carries ``properties``.
    """
    from pyproj import Transformer
    from shapely.geometry import mapping
    from shapely.ops import transform as shp_transform

    if simplify_m < 0:
        raise InvalidInputError(f"simplify_m must be >= 0, got {simplify_m}")
    to4326 = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform
    features: list[dict[str, Any]] = []
    for lay in layers:
        _check_shape(grid, lay.name, lay.mask)
        for poly in _polygons(np.asarray(lay.mask, bool), grid.transform):
            simple = poly.simplify(simplify_m, preserve_topology=True) if simplify_m else poly
            if simple.is_empty:
                continue
            features.append({
                "type": "Feature",
                "geometry": mapping(shp_transform(to4326, simple)),
                "properties": {"layer": lay.layer, "class": lay.name, "color": lay.color,
                               "area_m2": round(poly.area, 1)},
            })
    return {"type": "FeatureCollection", "features": features, "properties": dict(properties or {})}


def quicklook(path: Path, grid: ChipGrid, *, rgb: np.ndarray | None, lulc_map: np.ndarray,
              class_names: Sequence[str], class_colors: Sequence[str], class_fractions: Mapping[str, float],
              building_probability: np.ndarray, building_density: float | None,
              summary_area: np.ndarray | None = None, title: str = "") -> Path:
    """Three-panel PNG: true colour, land cover with legend, building probability; summary area outlined.

    ``lulc_map`` is uint8 class indices with 255 for invalid pixels; ``class_fractions`` (0..1)
    label the legend; ``building_density`` (0..1) titles the building panel.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    _check_shape(grid, "lulc_map", lulc_map)
    _check_shape(grid, "building_probability", building_probability)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extent = (grid.bounds[0], grid.bounds[2], grid.bounds[1], grid.bounds[3])
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), constrained_layout=True)
    if rgb is not None:
        axes[0].imshow(np.moveaxis(rgb, 0, -1), extent=extent)
    else:
        axes[0].text(0.5, 0.5, "no true-colour bands", ha="center", transform=axes[0].transAxes)
    axes[0].set_title("Sentinel-2 true colour")
    cmap = ListedColormap(list(class_colors) or ["#888888"])
    axes[1].imshow(np.ma.masked_equal(lulc_map, 255), cmap=cmap, vmin=-0.5, vmax=len(class_names) - 0.5,
                   extent=extent, interpolation="nearest")
    axes[1].legend(handles=[Patch(color=c, label=f"{n} {100 * class_fractions.get(n, 0) or 0:.0f}%")
                            for n, c in zip(class_names, class_colors)],
                   loc="lower left", fontsize=8, framealpha=0.8)
    axes[1].set_title("land cover")
    im = axes[2].imshow(building_probability, cmap="magma", vmin=0, vmax=1, extent=extent)
    fig.colorbar(im, ax=axes[2], shrink=0.8, label="building probability")
    axes[2].set_title(f"buildings: {100 * (building_density or 0):.1f}% of area")
    if summary_area is not None and not summary_area.all():
        for ax in axes:
            ax.contour(summary_area.astype(float), levels=[0.5], colors="cyan", linewidths=1.2,
                       extent=(extent[0], extent[1], extent[3], extent[2]))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
