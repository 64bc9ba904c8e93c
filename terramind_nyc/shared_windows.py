"""Neighbouring points of :func:`~terramind_nyc.fetch_many` share one read and one model pass.

:func:`group_windows` groups point windows into union windows when that costs fewer model
tiles; :func:`run_shared_window` reads and predicts one union window through a
:class:`~terramind_nyc.pipeline.Pipeline` and summarises each member on its own grid.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .dates import resolve_when
from .deadline import Deadline
from .errors import (
    BackendError,
    CheckpointError,
    DeadlineExceededError,
    InvalidInputError,
    NoSceneError,
    TerramindNYCError,
)
from .request import Request
from .result import BatchItem

if TYPE_CHECKING:  # pragma: no cover
    from .grid import ChipGrid
    from .pipeline import Pipeline
    from .settings import Settings

__all__ = ["MAX_WINDOW_M", "group_windows", "run_shared_window"]

log = logging.getLogger(__name__)

#: Default largest shared window of fetch_many (four default windows a side; 896 px at 10 m:
#: about 50 MB of inputs, 25 tiles). Larger ``size_m`` allows twice ``size_m``.
MAX_WINDOW_M = 8960.0


def group_windows(grids: list[tuple[int, ChipGrid]], max_side_px: int,
                  tile_overlap_px: int = 32) -> list[list[tuple[int, ChipGrid]]]:
    """Group points so that each group's union window is read and predicted once.

    Greedy spatial grouping into windows of at most ``max_side_px``; a group is kept only when
    its union window costs no more than its members' own windows would, a window costing its
    model tiles plus one for its catalog search and reads. Otherwise its members are grouped
    again with half the side, down to one window per point: two points far apart in one big
    window would cost more than two small passes.
    """
    if len(grids) < 2:
        return [[g] for g in grids]
    from .model.config import DEFAULT_TILE_SIZE
    from .model.tiling import tile_count, tile_geometry

    geometry = tile_geometry(DEFAULT_TILE_SIZE, tile_overlap_px)  # no checkpoint is loaded yet

    def cost(height: int, width: int) -> int:
        return 1 + tile_count(height, width, **geometry)

    res = grids[0][1].resolution
    side = max(max(g.height, g.width) for _, g in grids)
    groups: list[tuple[list[float], list[tuple[int, ChipGrid]]]] = []
    for idx, g in sorted(grids, key=lambda t: (t[1].bounds[0], t[1].bounds[1])):
        for bounds, members in groups:
            u = [min(bounds[0], g.bounds[0]), min(bounds[1], g.bounds[1]),
                 max(bounds[2], g.bounds[2]), max(bounds[3], g.bounds[3])]
            if (u[2] - u[0]) / res <= max_side_px and (u[3] - u[1]) / res <= max_side_px:
                bounds[:] = u
                members.append((idx, g))
                break
        else:
            groups.append((list(g.bounds), [(idx, g)]))
    out: list[list[tuple[int, ChipGrid]]] = []
    for bounds, members in groups:
        h, w = round((bounds[3] - bounds[1]) / res), round((bounds[2] - bounds[0]) / res)
        if len(members) == 1 or cost(h, w) <= sum(cost(m.height, m.width) for _, m in members):
            out.append(members)
        elif max_side_px // 2 >= 2 * side:
            out.extend(group_windows(members, max_side_px // 2, tile_overlap_px))
        else:
            out.extend([m] for m in members)
    return out


def _may_differ_alone(exc: TerramindNYCError) -> bool:
    """Whether a member's own window could succeed where the union window failed with ``exc``.

    Not for errors of the request itself (inputs, the model, the deadline) nor for an empty
    catalog (no item meets the union, so none meets a member's window inside it).
    """
    if isinstance(exc, (InvalidInputError, CheckpointError, BackendError, DeadlineExceededError)):
        return False
    return not (isinstance(exc, NoSceneError) and exc.reason == "empty")


def _alone(pipeline: Pipeline, i: int, grid: ChipGrid, coord: tuple[float, float], when: Any,
           radius: float | None, settings: Settings) -> BatchItem:
    lat, lon = coord
    try:
        return BatchItem(i, lat, lon, pipeline.fetch(lat, lon, when=when, size_m=grid.width * grid.resolution,
                                                     radius_m=radius, settings=settings))
    except TerramindNYCError as exc:
        return BatchItem(i, lat, lon, None, exc)


def run_shared_window(pipeline: Pipeline, members: list[tuple[int, ChipGrid]],
                      coords: dict[int, tuple[float, float]], when: Any, radius: float | None,
                      settings: Settings) -> list[BatchItem]:
    """Read and predict one window covering every member's grid, then summarise each member.

    When the shared read fails in a way a member's own window might not (too little imagery
    or clear sky over the union, a failed read), each member is fetched alone, so sharing never
    fails a point that would succeed by itself; a failure of the request as such (inputs, the
    model, the deadline, an empty catalog) fails every member with that error. A failure while
    summarising one member fails only that member.
    """
    from .grid import union_grid

    t_start = time.perf_counter()
    try:
        window = union_grid(g for _, g in members)
        start, end = resolve_when(when, settings)
        deadline = Deadline(settings.deadline_s)
        runtime = pipeline.runtimes(settings, deadline)
        t = time.perf_counter()
        chip = pipeline.chip(window, start, end, settings, deadline)
        t_img = time.perf_counter() - t
        t = time.perf_counter()
        run = pipeline.run_model(chip, runtime)
        t_model = time.perf_counter() - t
    except TerramindNYCError as exc:
        if not _may_differ_alone(exc):
            return [BatchItem(i, *coords[i], None, exc) for i, _ in members]
        # the union window failed where a member's own window may not (a neighbour's window
        # reaches past the imagery, a cloud over another member, ...): each member alone
        log.info("shared window of %d points failed (%s); fetching them one by one", len(members),
                 type(exc).__name__)
        return [_alone(pipeline, i, g, coords[i], when, radius, settings) for i, g in members]
    out = []
    share = 1.0 / len(members)
    for i, g in members:
        lat, lon = coords[i]
        try:
            req = Request(lat, lon, radius, g, start, end, settings)
            res = pipeline.result(req, run, {"imagery": t_img * share, "model": t_model * share}, t_start)
            out.append(BatchItem(i, lat, lon, res))
        except TerramindNYCError as exc:
            out.append(BatchItem(i, lat, lon, None, exc))
    return out
