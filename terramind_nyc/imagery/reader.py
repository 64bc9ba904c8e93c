"""Co-registered reads: S2, S1 and DEM onto the chip grid, with masks, units and provenance.

:func:`read_chip` is the whole imagery stage::

    chip = read_chip(chip_grid(40.7484, -73.9857))
    chip.arrays["S2L2A"].shape      # (12, 224, 224) float32, harmonised DN
    chip.masks["S2L2A"].mean()      # valid fraction
    chip.metadata()                 # JSON-safe provenance, no URLs

Data flow: search S2, S1 and the DEM at once (:mod:`.catalog`) -> read SCL of the newest S2
candidates on the grid and choose the acquisition (:mod:`.scene_choice`) -> read the 12 S2
bands of its items, the S1 pass nearest its date (:mod:`.scenes`) and the DEM tiles, every
asset in parallel (:mod:`.warp`) -> harmonise units (S2 offset per item, S1 dB) -> mosaic
items first-valid-wins (:mod:`.harmonise`) -> masks and checks. See ``docs/imagery.md`` for
why this and not odc-stac.

Invalid pixels are NaN in ``arrays`` and False in ``masks``; a chip whose S2 valid fraction is
below ``min_valid_fraction`` is an error (:class:`~terramind_nyc.errors.ChipNodataError`),
never zeros. S1 and DEM are optional: when they cannot be found or read the chip comes back
without them, lists them in ``missing`` with the reason in ``notes``, and warns
(:class:`~terramind_nyc.errors.MissingModalityWarning`).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..dates import iso_z, resolve_when
from ..deadline import Deadline
from ..errors import ChipNodataError, DeadlineExceededError, MissingModalityWarning, TerramindNYCError
from ..sensors import DEM_BANDS, MODALITIES, S1_BANDS, S2_BANDS, SCL_NODATA, UNITS
from ..settings import Settings
from ._gdal import clear_gdal_http_cache, gdal_options
from ._tasks import Describe, Runner
from .catalog import Catalog, get_catalog, warm_pystac
from .chip import Chip, ModalityProvenance
from .harmonise import mosaic, remove_s2_offset, s2_offset, to_db
from .items import asset_crs, asset_href, item_datetime
from .scene_choice import S2Choice, choose_s2
from .scenes import find_dem, pick_s1
from .urls import redact, service_of
from .warp import read_asset

if TYPE_CHECKING:  # pragma: no cover
    import pystac

    from ..grid import ChipGrid

__all__ = [
    "clear_gdal_http_cache",  # from ._gdal: part of the reader's surface (tests, long-running services)
    "gdal_options",  # from ._gdal: the options every read runs under
    "read_chip",
    "read_scl",
]

log = logging.getLogger(__name__)

#: One queued asset read: the item, the asset key, the future of its array.
_Read = tuple["pystac.Item", str, "Future[np.ndarray]"]


class _Absent(NamedTuple):
    """Why an optional modality is absent; ``transient`` when that was a failure (it may pass),
    not a fact about the data."""

    reason: str
    transient: bool


#: An optional modality's array, mask and provenance, or why it is absent.
_Optional = tuple[np.ndarray, np.ndarray, ModalityProvenance] | _Absent


def read_scl(item: pystac.Item, grid: ChipGrid, *, settings: Settings) -> np.ndarray:
    """The item's SCL band on the grid (nearest), uint8, 0 where the item has no data."""
    return read_asset(item, "SCL", grid, modality="S2L2A", resampling="nearest", settings=settings, dtype="uint8")


# ----------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------
class _Searches(NamedTuple):
    """The searches started together: S2, S1 (over the S2 window +- ``s1_window_days``), the DEM stage."""

    s2: Future[list[pystac.Item]]
    s1: Future[list[pystac.Item]]
    dem: Future[_Stage]


@dataclass
class _Stage:
    """An optional modality in flight: its items and the futures of its asset reads."""

    modality: str
    items: list[pystac.Item] | None = None
    reads: list[_Read] = field(default_factory=list)


