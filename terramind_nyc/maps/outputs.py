"""What a finished map writes beside its store: GeoTIFF mosaics, a quicklook and an HTML page.

- ``--format cog``: per date window, ``map_lulc_<date>.tif`` (class index, colour table),
  ``map_buildings_<date>.tif`` (1 building, 0 not; 255 no data) and ``map_prob_<head>_<date>.tif``
  (the stored probabilities, one band per class): Cloud-Optimised GeoTIFFs with overviews,
  streamed from the store a block at a time (:func:`~.cog.write_cog`).
- ``quicklook.png``: the newest land-cover map with buildings on top (:func:`~.render.write_quicklook`).
- ``map.html``: a self-contained page (no network): land cover and buildings as toggleable
  overlays, the legend from the checkpoint's colours, and a click that shows a cell's figures
  and scene date (:func:`~.render.write_html`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .store import GEOTIFF, NODATA, PAGE, QUICKLOOK, MapStore

__all__ = ["BUILDING_LAYER_COLOR", "cell_figures", "write_outputs"]

log = logging.getLogger(__name__)

#: Building colour when the checkpoint gives none for class 1 of its ``buildings`` head.
BUILDING_LAYER_COLOR = "#d62728"
#: Cells a side of the HTML page's click grid.
CELLS = 64


def _building_color(store: MapStore) -> str:
    colors = store.layout.heads.get("buildings", {}).get("colors") or []
    return str(colors[1]) if len(colors) > 1 else BUILDING_LAYER_COLOR


def _hex_rgba(color: str) -> tuple[int, int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), 255


def cell_figures(store: MapStore, t: int, lulc: np.ndarray, buildings: np.ndarray, cells: int = CELLS) -> dict[str, Any]:
    """The click grid of the HTML page: per cell, its centre, land-cover shares, buildings share,
    and the scene and window behind it (None where the cell has no valid pixel)."""
    from pyproj import Transformer

    lay = store.layout
    h, w = lulc.shape
    rows, cols = min(cells, h), min(cells, w)
    labels = lay.heads.get("lulc", {}).get("labels") or []
    recs = store.records()
    tr = Transformer.from_crs(lay.grid.crs, "EPSG:4326", always_xy=True)
    data: list[dict[str, Any] | None] = []
    for ci in range(rows):
        r0, r1 = ci * h // rows, (ci + 1) * h // rows
        for cj in range(cols):
            c0, c1 = cj * w // cols, (cj + 1) * w // cols
            lc = lulc[r0:r1, c0:c1]
            ok = lc != NODATA
            n = int(ok.sum())
            if n == 0:
                data.append(None)
                continue
            counts = np.bincount(lc[ok], minlength=len(labels))
            rec = recs.get((t, (r0 + r1) // 2 // lay.window_px, (c0 + c1) // 2 // lay.window_px), {})
            s2 = rec.get("chip", {}).get("provenance", {}).get("S2L2A", {})
            x = lay.grid.transform.c + lay.grid.resolution * (c0 + c1) / 2
            y = lay.grid.transform.f - lay.grid.resolution * (r0 + r1) / 2
            lon, lat = tr.transform(x, y)
            pct = {str(labels[k]): round(100.0 * float(counts[k]) / n, 1) for k in range(len(labels)) if counts[k]}
            data.append({"lat": round(lat, 5), "lon": round(lon, 5),
                         "dominant": max(pct, key=lambda k: pct[k]) if pct else None, "lulc_pct": pct,
                         "buildings_pct": round(100.0 * float((buildings[r0:r1, c0:c1][ok] == 1).sum()) / n, 1),
                         "s2_date": (s2.get("datetimes") or [None])[0], "s2_scene": (s2.get("item_ids") or [None])[0],
                         "window": f"r{rec.get('window', ['?', '?'])[0]} c{rec.get('window', ['?', '?'])[1]}"})
    return {"rows": rows, "cols": cols, "data": data}


def write_outputs(store: MapStore, *, formats: tuple[str, ...], render: bool, progress: bool) -> list[Path]:
    """Write the files above for ``store``; returns their paths."""
    lay = store.layout
    g = store.arrays()
    files: list[Path] = []
    if "cog" in formats:
        files += _write_cogs(store, g, progress=progress)
    if render:
        from .render import quicklook_rgba, write_html, write_quicklook

        t = len(lay.times) - 1
        lulc = np.asarray(g["lulc"][t])
        bld = np.asarray(g["buildings"][t])
        colors = lay.heads.get("lulc", {}).get("colors") or []
        labels = lay.heads.get("lulc", {}).get("labels") or []
        bcolor = _building_color(store)
        files.append(write_quicklook(store.path / QUICKLOOK, lulc, bld, colors=colors, building_color=bcolor))
        only_b = np.where(bld == 1, 0, NODATA).astype(np.uint8)
        layers = [("Land cover", quicklook_rgba(lulc, None, colors=colors)),
                  ("Buildings", quicklook_rgba(only_b, None, colors=[bcolor]))]
        blabels = lay.heads.get("buildings", {}).get("labels") or ["", "Buildings"]
        legend = [*zip(labels, colors, strict=False), (str(blabels[1]), bcolor)]
        start, end = lay.times[t]
        files.append(write_html(store.path / PAGE, title=f"terramind_nyc map: {lay.aoi.get('name', '')} "
                                f"{start[:10]}..{end[:10]}", bounds_4326=lay.grid.bounds_4326, layers=layers,
                                legend=legend, cells=cell_figures(store, t, lulc, bld)))
    return files


def _updater(bar: Any) -> Callable[[int], None]:
    def update(n: int) -> None:
        bar.update(n - bar.n)
    return update


def _write_cogs(store: MapStore, g: Any, *, progress: bool) -> list[Path]:
    from tqdm.auto import tqdm

    from .cog import write_cog

    lay = store.layout
    h, w = lay.grid.shape
    out: list[Path] = []
    colors = lay.heads.get("lulc", {}).get("colors") or []
    cmap = {k: _hex_rgba(c) for k, c in enumerate(colors)}
    for t, (start, _) in enumerate(lay.times):
        date = start[:10]
        jobs: list[tuple[str, Any, int, str, Any, str, Any, list[str]]] = [
            (GEOTIFF.format(layer="lulc", date=date), g["lulc"], 1, "uint8", NODATA, "nearest", cmap, ["lulc"]),
            (GEOTIFF.format(layer="buildings", date=date), g["buildings"], 1, "uint8", NODATA, "nearest", None,
             ["buildings"]),
        ]
        for head, spec in lay.heads.items():
            # GeoTIFF has no float16: such probabilities are written as float32
            dtype = "float32" if lay.prob_dtype == "float16" else lay.prob_dtype
            jobs.append((GEOTIFF.format(layer=f"prob_{head}", date=date), g[f"prob_{head}"], len(spec["classes"]), dtype, None,
                         "average", None, [str(c) for c in spec["classes"]]))
        for name, arr, count, dtype, nodata, resampling, colormap, bands in jobs:
            n_blocks = (-(-h // 512)) * (-(-w // 512))
            bar = tqdm(total=n_blocks, unit="block", desc=name, disable=not progress, leave=False)

            def read(r0: int, r1: int, c0: int, c1: int, arr: Any = arr, count: int = count, t: int = t) -> np.ndarray:
                a = np.asarray(arr[t, :, r0:r1, c0:c1] if count > 1 or arr.ndim == 4 else arr[t, r0:r1, c0:c1])
                a = a.astype(np.float32) if a.dtype == np.float16 else a
                return a.reshape(count, r1 - r0, c1 - c0)

            try:
                out.append(write_cog(store.path / name, shape=(h, w), transform=lay.grid.transform, crs=lay.grid.crs,
                                     read_block=read, count=count, dtype=dtype, nodata=nodata, band_names=bands,
                                     block=512, resampling=resampling, colormap=colormap,
                                     progress=_updater(bar)))
            finally:
                bar.close()
    return out
