"""Scene choice: the newest Sentinel-2 acquisition that is clear and covered *over the chip*.

The scene-wide ``eo:cloud_cover`` is only a loose prefilter (``scene_prefilter_cloud_pct``):
:func:`choose_s2` reads the SCL band on the chip grid for the newest candidate acquisitions in
parallel and picks the newest whose chip-level cloud and nodata fractions are within the
settings' limits. The SCL reader is passed in (the reader passes :func:`.reader.read_scl`), so
this module does no raster I/O of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..dates import iso_z
from ..errors import ChipError, ChipNodataError, NoSceneError
from ..sensors import SCL_CLOUD, SCL_NODATA
from ..settings import Settings
from ._tasks import Runner
from .items import asset_service, item_datetime
from .scenes import footprint_coverage, s2_acquisitions

if TYPE_CHECKING:  # pragma: no cover
    import pystac

    from ..grid import ChipGrid

__all__ = ["S2Choice", "SceneCheck", "SclReader", "choose_s2", "scl_fractions"]

log = logging.getLogger(__name__)

#: An SCL read of one item: the value or the exception it raised.
_Read = tuple["pystac.Item", "np.ndarray | Exception"]


class SclReader(Protocol):
    """Reads one item's SCL band onto the grid: uint8 ``(H, W)``, 0 where the item has no data."""

    def __call__(self, item: pystac.Item, grid: ChipGrid, *, settings: Settings) -> np.ndarray: ...


@dataclass(frozen=True)
class SceneCheck:
    """One S2 candidate acquisition as judged on the chip."""

    item_ids: tuple[str, ...]
    """Items of the acquisition (several for a chip across a tile edge)."""
    datetime: str
    """Acquisition time, ISO UTC."""
    cloud_fraction: float | None
    """Chip-level cloud fraction (SCL 3, 8, 9, 10 over valid pixels), 0..1; None when not read."""
    nodata_fraction: float | None
    """Chip-level nodata fraction (SCL 0, 1, or outside the footprints), 0..1; None when not read."""
    ok: bool
    """Whether it met the limits."""
    reason: str | None
    """Why it was rejected: ``"cloud"``, ``"nodata"``, ``"coverage"`` (footprints alone cover too
    little), ``"error"`` (its SCL could not be read), or None."""


@dataclass(frozen=True)
class S2Choice:
    """The chosen Sentinel-2 acquisition for a chip."""

    items: tuple[pystac.Item, ...]
    """The acquisition's items (one per MGRS tile), in mosaic order."""
    datetime: datetime
    """Acquisition time, aware UTC."""
    scl: np.ndarray
    """uint8 ``(H, W)`` SCL mosaic on the chip grid (nearest resampling; 0 = no data)."""
    cloud_fraction: float
    """Chip-level cloud fraction, 0..1."""
    nodata_fraction: float
    """Chip-level nodata fraction (SCL 0 or 1), 0..1."""
    checked: tuple[SceneCheck, ...] = field(default=())
    """Every candidate judged, newest first, the chosen one last."""


def scl_fractions(scl: np.ndarray) -> tuple[float, float]:
    """``(cloud_fraction, nodata_fraction)`` of an SCL chip (DESIGN section 2).

    cloud = pixels in :data:`~terramind_nyc.sensors.SCL_CLOUD` / pixels not in
    :data:`~terramind_nyc.sensors.SCL_NODATA`; nodata = pixels in ``SCL_NODATA`` / all.
    A chip without a valid pixel has cloud fraction 1.
    """
    invalid = np.isin(scl, SCL_NODATA)
    valid = int(scl.size - invalid.sum())
    cloud = int(np.isin(scl, SCL_CLOUD).sum())
    return (cloud / valid if valid else 1.0), (float(invalid.mean()) if scl.size else 1.0)