def _submit_reads(runner: Runner, items: Sequence[pystac.Item], bands: Sequence[str], grid: ChipGrid, *,
                  modality: str, settings: Settings) -> list[_Read]:
    out = []
    for it in items:
        for b in bands:
            asset_href(it, b, modality)  # a missing key fails here, before any read is queued
        for b in bands:
            out.append((it, b, runner.submit(read_asset, it, b, grid, modality=modality, resampling="bilinear",
                                             settings=settings)))
    return out


def _start_searches(runner: Runner, grid: ChipGrid, cat: Catalog, s: Settings, start: datetime, end: datetime,
                    dl: Deadline) -> _Searches:
    """The S2 search, and the S1 and DEM searches beside it, so none waits for another (the S1
    pass is picked once the S2 date is known)."""
    s2 = runner.submit(cat.search, s.s2_collection, bbox_4326=grid.bounds_4326, start=start, end=end,
                       deadline=dl, cloud_lt=s.scene_prefilter_cloud_pct)
    w = timedelta(days=s.s1_window_days)
    s1 = runner.submit(cat.search, s.s1_collection, bbox_4326=grid.bounds_4326, start=start - w, end=end + w,
                       deadline=dl)
    dem = runner.submit(_stage_dem, runner, grid, cat, s, dl)
    return _Searches(s2, s1, dem)


def _stage_s1(runner: Runner, grid: ChipGrid, search: Future[list[pystac.Item]], s2_dt: datetime, s: Settings,
              source: str) -> _Stage:
    """Pick the S1 pass from the search started with the S2 search, and queue its reads."""
    items = runner.wait(search, f"searching {s.s1_collection}", source)
    st = _Stage("S1RTC", pick_s1(grid, items, s2_dt, settings=s))
    if st.items:
        st.reads = _submit_reads(runner, st.items, S1_BANDS, grid, modality="S1RTC", settings=s)
    return st


def _queue_s1(runner: Runner, grid: ChipGrid, search: Future[list[pystac.Item]], s2_dt: datetime, s: Settings,
              source: str) -> Future[_Stage]:
    """The S1 stage: run here when its search is done (the usual case: its reads are queued now,
    beside the S2 bands), else on the pool once the search ends."""
    if not search.done():
        return runner.submit(_stage_s1, runner, grid, search, s2_dt, s, source)
    fut: Future[_Stage] = Future()
    try:
        fut.set_result(_stage_s1(runner, grid, search, s2_dt, s, source))
    except Exception as exc:  # noqa: BLE001 - S1 is optional; handled with the other failures later
        fut.set_exception(exc)
    return fut


def _stage_dem(runner: Runner, grid: ChipGrid, cat: Catalog, s: Settings, dl: Deadline) -> _Stage:
    st = _Stage("DEM", find_dem(grid, cat, settings=s, deadline=dl))
    if st.items:
        st.reads = _submit_reads(runner, st.items, DEM_BANDS, grid, modality="DEM", settings=s)
    return st


def _describe(reads: Sequence[_Read]) -> Describe:
    index = {id(f): (it, b) for it, b, f in reads}

    def describe(f: Future[Any]) -> tuple[str, str]:
        it, b = index[id(f)]
        return f"reading asset {b!r} of {it.id}", service_of(it.assets[b].href)

    return describe


def _stack(reads: Sequence[_Read], items: Sequence[pystac.Item], bands: Sequence[str]) -> list[np.ndarray]:
    """Per item, the ``(bands, H, W)`` stack of its finished reads."""
    got = {(it.id, b): f.result() for it, b, f in reads}
    return [np.stack([got[(it.id, b)] for b in bands]) for it in items]


