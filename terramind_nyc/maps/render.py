"""Pictures of a city-scale map: an RGBA quick-look (:func:`quicklook_rgba`), a PNG and an HTML page.

The HTML page (:func:`write_html`) stacks such pictures in one frame with a toggle per layer, an
opacity slider, a legend, a lon/lat readout with a scale bar and the figures of a clicked cell. It
fetches nothing: pictures are PNG data URIs, style and script inline, no web font, and its
Content-Security-Policy forbids any other source, so it works offline. The module renders plain
arrays and knows nothing of how a map is stored. Pictures are the map grid shown north-up and
stretched linearly over ``bounds_4326``: for a projected (UTM) grid the lon/lat shown are
approximate, to a few metres over a city.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..atomic import atomic_write_bytes, atomic_write_text
from ..errors import InvalidInputError, shown
from ..jsonsafe import json_safe

__all__ = ["quicklook_rgba", "write_html", "write_quicklook"]

_NODATA = 255
_LEGEND_ITEM = '<div class="legend-item"><span class="swatch" style="background:{}"></span><span>{}</span></div>'
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
#: Input pixels handled at once while downsampling: bounds the temporary arrays (~8 bytes each).
_STRIP_PIXELS = 1 << 22


def quicklook_rgba(
    lulc: np.ndarray,
    buildings: np.ndarray | None,
    *,
    colors: Sequence[str],
    building_color: str = "#d62728",
    max_side: int = 2048,
) -> npt.NDArray[np.uint8]:
    """The map as an RGBA picture, ``uint8 (h, w, 4)``.

    ``lulc`` (``uint8 (H, W)``, 255 = no data) is coloured by ``colors`` (``'#rrggbb'`` per class
    index); ``buildings`` (same shape, bool or ``uint8``: 1 building, 0 not, 255 no data; or None)
    is painted ``building_color`` over it. Pixels with no land cover and no building are
    transparent, all others opaque; for buildings alone pass an all-255 ``lulc`` and ``colors=[]``.
    Above ``max_side`` the grid shrinks by the smallest whole factor that fits: a block (edge
    blocks padded with no data) takes its most frequent valid class (ties: the lowest index) and
    is a building when at least half of its valid building pixels are. InvalidInputError for
    arrays not 2-D, of different shapes or with unknown values, and for malformed colours.
    """
    if isinstance(colors, str) or not isinstance(colors, Sequence):
        raise InvalidInputError(f"colors must be a sequence of '#rrggbb' strings, got {shown(colors)}")
    rgb = [_rgb(c, f"colors[{i}]") for i, c in enumerate(colors)]
    if len(rgb) > _NODATA:
        raise InvalidInputError(f"at most 255 classes can be coloured (255 means no data), got {len(rgb)}")
    building_rgb = _rgb(building_color, "building_color")
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 1:
        raise InvalidInputError(f"max_side must be a positive int, got {shown(max_side)}")
    classes = _grid(lulc, "lulc")
    bad = (classes >= len(rgb)) & (classes != _NODATA)
    if bad.any():
        row, col = divmod(int(np.flatnonzero(bad)[0]), classes.shape[1])
        msg = f"lulc[{row}, {col}] is class {classes[row, col]} but {len(rgb)} colours are given: give one per class"
        raise InvalidInputError(msg)
    mask: np.ndarray | None = None
    if buildings is not None:
        mask = _grid(buildings, "buildings")
        if mask.shape != classes.shape:
            raise InvalidInputError(f"buildings has shape {mask.shape} but lulc has {classes.shape}; they must match")
        if ((mask > 1) & (mask != _NODATA)).any():
            raise InvalidInputError("buildings may hold only 0 (not), 1 (building) and 255 (no data)")
    factor = -(-max(classes.shape) // int(max_side))
    if factor > 1:
        classes, mask = _downsample(classes, mask, factor, len(rgb))
    palette = np.zeros((256, 4), np.uint8)
    palette[: len(rgb)] = np.array([(*c, 255) for c in rgb], np.uint8).reshape(-1, 4)
    out: npt.NDArray[np.uint8] = palette[classes]
    if mask is not None:
        out[mask == 1] = (*building_rgb, 255)
    return out


def write_quicklook(
    path: str | os.PathLike[str],
    lulc: np.ndarray,
    buildings: np.ndarray | None,
    *,
    colors: Sequence[str],
    building_color: str = "#d62728",
    max_side: int = 2048,
) -> Path:
    """Write :func:`quicklook_rgba` of the arguments to ``path`` as a PNG, atomically; return the path."""
    rgba = quicklook_rgba(lulc, buildings, colors=colors, building_color=building_color, max_side=max_side)
    return atomic_write_bytes(path, _png(rgba))


def write_html(
    path: str | os.PathLike[str],
    *,
    title: str,
    bounds_4326: tuple[float, float, float, float],
    layers: Sequence[tuple[str, np.ndarray]],
    legend: Sequence[tuple[str, str]],
    cells: Mapping[str, Any],
) -> Path:
    """Write a self-contained HTML page showing the map to ``path``, atomically; return the path.

    ``layers``: ``(name, rgba)`` pairs (``uint8 (h, w, 4)``, one shape, e.g. from
    :func:`quicklook_rgba`), stacked in order (the last on top) over ``bounds_4326`` (west,
    south, east, north, degrees). ``legend``: ``(label, '#rrggbb')`` pairs. ``cells``:
    ``{"rows", "cols", "data"}``, the map cut into ``rows x cols`` equal cells, ``data`` row-major
    (north row first), per cell None or a dict of figures that a click shows (nested dicts as
    small tables; all text escaped). The fragment ``#cell=ROW,COL`` opens the page on a cell.
    """
    if not isinstance(title, str):
        raise InvalidInputError(f"title must be a str, got {shown(title)}")
    bounds = _bounds(bounds_4326)
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise InvalidInputError("layers must be a non-empty sequence of (name, rgba) pairs: give at least one picture")
    images, toggles, shapes = [], [], set()
    for i, layer in enumerate(layers):
        if not isinstance(layer, (tuple, list)) or len(layer) != 2 or not isinstance(layer[0], str):
            raise InvalidInputError(f"layers[{i}] must be a (name, rgba) pair, got {shown(layer)}")
        name, rgba = layer
        if not isinstance(rgba, np.ndarray) or rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
            raise InvalidInputError(f"layer {name!r} must be a uint8 (h, w, 4) RGBA array, got {_describe(rgba)}")
        shapes.add(rgba.shape)
        if 0 in rgba.shape or len(shapes) > 1:
            raise InvalidInputError(f"layer {name!r} has shape {rgba.shape}: layers must share one non-empty shape")
        uri = "data:image/png;base64," + base64.b64encode(_png(rgba)).decode("ascii")
        images.append(f'<img alt="{html.escape(name)}" draggable="false" src="{uri}">')
        toggles.append(f'<label><input type="checkbox" checked data-layer="{i}"> {html.escape(name)}</label>')
    entries = []
    for i, entry in enumerate(legend):
        if not isinstance(entry, (tuple, list)) or len(entry) != 2 or not isinstance(entry[0], str):
            raise InvalidInputError(f"legend[{i}] must be a (label, '#rrggbb') pair, got {shown(entry)}")
        _rgb(entry[1], f"the colour of legend entry {entry[0]!r}")
        entries.append(_LEGEND_ITEM.format(entry[1], html.escape(entry[0])))
    rows, cols, data = _cells(cells)
    ((height, width, _),) = shapes
    payload = {"bounds": list(bounds), "width": width, "height": height, "rows": rows, "cols": cols, "data": data}
    text = json.dumps(json_safe(payload), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    parts = {
        "TITLE": html.escape(title),
        "FRAME": f"aspect-ratio:{width}/{height};width:min(100%,calc((100vh - 64px)*{width / height:.6f}))",
        "IMAGES": "\n".join(images),
        "LAYERS": "\n".join(toggles),
        "LEGEND": "\n".join(entries),
        "DATA": text.replace("<", "\\u003c"),  # no "</script>" nor "<!--" can end the data early
    }
    page = re.sub(r"@([A-Z]+)@", lambda m: parts[m.group(1)], _PAGE)
    return atomic_write_text(path, page)


def _rgb(color: object, what: str) -> tuple[int, int, int]:
    """``'#rrggbb'`` as three ints; InvalidInputError naming ``what`` otherwise."""
    if not isinstance(color, str) or not _COLOR.fullmatch(color):
        raise InvalidInputError(f"{what} must be a colour written '#rrggbb', got {shown(color)}")
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _describe(value: object) -> str:
    """A short account of an array argument for messages."""
    return f"shape {value.shape}, dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__


def _grid(value: object, what: str) -> np.ndarray:
    """``value`` as a non-empty 2-D ``uint8`` array (bools and in-range integers converted)."""
    if not isinstance(value, np.ndarray) or value.ndim != 2 or value.size == 0:
        raise InvalidInputError(f"{what} must be a non-empty 2-D numpy array, got {_describe(value)}")
    if value.dtype in (np.bool_, np.uint8):
        return value.astype(np.uint8, copy=False)
    if not np.issubdtype(value.dtype, np.integer):
        raise InvalidInputError(f"{what} must hold integers (uint8), got dtype {value.dtype}")
    if value.min() < 0 or value.max() > 255:
        raise InvalidInputError(f"{what} must hold values 0..255 (uint8), got {value.min()}..{value.max()}")
    return value.astype(np.uint8)


def _strip(grid: np.ndarray, r0: int, r1: int, factor: int, width: int) -> np.ndarray:
    """Block rows ``r0:r1`` of ``grid`` as ``(blocks, factor**2)``, padded with no data."""
    part = grid[r0 * factor : r1 * factor]
    rows, cols = (r1 - r0) * factor, width * factor
    if part.shape != (rows, cols):
        part = np.pad(part, ((0, rows - part.shape[0]), (0, cols - part.shape[1])), constant_values=_NODATA)
    return part.reshape(r1 - r0, factor, width, factor).swapaxes(1, 2).reshape(-1, factor * factor)


def _downsample(classes: np.ndarray, mask: np.ndarray | None, factor: int, n_classes: int) -> tuple[Any, Any]:
    """Block mode of ``classes`` and majority of ``mask`` over ``factor x factor`` blocks."""
    height, width = -(-classes.shape[0] // factor), -(-classes.shape[1] // factor)
    out = np.full((height, width), _NODATA, np.uint8)
    out_mask = None if mask is None else np.full((height, width), _NODATA, np.uint8)
    step = max(1, _STRIP_PIXELS // (width * factor * factor))  # block rows per strip
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        blocks = _strip(classes, r0, r1, factor, width)
        valid = blocks != _NODATA
        if n_classes:  # counts per (block, class) in one bincount over valid pixels
            ids = (np.arange(len(blocks))[:, None] * n_classes + blocks)[valid]
            counts = np.bincount(ids, minlength=len(blocks) * n_classes).reshape(len(blocks), n_classes)
            mode = counts.argmax(axis=1).astype(np.uint8)
            mode[~valid.any(axis=1)] = _NODATA
            out[r0:r1] = mode.reshape(r1 - r0, width)
        if mask is not None and out_mask is not None:
            marks = _strip(mask, r0, r1, factor, width)
            seen, yes = (marks != _NODATA).sum(axis=1), (marks == 1).sum(axis=1)
            out_mask[r0:r1] = np.where(seen == 0, _NODATA, 2 * yes >= seen).reshape(r1 - r0, width)
    return out, out_mask


def _png(rgba: np.ndarray) -> bytes:
    """``rgba`` encoded as PNG bytes."""
    from PIL import Image  # pillow comes with matplotlib; imported only when a picture is written

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(buffer, format="PNG")
    return buffer.getvalue()


def _bounds(value: Any) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` in degrees, checked; InvalidInputError otherwise."""
    try:
        west, south, east, north = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"bounds_4326 must be (west, south, east, north), got {shown(value)}") from None
    finite = all(math.isfinite(v) for v in (west, south, east, north))
    if not (finite and -180 <= west < east <= 180 and -90 <= south < north <= 90):
        msg = f"bounds_4326 {shown(value)}: need west < east, south < north, lon in -180..180, lat in -90..90"
        raise InvalidInputError(msg)
    return west, south, east, north


