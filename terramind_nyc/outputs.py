"""Writers over plain arrays on a :class:`~terramind_nyc.grid.ChipGrid`: GeoTIFF, GeoJSON, PNG quicklook.

Nothing here knows a :class:`~terramind_nyc.result.Result`: each writer takes arrays, the
grid they lie on and the labels to print, so a map of many results (or any raster on the
grid) is written the same way. :class:`~terramind_nyc.result.Result` assembles the layers.

Every file is written through :mod:`terramind_nyc.atomic`: a failed or interrupted write
leaves the file that was there before, byte for byte, and no temporary file. Each writer
returns the path it wrote, which is the path it was given. Bad arguments (a folder as the
path, arrays off the grid, a negative or non-finite tolerance) are InvalidInputError before
anything is written.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import atomic_path, atomic_write_text, destination
from .errors import InvalidInputError
from .jsonsafe import json_safe

if TYPE_CHECKING:  # pragma: no cover
    from .grid import ChipGrid

__all__ = ["MaskLayer", "polygons_geojson", "quicklook", "write_geojson", "write_geotiff"]

log = logging.getLogger(__name__)


def _check_shape(grid: ChipGrid, name: str, array: np.ndarray, *, bands: int | None = None) -> np.ndarray:
    """``array`` as an ndarray of numbers on the grid: (H, W), or (bands, H, W) when ``bands`` is given."""
    a = np.asarray(array)
    want = tuple(grid.shape) if bands is None else (bands, *grid.shape)
    if a.shape != want:
        raise InvalidInputError(f"layer {name!r} has shape {a.shape}; it must be {want} on the grid")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise InvalidInputError(f"layer {name!r} must hold numbers, got dtype {a.dtype}")
    return a


def _simplify_tolerance(simplify_m: Any) -> float:
    """``simplify_m`` as a float, or InvalidInputError unless it is a finite number >= 0."""
    if isinstance(simplify_m, bool) or not isinstance(simplify_m, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"simplify_m must be a number of metres, got {simplify_m!r}")
    value = float(simplify_m)
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"simplify_m must be a finite number of metres >= 0 (0: no simplification), "
                                f"got {simplify_m!r}")
    return value


def write_geotiff(path: str | os.PathLike[str], grid: ChipGrid, layers: Sequence[tuple[str, np.ndarray]], *,
                  valid: np.ndarray | None = None, tags: Mapping[str, Any] | None = None) -> Path:
    """Float32 GeoTIFF of ``layers`` (``(name, (H, W) array)`` pairs on ``grid``), one described band each.

    Tiled (256 px) and deflate-compressed, NaN where ``valid`` is False; windows of 512 px and
    more get overviews. ``tags`` are written as dataset tags (values as text). Written
    atomically: a failure leaves any earlier file at ``path`` as it was.
    """
    import rasterio

    path = destination(path)
    if not layers:
        raise InvalidInputError("write_geotiff needs at least one layer")
    arrays = [_check_shape(grid, str(name), a) for name, a in layers]
    ok = np.ones(grid.shape, bool) if valid is None else _check_shape(grid, "valid", valid).astype(bool)
    data = np.stack([np.where(ok, a, np.nan).astype(np.float32) for a in arrays])
    profile: dict[str, Any] = dict(
        driver="GTiff", width=grid.width, height=grid.height, count=data.shape[0], dtype="float32",
        crs=grid.crs, transform=grid.transform, nodata=float("nan"), compress="deflate", predictor=3,
    )
    if grid.width >= 256 and grid.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        for i, (name, _) in enumerate(layers, start=1):
            dst.set_band_description(i, str(name))
        if tags:
            dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
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
    label: str | None = None
    """Display label written to each feature (default: ``name``)."""
    index: int | None = None
    """Class index written to each feature (the model's output channel), or None."""


def _polygons(mask: np.ndarray, transform: Any) -> list[Any]:
    from rasterio import features
    from shapely.geometry import shape

    return [shape(geom) for geom, val in features.shapes(mask.astype(np.uint8), mask=mask, transform=transform)
            if val == 1]


def polygons_geojson(grid: ChipGrid, layers: Sequence[MaskLayer], *, simplify_m: float = 10.0,
                     properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """FeatureCollection in EPSG:4326: one feature per polygon of each layer's mask.

    Polygons are traced on the grid, simplified by ``simplify_m`` metres in the grid CRS (a
    finite number >= 0; 0 keeps the pixel outlines), then reprojected. Feature properties:
    ``layer``, ``class``, ``class_idx``, ``class_label``, ``color`` and ``fill_color`` (the same colour,
    the key map styles read), ``area_m2``; the collection carries ``properties``.
    """
    from pyproj import Transformer
    from shapely.geometry import mapping
    from shapely.ops import transform as shp_transform

    simplify_m = _simplify_tolerance(simplify_m)
    masks = [_check_shape(grid, lay.name, lay.mask).astype(bool) for lay in layers]
    to4326 = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform
    features: list[dict[str, Any]] = []
    for lay, mask in zip(layers, masks):
        for poly in _polygons(mask, grid.transform):
            simple = poly.simplify(simplify_m, preserve_topology=True) if simplify_m else poly
            if simple.is_empty:
                continue
            features.append({
                "type": "Feature",
                "geometry": mapping(shp_transform(to4326, simple)),
                "properties": {"layer": lay.layer, "class": lay.name, "class_idx": lay.index,
                               "class_label": lay.name if lay.label is None else lay.label,
                               "color": lay.color, "fill_color": lay.color, "area_m2": round(poly.area, 1)},
            })
    return {"type": "FeatureCollection", "features": features, "properties": dict(properties or {})}


def write_geojson(path: str | os.PathLike[str], collection: Mapping[str, Any]) -> Path:
    """Write a GeoJSON object (e.g. from :func:`polygons_geojson`) to ``path`` atomically; return ``path``.

    Values go through :func:`~terramind_nyc.jsonsafe.json_safe` (NaN becomes null), so the file
    is strict JSON.
    """
    path = destination(path)
    if not isinstance(collection, Mapping):
        raise InvalidInputError(f"write_geojson needs a GeoJSON object (a mapping), got {type(collection).__name__}")
    return atomic_write_text(path, json.dumps(json_safe(collection), allow_nan=False))


def quicklook(path: str | os.PathLike[str], grid: ChipGrid, *, rgb: np.ndarray | None, lulc_map: np.ndarray,
              class_names: Sequence[str], class_colors: Sequence[str], class_fractions: Mapping[str, float],
              building_probability: np.ndarray, building_density: float | None,
              summary_area: np.ndarray | None = None, title: str = "") -> Path:
    """Three-panel PNG: true colour, land cover with legend, building probability; summary area outlined.

    ``lulc_map`` is uint8 class indices with 255 for invalid pixels; ``rgb`` uint8 (3, H, W);
    ``class_fractions`` (0..1) label the legend; ``building_density`` (0..1) titles the
    building panel. The file is written at exactly ``path``, atomically, and ``path`` is
    returned: a PNG unless the suffix names another format matplotlib writes (``.jpg``,
    ``.pdf``, ``.svg``, ...); a path without a suffix still gets a PNG under that very name.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = destination(path)
    lulc_map = _check_shape(grid, "lulc_map", lulc_map)
    building_probability = _check_shape(grid, "building_probability", building_probability)
    if rgb is not None:
        rgb = _check_shape(grid, "rgb", rgb, bands=3)
    if summary_area is not None:
        summary_area = _check_shape(grid, "summary_area", summary_area).astype(bool)
    fmt = path.suffix[1:].lower()
    if fmt not in FigureCanvasAgg.get_supported_filetypes() or fmt in ("raw", "rgba"):
        fmt = "png"
    extent = (grid.bounds[0], grid.bounds[2], grid.bounds[1], grid.bounds[3])
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), constrained_layout=True)
    try:
        _draw(fig, axes, extent, rgb=rgb, lulc_map=lulc_map, class_names=class_names, class_colors=class_colors,
              class_fractions=class_fractions, building_probability=building_probability,
              building_density=building_density, summary_area=summary_area, title=title)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format=fmt)
    finally:
        plt.close(fig)
    return path


def _draw(fig: Any, axes: Any, extent: tuple[float, float, float, float], *, rgb: np.ndarray | None,
          lulc_map: np.ndarray, class_names: Sequence[str], class_colors: Sequence[str],
          class_fractions: Mapping[str, float], building_probability: np.ndarray, building_density: float | None,
          summary_area: np.ndarray | None, title: str) -> None:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

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