# ----------------------------------------------------------------------------------------
# read_chip
# ----------------------------------------------------------------------------------------
def read_chip(
    grid: ChipGrid,
    *,
    when: Any = None,
    settings: Settings | None = None,
    deadline: Deadline | None = None,
    catalog: Catalog | None = None,
) -> Chip:
    """Read S2 (required), S1 and DEM (optional) onto ``grid``.

    Args:
        grid: the chip grid (:func:`terramind_nyc.grid.chip_grid`).
        when: the date window, as :func:`terramind_nyc.dates.resolve_when` takes it
            (None: the last ``recency_days``).
        settings: default ``Settings.from_env()``.
        deadline: the request's overall deadline (default ``Deadline(settings.deadline_s)``).
        catalog: a catalog to use instead of ``get_catalog(settings)`` (e.g. one with a custom
            signer).

    Raises:
        InvalidInputError: a bad ``when``.
        NoSceneError: no S2 scene in the window (``reason="empty"``), or all too cloudy over the
            chip (``reason="cloud"``).
        ChipNodataError: too little of the chip has valid S2 data.
        CatalogError, ChipError: the catalog or an S2 asset failed (message names the step and
            the service; ``ChipError.kind`` / ``.status`` classify a failed read).
        DeadlineExceededError: the deadline passed before the S2 data were read.
    """
    s = Settings.resolve(settings)
    start, end = resolve_when(when, s)
    dl = deadline if deadline is not None else Deadline(s.deadline_s)
    cat = catalog if catalog is not None else get_catalog(s)
    warm_pystac()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with Runner(s.io_threads, dl) as runner:
        searches = _start_searches(runner, grid, cat, s, start, end, dl)
        items = runner.wait(searches.s2, f"searching {s.s2_collection}", cat.source)
        timings["search"] = time.perf_counter() - t0
        t = time.perf_counter()
        choice = choose_s2(grid, items, source=cat.source, start=start, end=end, settings=s, runner=runner,
                           read_scl=read_scl)
        timings["choose"] = time.perf_counter() - t
        t = time.perf_counter()
        s1_fut = _queue_s1(runner, grid, searches.s1, choice.datetime, s, cat.source)
        s2_reads = _submit_reads(runner, choice.items, S2_BANDS, grid, modality="S2L2A", settings=s)
        runner.wait_all([f for _, _, f in s2_reads], _describe(s2_reads))
        s2, s2_mask, s2_prov = _compose_s2(grid, choice, s2_reads, cat, s)
        arrays: dict[str, np.ndarray] = {"S2L2A": s2}
        masks: dict[str, np.ndarray] = {"S2L2A": s2_mask}
        prov: dict[str, ModalityProvenance] = {"S2L2A": s2_prov}
        notes: dict[str, str] = {}
        transient: list[str] = []
        for modality, fut in (("S1RTC", s1_fut), ("DEM", searches.dem)):
            res = _optional_or_reason(runner, fut, modality, grid, choice, cat, s)
            if isinstance(res, _Absent):
                notes[modality] = res.reason
                if res.transient:
                    transient.append(modality)
                continue
            arrays[modality], masks[modality], prov[modality] = res
        timings["read"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    missing = tuple(m for m in MODALITIES if m not in arrays)
    for m in missing:
        warnings.warn(f"{m} unavailable for this chip: {notes.get(m, 'unknown reason')}", MissingModalityWarning,
                      stacklevel=2)
    chip = Chip(grid=grid, arrays=arrays, masks=masks, scl=choice.scl, provenance=prov, missing=missing,
                notes=notes, transient=tuple(transient), window=(iso_z(start), iso_z(end)), timings=timings)
    log.debug("chip %s: %s in %.2f s (missing %s)", grid.bounds, list(arrays), timings["total"], missing)
    return chip


# ----------------------------------------------------------------------------------------
# Composing the modalities
# ----------------------------------------------------------------------------------------
def _reason(exc: BaseException) -> str:
    if isinstance(exc, DeadlineExceededError):
        return f"did not finish before the deadline ({exc})"
    return str(exc)


def _compose_s2(grid: ChipGrid, choice: S2Choice, reads: Sequence[_Read], cat: Catalog,
                s: Settings) -> tuple[np.ndarray, np.ndarray, ModalityProvenance]:
    stacks = _stack(reads, choice.items, S2_BANDS)
    offsets = []
    for it, arr in zip(choice.items, stacks):
        off = s2_offset(it)
        offsets.append(off)
        remove_s2_offset(arr, off)
    s2 = mosaic(stacks)
    mask = np.isfinite(s2).all(axis=0) & ~np.isin(choice.scl, SCL_NODATA)
    s2[:, ~mask] = np.nan
    valid = float(mask.mean())
    if valid < s.min_valid_fraction:
        raise ChipNodataError(
            f"only {valid:.0%} of the chip has valid Sentinel-2 data ({', '.join(i.id for i in choice.items)}); "
            f"at least {s.min_valid_fraction:.0%} is needed (`min_valid_fraction`): the point may be at the edge "
            "of the imagery: move it, try another window, or lower `min_valid_fraction`"
        )
    prov = ModalityProvenance(
        modality="S2L2A", collection=s.s2_collection, provider=cat.provider, catalog=cat.source,
        item_ids=tuple(i.id for i in choice.items),
        datetimes=tuple(iso_z(item_datetime(i) or choice.datetime) for i in choice.items),
        bands=S2_BANDS, units=UNITS["S2L2A"],
        source_crs=tuple(asset_crs(i, "B04") for i in choice.items),
        resampling="bilinear", nodata_fraction=round(1.0 - valid, 6),
        processing_baselines=tuple(
            (None if (i.properties or {}).get("s2:processing_baseline") is None
             else str(i.properties["s2:processing_baseline"])) for i in choice.items),
        offsets_dn=tuple(offsets), offset_removed=any(o > 0 for o in offsets),
        cloud_fraction=round(choice.cloud_fraction, 6), candidates_checked=len(choice.checked),
    )
    return s2, mask, prov


def _optional_or_reason(runner: Runner, fut: Future[_Stage], modality: str, grid: ChipGrid, choice: S2Choice,
                        cat: Catalog, s: Settings) -> _Optional:
    """:func:`_finish_optional`, with every failure turned into a transient :class:`_Absent` (an optional
    modality never fails the chip; a failure may pass, so the chip is not cached)."""
    try:
        res = _finish_optional(runner, fut, modality, grid, choice, cat, s)
    except (TerramindNYCError, OSError) as exc:
        reason = _reason(exc)
        log.info("%s unavailable: %s", modality, reason)
        return _Absent(reason, True)
    except Exception as exc:  # an optional modality never fails the chip
        log.warning("%s unavailable after an unexpected error", modality, exc_info=True)
        return _Absent(f"{type(exc).__name__}: {redact(str(exc))}", True)
    return _Absent(res, False) if isinstance(res, str) else res


def _finish_optional(runner: Runner, fut: Future[_Stage], modality: str, grid: ChipGrid, choice: S2Choice,
                     cat: Catalog, s: Settings) -> tuple[np.ndarray, np.ndarray, ModalityProvenance] | str:
    """Wait for an optional modality; its array, mask and provenance, or the reason (in the data) it is absent."""
    coll = s.s1_collection if modality == "S1RTC" else s.dem_collection
    st = runner.wait(fut, f"searching {coll}", cat.source)
    if not st.items:
        if modality == "S1RTC":
            return (f"no {coll} acquisition within +-{s.s1_window_days} days of the S2 scene "
                    f"({iso_z(choice.datetime)}) covers the chip in {cat.source}; raise `s1_window_days`")
        return f"no {coll} item covers the chip in {cat.source}"
    runner.wait_all([f for _, _, f in st.reads], _describe(st.reads))
    bands = S1_BANDS if modality == "S1RTC" else DEM_BANDS
    arr = mosaic(_stack(st.reads, st.items, bands))
    mask = np.isfinite(arr).all(axis=0)
    arr[:, ~mask] = np.nan
    if modality == "S1RTC":
        arr = to_db(arr)
        arr[:, ~mask] = np.nan
    valid = float(mask.mean())
    if valid < s.min_valid_fraction:
        return (f"{modality} has valid data on only {valid:.0%} of the chip (< `min_valid_fraction` "
                f"{s.min_valid_fraction:.0%}; items {', '.join(i.id for i in st.items)})")
    dts = [item_datetime(i) for i in st.items]
    prov = ModalityProvenance(
        modality=modality, collection=coll, provider=cat.provider, catalog=cat.source,
        item_ids=tuple(i.id for i in st.items), datetimes=tuple(iso_z(d) if d else "" for d in dts),
        bands=bands, units=UNITS[modality],
        source_crs=tuple(asset_crs(i, bands[0]) for i in st.items),
        resampling="bilinear", nodata_fraction=round(1.0 - valid, 6),
        time_offset_days=(round(((dts[0] - choice.datetime).total_seconds()) / 86400.0, 4)
                          if modality == "S1RTC" and dts and dts[0] else None),
    )
    return arr.astype(np.float32, copy=False), mask, prov