def _cells(cells: object) -> tuple[int, int, list[Any]]:
    """``cells``' rows, cols and data, checked (``rows * cols == len(data)``, items None or dicts)."""
    if not isinstance(cells, Mapping):
        raise InvalidInputError(f'cells must be a mapping {{"rows", "cols", "data"}}, got {shown(cells)}')
    rows, cols, data = cells.get("rows", -1), cells.get("cols", -1), cells.get("data")
    for key, count in (("rows", rows), ("cols", cols)):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise InvalidInputError(f"cells[{key!r}] must be an int >= 0, got {shown(count)}")
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise InvalidInputError(f"cells['data'] must be a list of None or dicts, got {shown(data)}")
    if len(data) != int(rows) * int(cols):
        raise InvalidInputError(f"cells['data'] holds {len(data)} items but rows * cols = {int(rows) * int(cols)}")
    for i, item in enumerate(data):
        if item is not None and not isinstance(item, Mapping):
            raise InvalidInputError(f"cells['data'][{i}] must be None or a dict of figures, got {shown(item)}")
    return int(rows), int(cols), list(data)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>@TITLE@</title>
<style>
*{box-sizing:border-box} html,body{margin:0;height:100%} label{display:block;margin:2px 0} td table{font-size:12px}
body{display:flex;flex-direction:column;font:13px/1.35 system-ui,"Segoe UI",Roboto,Arial,sans-serif;color:#222}
header{padding:6px 12px;border-bottom:1px solid #ddd} h1{font-size:16px;margin:0;overflow:hidden;white-space:nowrap}
main{flex:1;display:flex;min-height:0} .swatch{width:16px;height:16px;flex:none;border:1px solid #0005}
#stage{flex:1;display:flex;align-items:center;justify-content:center;padding:8px;min-width:0;background:#e9ecef}
#frame{position:relative;flex:none;background:#f8f9fa;box-shadow:0 0 0 1px #adb5bd;cursor:crosshair;overflow:hidden}
#frame img{position:absolute;left:0;top:0;width:100%;height:100%;image-rendering:pixelated;user-select:none}
#pick{position:absolute;display:none;outline:2px solid #111;box-shadow:0 0 0 3px #fffc;pointer-events:none}
aside{width:290px;flex:none;overflow:auto;padding:4px 12px 12px;border-left:1px solid #ddd}
h2{font-size:11px;margin:12px 0 4px;text-transform:uppercase;letter-spacing:.05em;color:#666}
.legend-item{display:flex;align-items:center;gap:6px;margin:2px 0} .note{color:#666;font-size:11px;margin:6px 0 0}
#readout{font-variant-numeric:tabular-nums} #scale{height:7px;width:0;border:2px solid #222;border-top:0;margin-top:4px}
table{border-collapse:collapse;width:100%} th{font-weight:600;color:#444}
th,td{border-bottom:1px solid #eee;padding:1px 4px;text-align:left;vertical-align:top;overflow-wrap:break-word}
</style></head>
<body><header><h1>@TITLE@</h1></header>
<main><div id="stage"><div id="frame" style="@FRAME@">@IMAGES@<div id="pick"></div></div></div>
<aside><h2>Layers</h2><div id="layers">@LAYERS@</div>
<label>Opacity <input id="opacity" type="range" min="0" max="100" value="100">
<span id="opacity-value">100%</span></label>
<h2>Legend</h2><div id="legend">@LEGEND@</div>
<h2>Position</h2><div id="readout">move the pointer over the map</div>
<div id="scale"></div><div id="scale-label"></div>
<p class="note">The picture is the map grid shown north-up over its bounds: lon/lat are approximate (a few metres).</p>
<h2>Cell</h2><div id="info">click the map to see the figures of a cell</div></aside></main>
<script type="application/json" id="map-data">@DATA@</script>
<script>
(function () { "use strict";
function $(id) { return document.getElementById(id); }
var D = JSON.parse($("map-data").textContent), b = D.bounds;
var frame = $("frame"), imgs = frame.getElementsByTagName("img"), info = $("info"), box = $("pick");
function clamp(x) { return Math.min(Math.max(x, 0), 0.999999); }
function at(e) {
  var r = frame.getBoundingClientRect(), fx = clamp((e.clientX - r.left) / r.width);
  var fy = clamp((e.clientY - r.top) / r.height);
  return {fx: fx, fy: fy, lon: b[0] + fx * (b[2] - b[0]), lat: b[3] - fy * (b[3] - b[1])};
}
function scale() {  // a bar of a round length of at most 120 px
  var mpp = (b[2] - b[0]) * 111320 * Math.cos((b[1] + b[3]) * Math.PI / 360) / frame.clientWidth;
  if (!(mpp > 0)) return;
  var t = mpp * 120, p = Math.pow(10, Math.floor(Math.log10(t))), len = t >= 5 * p ? 5 * p : t >= 2 * p ? 2 * p : p;
  $("scale").style.width = Math.round(len / mpp) + "px";
  $("scale-label").textContent = len >= 1000 ? len / 1000 + " km" : len + " m";
}
function value(v) {  // text only (textContent, createTextNode): nothing in the data becomes markup
  if (v === null || typeof v !== "object") return document.createTextNode(v === null ? "none" : String(v));
  if (!Array.isArray(v)) return table(v);
  if (v.every(function (x) { return x === null || typeof x !== "object"; })) return value(v.join(", "));
  var div = document.createElement("div"); v.forEach(function (x) { div.appendChild(value(x)); }); return div;
}
function table(o) {
  var t = document.createElement("table");
  Object.keys(o).forEach(function (k) {
    var tr = t.insertRow(); tr.appendChild(document.createElement("th")).textContent = k;
    tr.insertCell().appendChild(value(o[k]));
  });
  return t;
}
function pick(r, c) {
  if (!(r >= 0 && r < D.rows && c >= 0 && c < D.cols)) return;
  var cell = D.data[r * D.cols + c], s = box.style;
  s.left = 100 * c / D.cols + "%"; s.top = 100 * r / D.rows + "%"; s.display = "block";
  s.width = 100 / D.cols + "%"; s.height = 100 / D.rows + "%";
  info.textContent = cell ? "" : "no figures for cell r" + r + "c" + c;
  if (cell) info.appendChild(table(cell));
  try { history.replaceState(null, "", "#cell=" + r + "," + c); } catch (err) { /* some file: URLs refuse */ }
}
frame.addEventListener("mousemove", function (e) {
  var p = at(e); $("readout").textContent = "lon " + p.lon.toFixed(5) + "°, lat " + p.lat.toFixed(5) + "°";
});
frame.addEventListener("click", function (e) {
  var p = at(e); pick(Math.floor(p.fy * D.rows), Math.floor(p.fx * D.cols));
});
document.querySelectorAll("input[data-layer]").forEach(function (cb) {
  cb.addEventListener("change", function () { imgs[+cb.dataset.layer].style.display = cb.checked ? "" : "none"; });
});
$("opacity").addEventListener("input", function () {
  for (var i = 0; i < imgs.length; i++) imgs[i].style.opacity = this.value / 100;
  $("opacity-value").textContent = this.value + "%"; });
window.addEventListener("resize", scale); scale();
var m = /^#cell=(\\d+),(\\d+)$/.exec(location.hash); if (m) pick(+m[1], +m[2]);
})();
</script></body></html>
"""
