"""The stages of one request, with the chip reader and the model runtime injectable.

grid -> imagery (chip reader) -> model (runtime) -> summary -> :class:`~terramind_nyc.result.Result`.

This module and :mod:`terramind_nyc.api` are the only ones that know both
:mod:`terramind_nyc.imagery` and :mod:`terramind_nyc.model`. A :class:`Pipeline` holds the two
seams, typed by Protocols: a :class:`ChipReader` (default: the STAC reader,
:func:`terramind_nyc.imagery.reader.read_chip`) and a :class:`RuntimeSource` (default: the
process-wide runtime of :func:`terramind_nyc.model.backends.get_runtime`, checked against the
reader's S2 offset rule). The public calls run :func:`current_pipeline`; tests and embedders
swap in their own reader or runtime with :func:`use_pipeline`::

    with use_pipeline(Pipeline(reader=my_reader, runtimes=lambda settings, deadline=None: my_runtime)):
        fetch(40.7484, -73.9857)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .cache import get_caches, stable_key
from .dates import parse_iso, resolve_when
from .deadline import Deadline
from .errors import BackendError, CheckpointError, InvalidInputError, MissingModalityWarning, StaleSceneWarning
from .jsonsafe import json_safe
from .request import Request, check_size, window_key
from .result import Provenance, Result
from .sensors import READER_S2_OFFSET
from .settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from .grid import ChipGrid
    from .imagery.chip import Chip
    from .model.runtime import ModelInfo

__all__ = [
    "ChipReader",
    "ModelRuntime",
    "Pipeline",
    "Request",
    "RuntimeSource",
    "check_size",
    "current_pipeline",
    "default_reader",
    "default_runtime",
    "use_pipeline",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------
# Seams
# ----------------------------------------------------------------------------------------
class ChipReader(Protocol):
    """Reads co-registered imagery onto a grid for a date window (the imagery stage)."""

    def __call__(self, grid: ChipGrid, start: datetime, end: datetime, settings: Settings,
                 deadline: Deadline) -> Chip: ...


class Predicted(Protocol):
    """What a runtime's ``predict`` returns."""

    @property
    def probabilities(self) -> Mapping[str, np.ndarray]: ...


class ModelRuntime(Protocol):
    """A loaded model (the model stage): its identity and a tiled pass over raw arrays."""

    def model_info(self) -> ModelInfo: ...

    def predict(self, arrays: Mapping[str, np.ndarray],
                masks: Mapping[str, np.ndarray] | None = None) -> Predicted: ...


class RuntimeSource(Protocol):
    """Gives the runtime for a settings object (loaded once, reused).

    ``deadline``: the request's deadline; a source that loads stops waiting at it with
    DeadlineExceededError (None: wait as long as the load takes).
    """

    def __call__(self, settings: Settings, deadline: Deadline | None = None) -> ModelRuntime: ...


def default_reader(grid: ChipGrid, start: datetime, end: datetime, settings: Settings, deadline: Deadline) -> Chip:
    """The STAC chip reader (:func:`terramind_nyc.imagery.reader.read_chip`) for ``start..end``."""
    from .imagery.reader import read_chip

    return read_chip(grid, when=(start, end), settings=settings, deadline=deadline)


def default_runtime(settings: Settings, deadline: Deadline | None = None) -> ModelRuntime:
    """The process-wide runtime for ``settings``, refused when its S2 offset rule is not the reader's.

    Loaded under ``deadline`` (:func:`terramind_nyc.model.backends.get_runtime`).

    The reader harmonises S2 with one rule (:data:`terramind_nyc.sensors.READER_S2_OFFSET`); a
    checkpoint trained with another would be fed shifted inputs, so it is refused rather than run.
    """
    from .model.backends import get_runtime

    rt = get_runtime(settings, deadline=deadline)
    rule = rt.config.s2_offset
    if not READER_S2_OFFSET.same_as(rule):
        raise CheckpointError(
            f"the checkpoint's S2 offset rule ({rule.describe()}) differs from the one this library's reader "
            f"applies ({READER_S2_OFFSET.describe()}): retrain or re-export it with the reader's rule")
    return rt


@dataclass(frozen=True)
class ModelPass:
    """One model pass over one chip (a point's own window, or a window shared by neighbours)."""

    chip: Chip
    """The imagery the model saw."""
    probabilities: Mapping[str, np.ndarray]
    """Per head ``(classes, H, W)`` probabilities on ``chip.grid``."""
    info: ModelInfo
    """The model that ran."""
    rgb: np.ndarray | None
    """True colour of the whole chip (computed once per pass)."""


def _crop(array: np.ndarray, outer: ChipGrid, inner: ChipGrid) -> np.ndarray:
    row, col = outer.window(inner)
    return array[..., row:row + inner.height, col:col + inner.width]


