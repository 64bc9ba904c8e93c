"""The tiled pass, backend-independent: a tile plan, tile extraction and blending in numpy.

The model sees square tiles of the config's tile size (224). A window of any size >= 1 px is
covered axis by axis:

- A side shorter than the tile is reflect-padded (centred) up to the tile.
- A side one tile covers (after that padding) gets one tile row or column, no margin, no
  blending: what terratorch's ``tiled_inference`` does when one tile covers both sides.
- A longer side follows terratorch's scheme exactly: reflect-pad ``delta`` px at both ends,
  tiles every ``stride`` px with the last one flush with the far end, ``delta`` px dropped
  from both edges of each tile's output, the rest blended with terratorch's cosine ramp
  (``get_blend_mask``, plus its 1e-6 floor) and divided by the summed weights.

Blending averages logits, as terratorch does; softmax comes after. Hence:

- both sides >= the tile: equal to ``terratorch.tasks.tiled_inference(forward, x, crop=tile,
  stride=stride, delta=delta)`` (tests/model/test_runtime_torch.py checks it on 224x224, 300x520, ...);
- a side shorter than the tile: terratorch runs the model on the small input as it is (off
  the 224 px TerraMind was trained at; below a multiple of 16 TerraMind cannot run at all), or
  fails outright when the other side is longer. Here the model always sees full tiles, and
  the result equals ``tiled_inference`` on the padded window, cropped back, when one tile
  covers the padded window;
- one side exactly one tile and the other longer (e.g. 224x520): terratorch pads that side
  too and runs a second row of tiles 16 px below the first (twice the tiles); here one row,
  whose tiles are blended along the long side only. The tests check this against a direct
  computation.

Everything here is numpy: the torch and ONNX Runtime backends share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError

__all__ = ["PartPlan", "TileBlender", "TilePlan", "cut_tiles", "pad_to_canvas", "part_plan", "plan_tiles", "softmax",
           "tile_count", "tile_geometry"]


def _ramp(tile: int, stride: int, delta: int) -> np.ndarray:
    """terratorch's 1-D blend ramp: length ``tile - 2 delta``, cosine on the blended overlap, 1 inside."""
    size = tile - 2 * delta
    overlap = min(tile // 2, tile - stride) - delta
    ramp_1d = np.ones(size, dtype=np.float32)
    if overlap > 0:
        # same float32 operation order as terratorch: cos(pi * (i + 1) / (n + 1)) / 2 + 0.5
        pos = (np.arange(overlap, dtype=np.float32) + np.float32(1)) * np.float32(math.pi)
        ramp = np.cos(pos / np.float32(overlap + 1)) / np.float32(2) + np.float32(0.5)
        ramp_1d[:overlap] = ramp[::-1]
        ramp_1d[-overlap:] = ramp
    return ramp_1d


@dataclass(frozen=True)
class TilePlan:
    """How a window of ``height`` x ``width`` px is cut into tiles and put back together."""

    height: int
    """Window height in pixels."""
    width: int
    """Window width in pixels."""
    tile: int
    """Tile side in pixels."""
    stride: int
    """Distance between neighbouring tile origins (the last row/column is flush with the edge)."""
    delta: tuple[int, int]
    """Pixels dropped from each (top/bottom, left/right) edge of a tile's output; 0 on an axis one tile covers."""
    pad: tuple[int, int, int, int]
    """Reflect padding (top, bottom, left, right) from the window to the canvas the tiles cover."""
    origins: tuple[tuple[int, int], ...]
    """Top-left (row, col) of each tile on the canvas."""
    weights: np.ndarray
    """float32 blend weights of a tile's kept output, ``(tile - 2 delta_y, tile - 2 delta_x)``: a cosine
    ramp over the blended overlap, 1 inside, plus 1e-6 (with several tiles on both axes, exactly
    terratorch's ``get_blend_mask(tile, stride, tile, stride, delta)``)."""

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return len(self.origins)

    @property
    def canvas(self) -> tuple[int, int]:
        """(height, width) of the padded canvas."""
        t, b, left, r = self.pad
        return self.height + t + b, self.width + left + r


def _axis(size: int, tile: int, stride: int, delta: int) -> tuple[int, int, list[int], int, np.ndarray]:
    """One axis of the plan: (pad before, pad after, tile starts, delta, 1-D weights)."""
    short = max(tile - size, 0)
    before, after = short // 2, short - short // 2
    if size + short == tile:
        # one tile covers this axis: no margin, no overlap (terratorch does the same when one
        # tile covers both axes; it would add a margin and a second, almost identical tile here)
        return before, after, [0], 0, np.ones(tile, np.float32)
    n = size + short + 2 * delta
    starts = sorted(set(range(0, n - tile - 1, stride)) | {0, n - tile})
    # terratorch's grid can leave a gap before the last tile (it then raises "Some pixels did
    # not receive a classification"); fill such gaps with one more tile
    keep = tile - 2 * delta
    i = 0
    while i + 1 < len(starts):
        a, b = starts[i], starts[i + 1]
        if a + keep < b:
            starts.insert(i + 1, a + keep)
        i += 1
    return before + delta, after + delta, starts, delta, _ramp(tile, stride, delta)


def plan_tiles(height: int, width: int, *, tile: int = 224, stride: int = 192, delta: int = 8) -> TilePlan:
    """The tile plan for a ``height`` x ``width`` window (module docstring for the scheme).

    ``stride`` <= ``tile``; ``delta`` is reduced to ``(tile - stride) // 2`` when larger, as
    terratorch does.
    """
    for name, v in (("height", height), ("width", width), ("tile", tile), ("stride", stride)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {v!r}")
    if stride > tile:
        raise InvalidInputError(f"stride ({stride}) must not exceed the tile ({tile}): pixels would be skipped")
    if not isinstance(delta, (int, np.integer)) or delta < 0:
        raise InvalidInputError(f"delta must be an integer >= 0, got {delta!r}")
    height, width, tile, stride = int(height), int(width), int(tile), int(stride)
    delta = min(int(delta), (tile - stride) // 2)
    top, bottom, rows, dy, wy = _axis(height, tile, stride, delta)
    left, right, cols, dx, wx = _axis(width, tile, stride, delta)
    origins = tuple((r, c) for r in rows for c in cols)
    weights = wy[:, None] * wx[None, :]
    if len(origins) > 1:
        weights = weights + np.float32(1e-6)  # terratorch's floor: every pixel gets some weight
    return TilePlan(height, width, tile, stride, (dy, dx), (top, bottom, left, right), origins,
                    weights.astype(np.float32))


def _pad(array: np.ndarray, before_after: list[tuple[int, int]]) -> np.ndarray:
    if not any(a or b for a, b in before_after):
        return array
    return np.pad(array, before_after, mode="reflect")


def tile_geometry(tile: int, overlap: int) -> dict[str, int]:
    """``tile``, ``stride`` and ``delta`` for tiles overlapping by ``overlap`` px (the runtime's
    scheme: 32 px on 224 tiles gives stride 192, delta 8), as keywords of :func:`plan_tiles`."""
    return {"tile": tile, "stride": tile - overlap, "delta": overlap // 4}


def tile_count(height: int, width: int, *, tile: int = 224, stride: int = 192, delta: int = 8) -> int:
    """How many tiles :func:`plan_tiles` would cut from a ``height`` x ``width`` window (cheap)."""
    delta = min(int(delta), (tile - stride) // 2)
    return len(_axis(int(height), tile, stride, delta)[2]) * len(_axis(int(width), tile, stride, delta)[2])


def pad_to_canvas(array: np.ndarray, plan: TilePlan) -> np.ndarray:
    """``array`` (``(..., H, W)``) reflect-padded to the plan's canvas.

    Two steps, as the plan describes: short sides up to the tile, then the ``delta`` margin
    (each step reflects what the previous one produced).
    """
    a = np.asarray(array)
    if a.shape[-2:] != (plan.height, plan.width):
        raise InvalidInputError(f"array of {a.shape[-2:]} px does not match the plan's {plan.height}x{plan.width}")
    lead = [(0, 0)] * (a.ndim - 2)
    dy, dx = plan.delta
    t, b, left, r = plan.pad
    a = _pad(a, [*lead, (t - dy, b - dy), (left - dx, r - dx)])
    return _pad(a, [*lead, (dy, dy), (dx, dx)])


@dataclass(frozen=True)
class PartPlan:
    """The tiles one part of a large window needs so that the part's pixels come out exactly as
    in the tiled pass over the whole window (city maps compute a window in parts on several
    workers; see :func:`part_plan`).

    ``plan`` is a :class:`TilePlan` of its own: its ``height`` x ``width`` is the part, its canvas
    the box its tiles cover on the whole window's canvas, its origins those tiles' origins in that
    box (in the whole plan's order, so the blended sums are the same float operations), and
    ``pad`` the context around the part inside the box. :func:`cut_tiles` and
    :class:`TileBlender` take it as they take any plan.
    """

    plan: TilePlan
    """The part's own plan (see above)."""
    tiles: tuple[int, ...]
    """Indices of its tiles in the whole plan."""
    part: tuple[int, int, int, int]
    """``(row0, row1, col0, col1)`` of the part in the whole window."""
    read: tuple[int, int, int, int]
    """``(row0, row1, col0, col1)`` of the whole window's pixels the part's tiles see: read these."""
    rows: np.ndarray
    """For each canvas row of ``plan``, the row of the read block it holds (reflected at the window's edges)."""
    cols: np.ndarray
    """For each canvas column of ``plan``, the column of the read block it holds."""

    def canvas(self, array: np.ndarray) -> np.ndarray:
        """The part's canvas from ``array`` (``(..., rows, cols)`` of the :attr:`read` block)."""
        a = np.asarray(array)
        r0, r1, c0, c1 = self.read
        if a.shape[-2:] != (r1 - r0, c1 - c0):
            raise InvalidInputError(f"array of {a.shape[-2:]} px does not match the part's read block "
                                    f"{r1 - r0}x{c1 - c0}")
        return np.ascontiguousarray(a[..., self.rows[:, None], self.cols[None, :]])


def _canvas_index(size: int, pad: tuple[int, int], delta: int) -> np.ndarray:
    """The window index of every canvas position along one axis (:func:`pad_to_canvas`'s two reflect steps)."""
    idx = _pad(np.arange(size), [(pad[0] - delta, pad[1] - delta)])
    return _pad(idx, [(delta, delta)])


def part_plan(plan: TilePlan, part: tuple[int, int, int, int]) -> PartPlan:
    """The tiles of ``plan`` whose kept output reaches ``part`` (``row0, row1, col0, col1`` of the
    window), and the box of the window they read (see :class:`PartPlan`)."""
    r0, r1, c0, c1 = (int(v) for v in part)
    if not (0 <= r0 < r1 <= plan.height and 0 <= c0 < c1 <= plan.width):
        raise InvalidInputError(f"part {part} is not inside the {plan.height}x{plan.width} window")
    t, _, left, _ = plan.pad
    dy, dx = plan.delta
    n = plan.tile
    # the part on the canvas, and the tiles whose kept output (tile less delta) overlaps it
    y0, y1, x0, x1 = r0 + t, r1 + t, c0 + left, c1 + left
    tiles = tuple(i for i, (row, col) in enumerate(plan.origins)
                  if row + dy < y1 and row + n - dy > y0 and col + dx < x1 and col + n - dx > x0)
    by0 = min(plan.origins[i][0] for i in tiles)
    by1 = max(plan.origins[i][0] for i in tiles) + n
    bx0 = min(plan.origins[i][1] for i in tiles)
    bx1 = max(plan.origins[i][1] for i in tiles) + n
    rows = _canvas_index(plan.height, (plan.pad[0], plan.pad[1]), dy)[by0:by1]
    cols = _canvas_index(plan.width, (plan.pad[2], plan.pad[3]), dx)[bx0:bx1]
    read = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
    sub = TilePlan(r1 - r0, c1 - c0, n, plan.stride, plan.delta,
                   (y0 - by0, by1 - y1, x0 - bx0, bx1 - x1),
                   tuple((plan.origins[i][0] - by0, plan.origins[i][1] - bx0) for i in tiles), plan.weights)
    return PartPlan(sub, tiles, (r0, r1, c0, c1), read, rows - read[0], cols - read[2])


def cut_tiles(canvas: np.ndarray, plan: TilePlan, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Tiles ``start .. stop - 1`` of a padded canvas: ``(k, ..., tile, tile)``, contiguous."""
    if canvas.shape[-2:] != plan.canvas:
        raise InvalidInputError(f"canvas of {canvas.shape[-2:]} px does not match the plan's {plan.canvas}")
    origins = plan.origins[start:stop]
    n = plan.tile
    out = np.empty((len(origins), *canvas.shape[:-2], n, n), dtype=canvas.dtype)
    for i, (row, col) in enumerate(origins):
        out[i] = canvas[..., row:row + n, col:col + n]
    return out


class TileBlender:
    """Accumulates tile outputs (in any batches, any order) and returns the blended window.

        blender = TileBlender(plan, channels)
        blender.add(0, logits[:8])        # tiles 0..7, (8, channels, tile, tile)
        blender.add(8, logits[8:])
        window = blender.result()         # (channels, H, W) float32
    """

    def __init__(self, plan: TilePlan, channels: int) -> None:
        self.plan = plan
        hc, wc = plan.canvas
        self._sum = np.zeros((channels, hc, wc), np.float32)
        self._weight = np.zeros((hc, wc), np.float32)
        self._seen = np.zeros(plan.n_tiles, bool)

    def add(self, first: int, outputs: np.ndarray) -> None:
        """Add outputs ``(k, channels, tile, tile)`` of tiles ``first .. first + k - 1``."""
        p = self.plan
        dy, dx = p.delta
        n = p.tile
        if outputs.ndim != 4 or outputs.shape[1] != self._sum.shape[0] or outputs.shape[-2:] != (n, n):
            raise InvalidInputError(f"tile outputs of shape {outputs.shape}, expected (k, {self._sum.shape[0]}, {n}, {n})")
        w = p.weights
        for k in range(outputs.shape[0]):
            i = first + k
            row, col = p.origins[i]
            kept = outputs[k, :, dy:n - dy, dx:n - dx]
            self._sum[:, row + dy:row + n - dy, col + dx:col + n - dx] += kept * w
            self._weight[row + dy:row + n - dy, col + dx:col + n - dx] += w
            self._seen[i] = True

    def result(self) -> np.ndarray:
        """The blended ``(channels, H, W)`` float32 window (every tile must have been added)."""
        if not self._seen.all():
            raise InvalidInputError(f"tiles {np.flatnonzero(~self._seen).tolist()[:8]} were never added")
        t, _, left, _ = self.plan.pad
        h, w = self.plan.height, self.plan.width
        s = self._sum[:, t:t + h, left:left + w]
        wt = self._weight[t:t + h, left:left + w]
        return s / wt


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Numerically stable softmax in float32."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e