def _fmt_window(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"


def _when(g: Sequence[pystac.Item]) -> str:
    dt = item_datetime(g[0])
    return iso_z(dt) if dt else ""


def choose_s2(grid: ChipGrid, items: Sequence[pystac.Item], *, source: str, start: datetime, end: datetime,
              settings: Settings, runner: Runner, read_scl: SclReader) -> S2Choice:
    """The newest S2 acquisition among the searched ``items`` that is clear and covered over the chip.

    ``items`` are the S2 search over ``[start, end]`` with the ``scene_prefilter_cloud_pct``
    prefilter, newest first (``source`` names the catalog in messages). They are grouped into
    acquisitions; the SCL band of ``scene_candidates`` acquisitions at a time (all their items
    in parallel on ``runner``) is read with ``read_scl`` on the chip grid, and the newest one
    whose chip-level cloud fraction is <= ``max_cloud`` and nodata fraction <= ``max_nodata`` is
    returned.

    Raises:
        NoSceneError: nothing in the window (``reason="empty"``), or every candidate too cloudy
            over the chip (``reason="cloud"``); the message says how to widen the search.
        ChipNodataError: every candidate leaves too much of the chip without data (a swath
            edge or a point outside the imagery).
        ChipError: the SCL of every remaining candidate failed to read (``kind`` and ``status``
            of the first failure).
        DeadlineExceededError: the deadline passed.
    """
    s = settings
    window = _fmt_window(start, end)
    if not items:
        raise NoSceneError(
            f"no Sentinel-2 scene over this chip from {window} with scene-wide cloud < "
            f"{s.scene_prefilter_cloud_pct:g}% in {source}; widen the window (`when`, or "
            f"`recency_days`={s.recency_days}) or raise `scene_prefilter_cloud_pct`",
            reason="empty",
        )
    # acquisitions whose footprints alone leave too much of the chip empty are not read
    todo, checks = _screen_footprints(grid, s2_acquisitions(items), 1.0 - s.max_nodata)
    errors: list[Exception] = []
    n = max(1, s.scene_candidates)
    for b0 in range(0, len(todo), n):
        batch = todo[b0:b0 + n]
        reads = _read_scl_batch(runner, grid, batch, s, read_scl)
        for gi, g in enumerate(batch):
            check, choice = _judge(grid, g, reads.get(gi, []), s, errors)
            checks.append(check)
            if choice is not None:
                return replace(choice, checked=tuple(checks))
    raise _nothing_qualified(checks, errors, window, s)


def _screen_footprints(grid: ChipGrid, groups: list[list[pystac.Item]],
                       need_cover: float) -> tuple[list[list[pystac.Item]], list[SceneCheck]]:
    """``(acquisitions to read, checks of those skipped)``: skipped when the footprints cover too little."""
    todo: list[list[pystac.Item]] = []
    checks: list[SceneCheck] = []
    for g in groups:
        cov = footprint_coverage(grid, g)
        if cov is not None and cov < need_cover - 0.02:
            checks.append(SceneCheck(tuple(i.id for i in g), _when(g), None, round(1.0 - cov, 6), False, "coverage"))
            log.debug("S2 %s: footprints cover %.0f%% of the chip; skipped", [i.id for i in g], 100 * cov)
            continue
        todo.append(g)
    return todo, checks


def _read_scl_batch(runner: Runner, grid: ChipGrid, batch: list[list[pystac.Item]], s: Settings,
                    read_scl: SclReader) -> dict[int, list[_Read]]:
    """The SCL of every item of ``batch``, read in parallel: acquisition index -> [(item, array or error)]."""
    flat = [(gi, it) for gi, g in enumerate(batch) for it in g]
    futs = [runner.submit(read_scl, it, grid, settings=s) for _, it in flat]
    owner = {f: it for f, (_, it) in zip(futs, flat)}

    def describe(f: Future[Any]) -> tuple[str, str]:
        return f"reading the SCL of {owner[f].id}", asset_service(owner[f], "SCL")

    runner.wait_all(futs, describe, fail_fast=False)
    per_group: dict[int, list[_Read]] = {}
    for f, (gi, it) in zip(futs, flat):
        exc = f.exception()
        per_group.setdefault(gi, []).append((it, exc if isinstance(exc, Exception) else f.result()))
    return per_group


def _judge(grid: ChipGrid, g: list[pystac.Item], parts: list[_Read], s: Settings,
           errors: list[Exception]) -> tuple[SceneCheck, S2Choice | None]:
    """One acquisition judged on its SCL mosaic (first valid item wins): its check, and the choice
    when it meets the limits. Failed reads are added to ``errors``."""
    ids = tuple(i.id for i in g)
    dt = item_datetime(g[0])
    bad = [r for _, r in parts if isinstance(r, Exception)]
    if bad:
        errors.extend(bad)
        log.warning("S2 %s skipped: its SCL could not be read (%s)", ids, bad[0])
        return SceneCheck(ids, _when(g), None, None, False, "error"), None
    mosaic = np.zeros(grid.shape, dtype=np.uint8)
    for _, arr in parts:
        assert isinstance(arr, np.ndarray)
        np.copyto(mosaic, arr, where=(mosaic == 0) & (arr != 0))
    cf, nf = scl_fractions(mosaic)
    ok = cf <= s.max_cloud and nf <= s.max_nodata
    reason = None if ok else ("nodata" if nf > s.max_nodata else "cloud")
    check = SceneCheck(ids, _when(g), round(cf, 6), round(nf, 6), ok, reason)
    log.debug("S2 %s %s: chip cloud %.3f nodata %.3f -> %s", ids, dt, cf, nf, "ok" if ok else reason)
    if not ok:
        return check, None
    assert dt is not None
    return check, S2Choice(items=tuple(g), datetime=dt, scl=mosaic, cloud_fraction=cf, nodata_fraction=nf)


def _nothing_qualified(checks: list[SceneCheck], errors: list[Exception], window: str, s: Settings) -> Exception:
    """The error for a window where no candidate met the limits."""
    judged = [c for c in checks if c.reason in ("cloud", "nodata")]
    if not judged and errors:
        first = errors[0]
        kind, status = (first.kind, first.status) if isinstance(first, ChipError) else ("other", None)
        err: Exception = ChipError(
            f"the SCL band of every candidate Sentinel-2 scene ({len(checks)}) failed to read; first error: {first}",
            kind=kind, status=status,
        )
        err.__cause__ = first
        return err
    cloudy = [c for c in checks if c.reason == "cloud"]
    if not cloudy:
        best = max(checks, key=lambda c: 1.0 - (c.nodata_fraction if c.nodata_fraction is not None else 1.0))
        covered = 1.0 - (best.nodata_fraction if best.nodata_fraction is not None else 1.0)
        return ChipNodataError(
            f"no Sentinel-2 scene from {window} covers enough of this chip: the best ({best.datetime[:10]}) has "
            f"data on {covered:.0%} of it, {1.0 - s.max_nodata:.0%} is needed (`max_nodata`={s.max_nodata:g}); "
            "the point may lie at the edge of the imagery: move it, try another window, or raise `max_nodata`"
        )
    least = min(cloudy, key=lambda c: c.cloud_fraction if c.cloud_fraction is not None else 1.0)
    return NoSceneError(
        f"no Sentinel-2 scene with <= {s.max_cloud:.0%} cloud and <= {s.max_nodata:.0%} nodata over this chip "
        f"among {len(checks)} scene(s) from {window} (least cloudy: {least.cloud_fraction:.0%} on "
        f"{least.datetime[:10]}); widen the window (`when`, or `recency_days`={s.recency_days}) or raise `max_cloud`",
        reason="cloud",
    )
