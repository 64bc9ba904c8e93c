"""``map_area``: a whole area, per date window, into a resumable map folder, on any Executor.

Plan (in the calling process): the area's grid on the 10 m lattice, one tile plan over it (the
plan of one tiled pass over the whole area), the windows (``window_px`` squares of whole Zarr
chunks) that touch the area, and one STAC search per collection and date window over the
area. Then one task per window and date (:func:`~.window.run_window`) goes to the executor:

- default: a thread pool in this process (reads of one window overlap the model pass of the
  other; one model, loaded once);
- any :class:`concurrent.futures.Executor`: a process pool, or Dask's
  ``distributed.Client(...).get_executor()`` (the model then loads once per worker; lost
  workers' tasks are retried by Dask, and a window's write is idempotent).

Each window chooses its scene by its own SCL, as ``fetch`` does: where neighbouring windows pick
different acquisitions (a cloudy date), the map is stitched from several scenes and may show a seam
at the window edge; each window's record names its scenes.

As tasks finish, their records are written (``windows/*.json``) and the progress bar moves. A
window already ``done`` for this map's fingerprint is skipped; a failed one, or one done without
a modality whose read failed (``chip.transient`` in its record), is retried on the next run. See ``docs/maps.md``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import stable_key
from ..dates import iso_z
from ..deadline import Deadline
from ..errors import InvalidInputError
from ..imagery.urls import redact
from ..pipeline import current_pipeline
from ..settings import Settings
from .aoi import check_when_list, resolve_aoi
from .store import FORMAT_VERSION, MANIFEST, PROB_DTYPES, MapLayout, MapStore
from .window import WindowTask, run_window, sub_grid

__all__ = ["FORMATS", "MapRun", "map_area"]

log = logging.getLogger(__name__)

#: Outputs ``map_area`` can write: the Zarr store always; ``cog`` adds GeoTIFF mosaics.
FORMATS = ("zarr", "cog")
#: Default window side: 1536 px (15.4 km at 10 m), 6 x 6 chunks of 256; 9 x 9 tiles of 224 at stride 192.
DEFAULT_WINDOW_PX = 1536
DEFAULT_CHUNK_PX = 256


@dataclass(frozen=True)
class MapRun:
    """What one ``map_area`` call did."""

    path: Path
    """The map folder."""
    windows: int
    """Window x date tasks the map has."""
    done: int
    """Computed in this run."""
    skipped: int
    """Already done before this run (resume)."""
    failed: tuple[dict[str, Any], ...]
    """Records of the windows that failed in this run (``time``, ``window``, ``error_type``, ``error``)."""
    seconds: float
    """Wall time of the run."""
    timings: dict[str, float]
    """Summed task seconds: ``read``, ``model``, ``write`` (``model`` / ``seconds`` is the model's share)."""
    files: tuple[Path, ...]
    """Files written beside the store (quicklook, HTML page, GeoTIFFs)."""

    @property
    def complete(self) -> bool:
        """Every window of every date is done."""
        return not self.failed and self.done + self.skipped == self.windows


def _fingerprint(layout: dict[str, Any], s: Settings, info: Any) -> str:
    return stable_key("map", FORMAT_VERSION, layout, s.key("chip"), info.checkpoint.get("sha256"), info.precision,
                      s.tile_overlap_px)


def map_area(aoi: Any, when: Any = None, out: str | os.PathLike[str] = "nyc-map", *, settings: Settings | None = None,
             executor: Executor | None = None, resume: bool = True, overwrite: bool = False,
             formats: Sequence[str] = ("zarr",), window_px: int = DEFAULT_WINDOW_PX,
             chunk_px: int = DEFAULT_CHUNK_PX, prob_dtype: str = "uint8", progress: bool = True,
             render: bool = True, signer: Any = None) -> MapRun:
    """Map ``aoi`` for each date window of ``when`` into the folder ``out``.

    Args:
        aoi: ``"nyc"``, a borough, a ``minlon,minlat,maxlon,maxlat`` bbox, a GeoJSON polygon
            (dict or file), a shapely polygon, or a :class:`~terramind_nyc.grid.ChipGrid`
            (:func:`~terramind_nyc.maps.aoi.resolve_aoi`).
        when: one date window, or a list of them, oldest first, not overlapping (the ``time``
            dimension; default: the last ``recency_days``).
        out: the map folder (created; a folder holding this same map is resumed).
        settings: default ``Settings.from_env()``.
        executor: where windows run (default: a thread pool here; see the module docstring).
        resume: skip windows already done (False: compute every window again, same folder).
        overwrite: replace a folder that holds another map.
        formats: ``("zarr",)``, or with ``"cog"`` GeoTIFF mosaics with overviews too.
        window_px: side of one task's part of the map (a multiple of ``chunk_px``).
        chunk_px: Zarr chunk side.
        prob_dtype: ``uint8`` (default), ``float16`` or ``float32`` probabilities.
        progress: a tqdm bar on stderr.
        render: write ``quicklook.png`` and ``map.html`` of the newest date.
        signer: a callable ``href -> href`` that signs asset URLs (default ``settings.signer``);
            called inside each task, so tokens are fresh when a window reads. It travels to
            the workers of a process pool or Dask cluster: make it picklable.

    Raises InvalidInputError (bad area, dates, folder or options), OutsideDomainError, and the
    catalog's errors for the area searches; a failing window is recorded, not raised.
    """
    t_start = time.perf_counter()
    s = Settings.resolve(settings)
    fmts = tuple(formats)
    if not fmts or any(f not in FORMATS for f in fmts):
        raise InvalidInputError(f"formats must name some of {FORMATS}, got {formats!r}")
    if prob_dtype not in PROB_DTYPES:
        raise InvalidInputError(f"prob_dtype must be one of {PROB_DTYPES}, got {prob_dtype!r}")
    for name, v in (("window_px", window_px), ("chunk_px", chunk_px)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 16:
            raise InvalidInputError(f"{name} must be an integer >= 16, got {v!r}")
    if window_px % chunk_px:
        raise InvalidInputError(f"window_px ({window_px}) must be a multiple of chunk_px ({chunk_px}) so windows "
                                "write whole chunks")
    if executor is not None and not isinstance(executor, Executor):
        raise InvalidInputError(f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
    area = resolve_aoi(aoi, s)
    out_path = Path(out).resolve()  # workers of a cluster open it too: never relative to their own folder
    if when is None and not overwrite and (out_path / MANIFEST).exists():
        # resuming without dates: the map's own date windows (the default window moves with the clock)
        when = [tuple(t) for t in MapStore.open(out_path).layout.times]
    windows_t = check_when_list(when, s)
    MapStore.check_out(out_path)  # a file, another folder's contents, read-only: refused before the model loads
    runtime = current_pipeline().runtimes(s, None)
    info = runtime.model_info()
    heads = {k: {"classes": list(v["classes"]), "labels": list(v["labels"]), "colors": list(v["colors"]),
                 "threshold": v["threshold"]} for k, v in info.heads.items()}
    times = tuple((iso_z(a), iso_z(b)) for a, b in windows_t)
    ident = {"grid": area.grid.to_dict(), "times": times, "heads": heads, "prob_dtype": prob_dtype,
             "chunk_px": chunk_px, "window_px": window_px}
    layout = MapLayout(area.grid, times, heads, prob_dtype, chunk_px, window_px, _fingerprint(ident, s, info),
                       info.to_dict(), area.to_dict())
    store = MapStore.create(out_path, layout, overwrite=overwrite)
    records = store.records() if resume else {}

    rows, cols = layout.shape
    cells = [(i, j) for i in range(rows) for j in range(cols)
             if area.mask(sub_grid(area.grid, *_split(layout.core(i, j)))).any()]
    todo = [(t, i, j) for t in range(len(times)) for i, j in cells if not _finished(records.get((t, i, j), {}))]
    skipped = len(cells) * len(times) - len(todo)
    plan = runtime.plan(*area.grid.shape)  # type: ignore[attr-defined]
    from ..imagery.area_search import search_area
    from ..model.tiling import part_plan

    tasks: list[WindowTask] = []
    areas: dict[int, Any] = {}
    for t, i, j in todo:
        if t not in areas:
            a, b = windows_t[t]
            areas[t] = search_area(area.grid.bounds_4326, a, b, settings=s, deadline=Deadline(s.deadline_s * 4))
        part = part_plan(plan, layout.core(i, j))
        r0, r1, c0, c1 = part.read
        read_grid = sub_grid(area.grid, (r0, r1), (c0, c1))
        scale = max(1.0, (r1 - r0) * (c1 - c0) / float(224 * 224))
        tasks.append(WindowTask(str(store.path), t, (i, j), windows_t[t][0], windows_t[t][1],
                                areas[t].for_bbox(read_grid.bounds_4326), s, area,
                                min(s.deadline_s * math.sqrt(scale) * 2, 3600.0), signer))
    done, failed, sums = _run(store, tasks, executor, progress=progress, skipped=skipped)
    if done:
        store.consolidate()
    files: list[Path] = []
    if done or skipped:
        from .outputs import write_outputs

        files = write_outputs(store, formats=fmts, render=render, progress=progress)
    return MapRun(store.path, len(cells) * len(times), done, skipped, tuple(failed), time.perf_counter() - t_start, sums,
                  tuple(files))


def _split(core: tuple[int, int, int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    return (core[0], core[1]), (core[2], core[3])


def _run(store: MapStore, tasks: list[WindowTask], executor: Executor | None, *, progress: bool,
         skipped: int) -> tuple[int, list[dict[str, Any]], dict[str, float]]:
    from tqdm.auto import tqdm

    sums = {"read": 0.0, "model": 0.0, "write": 0.0}
    failed: list[dict[str, Any]] = []
    done = 0
    if not tasks:
        return done, failed, sums
    own = executor is None
    ex = ThreadPoolExecutor(max_workers=2, thread_name_prefix="terramind-map") if own else executor
    assert ex is not None
    bar = tqdm(total=len(tasks) + skipped, initial=skipped, unit="window", desc="map", disable=not progress,
               dynamic_ncols=True)
    try:
        futures: dict[Future[dict[str, Any]], WindowTask] = {ex.submit(run_window, task): task for task in tasks}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - a task lost by the executor (worker died past its retries)
                rec = {"time": task.time, "window": list(task.window), "status": "failed",
                       "error_type": type(exc).__name__, "error": redact(str(exc))}
            store.write_record(task.time, *task.window, rec)
            if rec.get("status") == "done":
                done += 1
                for k in sums:
                    sums[k] += float(rec.get("timings", {}).get(k, 0.0))
            else:
                failed.append(rec)
            bar.set_postfix(done=done, failed=len(failed), skipped=skipped, refresh=False)
            bar.update(1)
    finally:
        bar.close()
        if own:
            ex.shutdown(wait=True, cancel_futures=True)
    return done, failed, sums


def _finished(record: dict[str, Any]) -> bool:
    """Whether a window's record needs no rerun: done, with no modality lost to a failure."""
    return record.get("status") == "done" and not (record.get("chip") or {}).get("transient")
