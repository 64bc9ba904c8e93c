"""File and vector outputs of a :class:`~terramind_nyc.api.Result`: GeoTIFF, GeoJSON, PNG quicklook."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from .api import Result

__all__ = ["write_geotiff", "to_geojson", "quicklook"]

log = logging.getLogger(__name__)


def write_geotiff(result: Result, path: Path) -> Path:
    """Float32 GeoTIFF, tiled and deflate-compressed, NaN where input was invalid.

    Bands (with descriptions): ``lulc_class`` (class index), ``building`` (0/1 decision),
    ``p_<class>`` for every land-cover class, ``p_building``.
    """
    import rasterio

    if not result.probabilities:
        raise InvalidInputError("this result carries no probability rasters (was it built from to_dict()?)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    valid = result.valid if result.valid is not None else np.ones(result.grid.shape, bool)
    layers: list[tuple[str, np.ndarray]] = [
        ("lulc_class", np.argmax(result.probabilities["lulc"], axis=0).astype(np.float32)),
        ("building", result.building_mask.astype(np.float32)),
    ]
    layers += [(f"p_{name}", result.probabilities["lulc"][i]) for i, name in enumerate(result.class_names)]
    layers.append(("p_building", result.building_probability))
    data = np.stack([np.where(valid, a, np.nan).astype(np.float32) for _, a in layers])
    g = result.grid
    profile: dict[str, Any] = dict(
        driver="GTiff", width=g.width, height=g.height, count=data.shape[0], dtype="float32",
        crs=g.crs, transform=g.transform, nodata=float("nan"), compress="deflate", predictor=3,
    )
    if g.width >= 256 and g.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, (name, _) in enumerate(layers, start=1):
            dst.set_band_description(i, name)
        dst.update_tags(
            checkpoint=str(result.provenance.checkpoint.get("id")),
            checkpoint_sha256=str(result.provenance.checkpoint.get("sha256")),
            s2_items=",".join(result.provenance.imagery.get("S2L2A", {}).get("item_ids", []) or []),
            class_names=",".join(result.class_names),
            building_threshold=str(result.building_threshold),
        )
        if min(g.width, g.height) >= 512:
            dst.build_overviews([2, 4], rasterio.enums.Resampling.average)
    return path


def _polygons(mask: np.ndarray, transform: Any) -> list[Any]:
    from rasterio import features
    from shapely.geometry import shape

    return [shape(geom) for geom, val in features.shapes(mask.astype(np.uint8), mask=mask, transform=transform)
            if val == 1]


def to_geojson(result: Result, *, simplify_m: float = 10.0) -> dict[str, Any]:
    """FeatureCollection in EPSG:4326: one feature per building polygon and per land-cover patch.

    Polygons are traced on the grid, simplified by ``simplify_m`` metres in the grid CRS, then
    reprojected. Properties: ``layer`` (``buildings`` | ``lulc``), ``class``, ``color``, ``area_m2``.
    """
    from pyproj import Transformer
    from shapely.geometry import mapping
    from shapely.ops import transform as shp_transform

    if not result.probabilities:
        raise InvalidInputError("this result carries no probability rasters")
    if simplify_m < 0:
        raise InvalidInputError(f"simplify_m must be >= 0, got {simplify_m}")
    to4326 = Transformer.from_crs(result.grid.crs, "EPSG:4326", always_xy=True).transform
    valid = result.valid if result.valid is not None else np.ones(result.grid.shape, bool)
    features: list[dict[str, Any]] = []

    def add(layer: str, name: str, color: str, mask: np.ndarray) -> None:
        for poly in _polygons(mask, result.grid.transform):
            simple = poly.simplify(simplify_m, preserve_topology=True) if simplify_m else poly
            if simple.is_empty:
                continue
            features.append({
                "type": "Feature",
                "geometry": mapping(shp_transform(to4326, simple)),
                "properties": {"layer": layer, "class": name, "color": color, "area_m2": round(poly.area, 1)},
            })

    add("buildings", "building", "#e31a1c", result.building_mask & valid)
    lulc = np.argmax(result.probabilities["lulc"], axis=0)
    for i, name in enumerate(result.class_names):
        color = result.class_colors[i] if i < len(result.class_colors) else "#888888"
        add("lulc", name, color, (lulc == i) & valid)
    return {"type": "FeatureCollection", "features": features,
            "properties": {"checkpoint": result.provenance.checkpoint.get("id"),
                           "s2_acquired": (result.provenance.imagery.get("S2L2A", {}).get("datetimes") or [None])[0]}}


def quicklook(result: Result, path: Path) -> Path:
    """Three-panel PNG: S2 true colour, land cover with legend, building probability; summary area outlined."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if not result.probabilities:
        raise InvalidInputError("this result carries no probability rasters")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = result.grid
    extent = (g.bounds[0], g.bounds[2], g.bounds[1], g.bounds[3])
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), constrained_layout=True)
    if result.rgb is not None:
        axes[0].imshow(np.moveaxis(result.rgb, 0, -1), extent=extent)
    else:
        axes[0].text(0.5, 0.5, "no true-colour bands", ha="center", transform=axes[0].transAxes)
    axes[0].set_title("Sentinel-2 true colour")
    cmap = ListedColormap(list(result.class_colors) or ["#888888"])
    lulc = np.ma.masked_equal(result.lulc_map, 255)
    axes[1].imshow(lulc, cmap=cmap, vmin=-0.5, vmax=len(result.class_names) - 0.5, extent=extent,
                   interpolation="nearest")
    axes[1].legend(handles=[Patch(color=c, label=f"{n} {100 * result.lulc_fractions.get(n, 0) or 0:.0f}%")
                            for n, c in zip(result.class_names, result.class_colors)],
                   loc="lower left", fontsize=8, framealpha=0.8)
    axes[1].set_title("land cover")
    im = axes[2].imshow(result.building_probability, cmap="magma", vmin=0, vmax=1, extent=extent)
    fig.colorbar(im, ax=axes[2], shrink=0.8, label="building probability")
    axes[2].set_title(f"buildings: {100 * (result.building_density or 0):.1f}% of area")
    if result.summary_area is not None and not result.summary_area.all():
        for ax in axes:
            ax.contour(result.summary_area.astype(float), levels=[0.5], colors="cyan", linewidths=1.2,
                       extent=(extent[0], extent[1], extent[3], extent[2]))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    s2 = result.provenance.imagery.get("S2L2A", {})
    date = ((s2.get("datetimes") or ["?"])[0] or "?")[:10]
    ck = result.provenance.checkpoint
    fig.suptitle(f"({result.lat:.4f}, {result.lon:.4f})  S2 {date}  model {ck.get('name', ck.get('id'))} "
                 f"{ck.get('version', '')}")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
