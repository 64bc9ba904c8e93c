"""One window of a city map, start to finish, in whichever process runs it.

:func:`run_window` is the task a map's engine submits (to a thread pool, a process pool or a
Dask cluster): it reads the window's imagery from the items the area search handed it (signing
asset URLs now, not when the work was planned), runs the model's tiles over the part of the map
grid it owns (exactly the tiles and blending of one tiled pass over the whole map:
:func:`~terramind_nyc.model.tiling.part_plan`), writes its region of the store and returns the
window's record. The model is the process's runtime: loaded once per process (per Dask worker),
not per task. A failure is returned as a record with the error's type, never raised, so one bad
window never stops the others; the engine records it and a resume retries it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..deadline import Deadline
from ..errors import CheckpointError
from ..grid import ChipGrid
from ..imagery.area_search import AreaItems
from ..imagery.urls import redact
from ..pipeline import current_pipeline
from ..settings import Settings
from .aoi import AOI
from .store import NODATA, MapStore

__all__ = ["WindowTask", "run_window", "sub_grid"]

log = logging.getLogger(__name__)

#: One model pass at a time per process: the pass uses every core, and the other tasks' reads
#: overlap it instead of competing with it.
_MODEL_LOCK = threading.Lock()


@dataclass(frozen=True)
class WindowTask:
    """What one window's task needs; small and picklable (items of this window only)."""

    out: str
    """The map folder."""
    time: int
    """Index of the date window."""
    window: tuple[int, int]
    """``(row, col)`` of the window."""
    start: datetime
    """Start of the date window."""
    end: datetime
    """End of the date window."""
    items: AreaItems
    """The area search's items that touch this window's read block."""
    settings: Settings
    """The run's settings."""
    aoi: AOI
    """The area; pixels outside it are not valid."""
    deadline_s: float
    """Seconds the window's reads may take."""
    signer: Any = None
    """Asset URL signer (a callable ``href -> href``; None: ``settings.signer``), called inside the task."""


def sub_grid(grid: ChipGrid, rows: tuple[int, int], cols: tuple[int, int]) -> ChipGrid:
    """Rows ``rows[0]..rows[1]-1`` and columns ``cols[0]..cols[1]-1`` of ``grid`` as a grid of their own."""
    res, x0, y0 = grid.resolution, grid.transform.c, grid.transform.f
    return ChipGrid.from_bounds(grid.crs, (x0 + cols[0] * res, y0 - rows[1] * res, x0 + cols[1] * res,
                                           y0 - rows[0] * res), res)


def run_window(task: WindowTask) -> dict[str, Any]:
    """Compute, write and describe one window (see the module docstring); never raises."""
    t0 = time.perf_counter()
    i, j = task.window
    base: dict[str, Any] = {"time": task.time, "window": [i, j], "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        return {**base, **_compute(task, t0)}
    except Exception as exc:  # noqa: BLE001 - every failure becomes the window's record
        log.warning("map window t%d r%d c%d failed: %s: %s", task.time, i, j, type(exc).__name__, redact(str(exc)))
        return {**base, "status": "failed", "error_type": type(exc).__name__, "error": redact(str(exc)),
                "seconds": round(time.perf_counter() - t0, 3), "finished": datetime.now(UTC).isoformat()}


def _compute(task: WindowTask, t0: float) -> dict[str, Any]:
    from ..imagery.reader import read_chip

    s = task.settings
    store = MapStore.open(task.out)
    lay = store.layout
    pipe = current_pipeline()
    runtime = pipe.runtimes(s, None)  # the process's runtime: loaded by the first task, reused by the rest
    info = runtime.model_info()
    sha = info.checkpoint.get("sha256")
    if sha != lay.model.get("checkpoint", {}).get("sha256"):
        raise CheckpointError(f"this worker's checkpoint (sha256 {str(sha)[:12]}) is not the map's "
                              f"({str(lay.model.get('checkpoint', {}).get('sha256'))[:12]}): give every worker the same one")
    from ..model.tiling import part_plan

    core = lay.core(*task.window)
    part = part_plan(runtime.plan(*lay.grid.shape), core)  # type: ignore[attr-defined]
    r0, r1, c0, c1 = part.read
    read_grid = sub_grid(lay.grid, (r0, r1), (c0, c1))
    t = time.perf_counter()
    chip = read_chip(read_grid, when=(task.start, task.end), settings=s, deadline=Deadline(task.deadline_s),
                     catalog=task.items.catalog(s, signer=task.signer))
    t_read = time.perf_counter() - t
    with _MODEL_LOCK:
        t = time.perf_counter()
        run = pipe.run_model(chip, runtime, part=part, rgb=False)
        t_model = time.perf_counter() - t
    t = time.perf_counter()
    cr0, cc0 = core[0] - r0, core[2] - c0
    h, w = core[1] - core[0], core[3] - core[2]
    valid = chip.masks["S2L2A"][cr0:cr0 + h, cc0:cc0 + w] & task.aoi.mask(sub_grid(lay.grid, core[:2], core[2:]))
    probs = {k: np.asarray(v, np.float32) for k, v in run.probabilities.items()}
    lulc = np.where(valid, np.argmax(probs["lulc"], axis=0), NODATA).astype(np.uint8) if "lulc" in probs else \
        np.full((h, w), NODATA, np.uint8)
    thr = info.building_threshold
    if "buildings" in probs and thr is not None:
        buildings = np.where(valid, probs["buildings"][1] >= thr, NODATA).astype(np.uint8)
    else:
        buildings = np.full((h, w), NODATA, np.uint8)
    store.write_window(task.time, core, probs, lulc, buildings, valid)
    t_write = time.perf_counter() - t
    _, meta = chip.to_arrays()
    meta.pop("grid", None)
    return {
        "status": "done", "core": list(core), "read": list(part.read), "n_tiles": part.plan.n_tiles,
        "valid_fraction": round(float(valid.mean()), 6) if valid.size else 0.0,
        "chip": meta, "modalities_used": [m for m in info.modalities if m in chip.arrays],
        "modalities_missing": list(chip.missing), "catalog": chip.provider,
        "model": {"checkpoint": dict(info.checkpoint), "backend": info.backend, "device": info.device,
                  "precision": info.precision},
        "timings": {"read": round(t_read, 4), "model": round(t_model, 4), "write": round(t_write, 4),
                    "total": round(time.perf_counter() - t0, 4)},
        "finished": datetime.now(UTC).isoformat(),
    }