def _age_days(iso: Any, now: datetime) -> float | None:
    dt = parse_iso(iso)
    return None if dt is None else round((now - dt).total_seconds() / 86400.0, 2)


def _imagery_provenance(chip: Chip, now: datetime) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, prov in chip.provenance.items():
        d = json_safe(prov)
        dts = d.get("datetimes") or []
        d["age_days"] = _age_days(dts[0] if dts else None, now)
        out[name] = d
    return out


def _warn_missing(chip: Chip) -> None:
    for m in chip.missing:
        warnings.warn(f"{m} unavailable for this chip; the model ran without it (see result.provenance)",
                      MissingModalityWarning, stacklevel=5)


# ----------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pipeline:
    """The request stages over one chip reader and one runtime source."""

    reader: ChipReader = default_reader
    """Reads a chip for a grid and date window."""
    runtimes: RuntimeSource = default_runtime
    """Gives the runtime for a settings object."""

    def chip(self, grid: ChipGrid, start: datetime, end: datetime, settings: Settings, deadline: Deadline) -> Chip:
        """The chip from the chip cache (memory, then ``cache_dir``) or the reader.

        The reader warns about missing modalities itself; a chip served from a cache is warned
        about here, so every fetch warns once. A chip that lacks a modality through a failure
        (``Chip.transient``) is not cached: the next request reads again.
        """
        caches = get_caches(settings)
        if caches is None:
            return self.reader(grid, start, end, settings, deadline)
        key = stable_key("chip", grid.cache_key(), window_key(start, end), settings.key("chip"))
        read = []

        def compute() -> Chip:
            from .imagery.chip import Chip

            disk = caches.read_disk(key)  # optional on-disk chip cache (settings.cache_dir)
            if disk is not None:
                try:
                    return Chip.from_arrays(*disk)
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("ignoring unusable on-disk chip cache entry: %s", exc)
            read.append(True)
            chip = self.reader(grid, start, end, settings, deadline)
            if caches.cache_dir is not None and not chip.transient:
                try:
                    caches.write_disk(key, *chip.to_arrays())
                except OSError as exc:
                    log.warning("could not write the on-disk chip cache in %s: %s", caches.cache_dir, exc)
            return chip

        chip = caches.chips.get_or_compute(key, compute, keep=lambda c: not c.transient)
        if not read:
            _warn_missing(chip)
        return chip

    def run_model(self, chip: Chip, runtime: ModelRuntime, *, part: Any = None, rgb: bool = True) -> ModelPass:
        """One pass of ``runtime`` over the modalities of ``chip`` it takes.

        ``part``: a :class:`~terramind_nyc.model.tiling.PartPlan` when ``chip`` is the read block
        of one part of a larger window (city maps); the probabilities then cover the part.
        ``rgb=False`` skips the true-colour image.
        """
        info = runtime.model_info()
        arrays = {m: a for m, a in chip.arrays.items() if m in info.modalities}
        masks = {m: chip.masks[m] for m in arrays if m in chip.masks}
        if part is None:
            probs = runtime.predict(arrays, masks).probabilities
        else:
            probs = runtime.predict(arrays, masks, part=part).probabilities  # type: ignore[call-arg]
        for head, p in probs.items():
            if not np.isfinite(p).all():
                raise BackendError(
                    f"the model {info.checkpoint.get('id')!r} ({info.backend}) produced non-finite {head!r} "
                    "probabilities: its weights or inputs are broken (NaN/inf); re-download or re-export the "
                    "checkpoint, or try backend='torch' / precision='fp32'")
        return ModelPass(chip=chip, probabilities=probs, info=info, rgb=chip.rgb() if rgb else None)

    def result(self, request: Request, run: ModelPass, timings: dict[str, float], t_start: float) -> Result:
        """Summarise ``run`` over ``request``'s grid (a crop of the pass's chip) into a Result."""
        from .grid import summary_mask
        from .summary import summarise

        grid, chip, info = request.grid, run.chip, run.info
        t = time.perf_counter()
        probs = {k: np.ascontiguousarray(_crop(v, chip.grid, grid)) for k, v in run.probabilities.items()}
        valid = _crop(chip.masks["S2L2A"], chip.grid, grid)
        area = summary_mask(grid, request.lat, request.lon, request.radius_m)
        if info.building_threshold is None:
            raise CheckpointError("the checkpoint has no `buildings` head with a threshold; fetch needs one")
        summary = summarise(probs, lulc_classes=info.lulc_classes, building_threshold=info.building_threshold,
                            area=area, valid=valid)
        rgb = None if run.rgb is None else np.ascontiguousarray(_crop(run.rgb, chip.grid, grid))
        timings = dict(timings, summary=time.perf_counter() - t)
        timings["total"] = time.perf_counter() - t_start
        now = datetime.now(UTC)
        notes = [f"{m} unavailable; the model ran without it" for m in chip.missing]
        imagery = _imagery_provenance(chip, now)
        end = request.end
        prov = Provenance(
            imagery=imagery,
            modalities_used=tuple(m for m in info.modalities if m in chip.arrays),
            modalities_missing=tuple(chip.missing),
            checkpoint=dict(info.checkpoint),
            backend=info.backend,
            device=info.device,
            precision=info.precision,
            catalog=chip.provider,
            date_window=(request.start.isoformat(), end.isoformat()),
        )
        s2_dt = parse_iso(prov.s2_acquired)
        if s2_dt is not None and (end - s2_dt).total_seconds() > request.settings.stale_after_days * 86400.0:
            msg = (f"the newest usable Sentinel-2 scene ({s2_dt:%Y-%m-%d}) is {(end - s2_dt).days} days older than "
                   f"the window end ({end:%Y-%m-%d}); land cover may have changed since")
            notes.append(msg)
            warnings.warn(msg, StaleSceneWarning, stacklevel=4)
        return Result(lat=request.lat, lon=request.lon, radius_m=request.radius_m, summary=summary,
                      class_names=tuple(info.lulc_classes), class_colors=tuple(info.lulc_colors),
                      heads={k: {"labels": v["classes"], **v} for k, v in info.heads.items()}, grid=grid,
                      provenance=prov, timings=timings, warnings=tuple(notes), probabilities=probs,
                      summary_area=area, valid=valid, rgb=rgb)

    def request(self, lat: Any, lon: Any, *, when: Any, size_m: float | None, radius_m: float | None,
                settings: Settings) -> Request:
        """Validate one point's inputs into a :class:`Request`."""
        from .grid import chip_grid
        from .location import validate_location

        la, lo = validate_location(lat, lon, settings)
        size, radius = check_size(size_m, radius_m, settings)
        start, end = resolve_when(when, settings)
        grid = chip_grid(la, lo, size_m=size, settings=settings)
        return Request(la, lo, radius, grid, start, end, settings)

    def fetch(self, lat: Any, lon: Any, *, when: Any = None, size_m: float | None = None,
              radius_m: float | None = None, settings: Settings | None = None) -> Result:
        """:func:`terramind_nyc.fetch` through this pipeline's reader and runtime."""
        t_start = time.perf_counter()
        s = Settings.resolve(settings)
        req = self.request(lat, lon, when=when, size_m=size_m, radius_m=radius_m, settings=s)
        timings = {"grid": time.perf_counter() - t_start}
        deadline = Deadline(s.deadline_s)  # the whole call: model load, imagery, model pass
        t = time.perf_counter()
        runtime = self.runtimes(s, deadline)
        timings["load_model"] = time.perf_counter() - t
        caches = get_caches(s)
        rkey = None
        if caches is not None:
            rkey = req.result_key(runtime.model_info())
            hit = caches.results.peek(rkey)
            if hit is not None:
                # the answer of the same snapped grid (and circle): report the point that was asked for
                return dataclasses.replace(hit, cached=True, lat=req.lat, lon=req.lon,
                                           timings=dict(hit.timings, total=time.perf_counter() - t_start))

        transient: list[str] = []  # the chip's transiently missing modalities: such a result is not cached

        def compute() -> Result:
            t = time.perf_counter()
            chip = self.chip(req.grid, req.start, req.end, s, deadline)
            transient.extend(chip.transient)
            timings["imagery"] = time.perf_counter() - t
            # the reader's own stages (STAC search, SCL scoring of candidates, pixel reads); absent on a cache hit
            for stage in ("search", "choose", "read"):
                if stage in chip.timings and timings["imagery"] >= chip.timings[stage]:
                    timings[f"imagery_{stage}"] = float(chip.timings[stage])
            t = time.perf_counter()
            run = self.run_model(chip, runtime)
            timings["model"] = time.perf_counter() - t
            return self.result(req, run, timings, t_start)

        if caches is None or rkey is None:
            return compute()
        # Single flight: concurrent calls for the same key wait for one computation.
        return caches.results.get_or_compute(rkey, compute, keep=lambda _: not transient)


_DEFAULT = Pipeline()
_current = _DEFAULT
_current_lock = threading.Lock()


def current_pipeline() -> Pipeline:
    """The pipeline the public calls run (the default one unless :func:`use_pipeline` is active)."""
    return _current


@contextlib.contextmanager
def use_pipeline(pipeline: Pipeline) -> Iterator[Pipeline]:
    """Run the public calls (``fetch``, ``fetch_many``, the CLI, batch) through ``pipeline`` in this block.

    Process-wide (the batch workers are threads), restored on exit; for tests and embedders
    that bring their own chip reader or runtime.
    """
    global _current
    if not isinstance(pipeline, Pipeline):
        raise InvalidInputError(f"use_pipeline needs a Pipeline, got {type(pipeline).__name__}")
    with _current_lock:
        previous, _current = _current, pipeline
    try:
        yield pipeline
    finally:
        with _current_lock:
            _current = previous
