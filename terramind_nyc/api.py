"""The public calls: :func:`fetch`, :func:`fetch_many`, :func:`fetch_riprap` and :class:`Result`.

This is the only module that knows every stage:
grid -> catalog/chips -> runtime -> summary -> Result.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._version import __version__
from .cache import get_caches, stable_key
from .errors import (
    InvalidInputError,
    InvalidLocationError,
    MissingModalityWarning,
    StaleSceneWarning,
    TerramindNYCError,
)
from .settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from .imagery.reader import Chip
    from .grid import ChipGrid

__all__ = ["fetch", "fetch_many", "fetch_riprap", "Result", "Provenance", "BatchItem"]

log = logging.getLogger(__name__)

WhenLike = "None | str | date | datetime | tuple[date | datetime | str, date | datetime | str]"


# ----------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Provenance:
    """Where a result came from: scenes, model, backend, and settings that shaped it."""

    imagery: dict[str, dict[str, Any]]
    """Per modality (S2L2A, S1RTC, DEM): item ids, acquisition datetimes (ISO UTC), age in days,
    chip-level cloud / nodata fractions (0..1), offset handling, collection and provider."""
    modalities_used: tuple[str, ...]
    """Modalities the model saw."""
    modalities_missing: tuple[str, ...]
    """Modalities that were unavailable (the model ran without them)."""
    checkpoint: dict[str, Any]
    """Checkpoint id, revision, model name, version and sha256 of the weights."""
    backend: str
    """Inference backend that ran (``torch``, ``onnx`` or ``openvino``)."""
    device: str
    """Device / execution provider that ran the model."""
    precision: str
    """Numeric precision the network ran in: ``fp32``, ``bf16`` (or ``fp16`` for a float16 ONNX
    export); see the ``precision`` setting."""
    catalog: str
    """STAC provider the imagery came from."""
    date_window: tuple[str, str]
    """Searched acquisition window (ISO UTC start, end)."""
    library_version: str = __version__
    """terramind_nyc version that produced the result."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "imagery": _jsonable(self.imagery),
            "modalities_used": list(self.modalities_used),
            "modalities_missing": list(self.modalities_missing),
            "checkpoint": _jsonable(self.checkpoint),
            "backend": self.backend,
            "device": self.device,
            "precision": self.precision,
            "catalog": self.catalog,
            "date_window": list(self.date_window),
            "library_version": self.library_version,
        }


@dataclass(frozen=True)
class Result:
    """What :func:`fetch` returns. Fractions are 0..1; the rasters stay out of :meth:`to_dict`."""

    lat: float
    """Requested latitude (degrees)."""
    lon: float
    """Requested longitude (degrees)."""
    radius_m: float | None
    """Radius of the summary circle in metres, or None for the whole window."""
    building_density: float
    """Share of the summary area predicted as building (probability >= threshold), 0..1."""
    building_probability_mean: float
    """Mean building probability over the summary area, 0..1."""
    n_building_components: int
    """Connected groups of building pixels in the summary area."""
    lulc_fractions: dict[str, float]
    """Share of the summary area per land-cover class by argmax label; sums to 1."""
    lulc_fractions_mean_prob: dict[str, float]
    """Mean probability per land-cover class over the summary area; sums to 1."""
    dominant_class: str
    """Land-cover class with the largest share."""
    confidence: float
    """Mean top-1 land-cover probability over the summary area, 0..1."""
    nodata_fraction: float
    """Share of the summary area without valid imagery, 0..1."""
    building_threshold: float
    """Building probability threshold used (from the checkpoint config)."""
    class_names: tuple[str, ...]
    """Land-cover class names in model order (from the checkpoint config)."""
    class_colors: tuple[str, ...]
    """Display colours (hex) of the land-cover classes (from the checkpoint config)."""
    grid: ChipGrid
    """The window the model ran on: CRS, transform, bounds in UTM and EPSG:4326."""
    provenance: Provenance
    """Scenes, dates, model, backend."""
    timings: dict[str, float]
    """Seconds per stage (grid, imagery, model, summary, total)."""
    warnings: tuple[str, ...] = ()
    """Degradations worth knowing (missing modality, old scene, ...)."""
    cached: bool = False
    """True when this result came from the result cache."""
    probabilities: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    """Per head class probabilities (classes, H, W) float32 on ``grid``."""
    summary_area: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Bool (H, W): pixels the figures summarise."""
    valid: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Bool (H, W): pixels with valid Sentinel-2 input."""
    rgb: np.ndarray | None = field(default=None, repr=False, compare=False)
    """uint8 (3, H, W) true-colour Sentinel-2 for display, when available."""

    # --- rasters -----------------------------------------------------------------------
    @property
    def lulc_map(self) -> np.ndarray:
        """uint8 (H, W) land-cover class index (argmax); 255 where input was invalid."""
        out = np.argmax(self.probabilities["lulc"], axis=0).astype(np.uint8)
        if self.valid is not None:
            out[~self.valid] = 255
        return out

    @property
    def building_probability(self) -> np.ndarray:
        """float32 (H, W) building probability."""
        return np.asarray(self.probabilities["buildings"][1], dtype=np.float32)

    @property
    def building_mask(self) -> np.ndarray:
        """bool (H, W) building decision (probability >= threshold, valid input only)."""
        m = self.building_probability >= self.building_threshold
        return m if self.valid is None else m & self.valid

    # --- views -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every figure, the grid and the provenance (no rasters)."""
        return {
            "lat": self.lat,
            "lon": self.lon,
            "radius_m": self.radius_m,
            "building_density": _num(self.building_density),
            "building_probability_mean": _num(self.building_probability_mean),
            "n_building_components": self.n_building_components,
            "building_threshold": self.building_threshold,
            "lulc_fractions": {k: _num(v) for k, v in self.lulc_fractions.items()},
            "lulc_fractions_mean_prob": {k: _num(v) for k, v in self.lulc_fractions_mean_prob.items()},
            "dominant_class": self.dominant_class,
            "confidence": _num(self.confidence),
            "nodata_fraction": _num(self.nodata_fraction),
            "class_names": list(self.class_names),
            "class_colors": list(self.class_colors),
            "grid": _jsonable(self.grid.to_dict()),
            "provenance": self.provenance.to_dict(),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
            "cached": self.cached,
        }

    def to_riprap(self, *, polygons: bool = False) -> dict[str, Any]:
        """The Riprap specialist's dict: percentages 0-100, ``ok: True`` (see DESIGN section 5)."""
        s2 = self.provenance.imagery.get("S2L2A", {})
        s1 = self.provenance.imagery.get("S1RTC", {})
        ck = self.provenance.checkpoint
        out: dict[str, Any] = {
            "ok": True,
            "class_fractions": {k: _pct(v) for k, v in self.lulc_fractions.items()},
            "dominant_class": self.dominant_class,
            "dominant_pct": _pct(self.lulc_fractions.get(self.dominant_class, float("nan"))),
            "pct_buildings": _pct(self.building_density),
            "n_building_components": self.n_building_components,
            "class_labels": list(self.class_names),
            "bounds_4326": [float(v) for v in self.grid.bounds_4326],
            "imagery": {
                "s2_acquired_iso": _first(s2.get("datetimes")),
                "s2_age_days": s2.get("age_days"),
                "s2_cloud_pct": _pct(s2["cloud_fraction"]) if s2.get("cloud_fraction") is not None else None,
                "s1_acquired_iso": _first(s1.get("datetimes")),
                "s1_age_days": s1.get("age_days"),
                "source": self.provenance.catalog,
            },
            "model": f"{ck.get('name', ck.get('id'))}@{ck.get('version', '?')} ({str(ck.get('sha256', ''))[:12]})",
            "elapsed_s": round(float(self.timings.get("total", 0.0)), 3),
        }
        if polygons:
            out["polygons_geojson"] = self.to_geojson()
        return out

    # --- outputs -----------------------------------------------------------------------
    def to_geotiff(self, path: str | Path) -> Path:
        """Write class maps and probabilities as a georeferenced, tiled GeoTIFF (COG-friendly)."""
        from .outputs import write_geotiff

        return write_geotiff(self, Path(path))

    def to_geojson(self, *, simplify_m: float = 10.0) -> dict[str, Any]:
        """Building and land-cover polygons in EPSG:4326 with class name and colour."""
        from .outputs import to_geojson

        return to_geojson(self, simplify_m=simplify_m)

    def quicklook(self, path: str | Path) -> Path:
        """PNG: true colour, land-cover map with legend, building probability, summary outline."""
        from .outputs import quicklook

        return quicklook(self, Path(path))


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _pct(v: float) -> float | None:
    n = _num(v)
    return None if n is None else round(100.0 * n, 2)


def _first(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return v[0] if v else None
    return v


def _jsonable(obj: Any) -> Any:
    """Recursively turn numpy scalars/arrays, tuples, datetimes and paths into JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ----------------------------------------------------------------------------------------
# fetch
# ----------------------------------------------------------------------------------------
def _resolve_settings(settings: Settings | None) -> Settings:
    if settings is None:
        return Settings.from_env()
    if not isinstance(settings, Settings):
        raise InvalidInputError(f"settings must be a terramind_nyc.Settings, got {type(settings).__name__}")
    return settings


def _check_size(size_m: float | None, radius_m: float | None, settings: Settings) -> tuple[float, float | None]:
    size = settings.size_m if size_m is None else size_m
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not math.isfinite(size) or size <= 0:
        raise InvalidInputError(f"size_m must be a positive number of metres, got {size_m!r}")
    if size < settings.resolution_m:
        raise InvalidInputError(f"size_m={size} is smaller than one {settings.resolution_m} m pixel")
    if size > 20_000:
        raise InvalidInputError(f"size_m={size} is larger than the 20 km this library serves in one call; "
                                "use fetch_many for many points")
    if radius_m is not None:
        if isinstance(radius_m, bool) or not isinstance(radius_m, (int, float)) or not math.isfinite(radius_m) \
                or radius_m <= 0:
            raise InvalidInputError(f"radius_m must be a positive number of metres or None, got {radius_m!r}")
        if 2 * radius_m > size:
            if size_m is not None:
                raise InvalidInputError(
                    f"radius_m={radius_m} does not fit in a {size} m window; pass size_m >= {2 * radius_m} or omit it"
                )
            size = float(math.ceil(2 * radius_m / settings.resolution_m) * settings.resolution_m)
        radius_m = float(radius_m)
    return float(size), radius_m


def _chip_settings_key(settings: Settings) -> tuple[Any, ...]:
    """The settings that change which imagery a chip holds."""
    return settings.key("chip")


def _grid_key(grid: ChipGrid) -> tuple[Any, ...]:
    return (grid.crs, tuple(round(v, 6) for v in tuple(grid.transform)[:6]), grid.width, grid.height)


def _window_key(start: datetime, end: datetime) -> tuple[str, str]:
    # Day resolution: "the last 120 days" asked twice on one day is the same question.
    return (start.date().isoformat(), end.date().isoformat())


def _read_chip(grid: ChipGrid, start: datetime, end: datetime, settings: Settings, deadline: Any) -> Chip:
    from .imagery.reader import read_chip

    return read_chip(grid, when=(start, end), settings=settings, deadline=deadline)


def _get_chip(grid: ChipGrid, start: datetime, end: datetime, settings: Settings, deadline: Any) -> Chip:
    """The chip from the chip cache or the reader. The reader warns about missing modalities
    itself; a chip served from the cache is warned about here, so every fetch warns once."""
    caches = get_caches(settings)
    if caches is None:
        return _read_chip(grid, start, end, settings, deadline)
    key = stable_key("chip", _grid_key(grid), _window_key(start, end), _chip_settings_key(settings))
    read = []

    def compute() -> Chip:
        disk = caches.read_disk(key)  # optional on-disk chip cache (settings.cache_dir)
        if disk is not None:
            from .imagery.reader import Chip

            try:
                return Chip.from_arrays(*disk)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring unusable on-disk chip cache entry: %s", exc)
        read.append(True)
        chip = _read_chip(grid, start, end, settings, deadline)
        if caches.cache_dir is not None and hasattr(chip, "to_arrays"):
            try:
                caches.write_disk(key, *chip.to_arrays())
            except OSError as exc:
                log.warning("could not write the on-disk chip cache in %s: %s", caches.cache_dir, exc)
        return chip

    chip = caches.chips.get_or_compute(key, compute)
    if not read:
        _warn_missing(chip)
    return chip


def _parse_iso(iso: Any) -> datetime | None:
    """An aware UTC datetime from an ISO string (None when absent or unreadable)."""
    if not iso:
        return None
    try:
        dt = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _age_days(iso: Any, now: datetime) -> float | None:
    dt = _parse_iso(iso)
    return None if dt is None else round((now - dt).total_seconds() / 86400.0, 2)


def _imagery_provenance(chip: Chip, now: datetime) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, prov in chip.provenance.items():
        d = prov.to_dict() if hasattr(prov, "to_dict") else dict(dataclasses.asdict(prov))
        dts = d.get("datetimes") or []
        d["age_days"] = _age_days(dts[0] if dts else None, now)
        out[name] = _jsonable(d)
    return out


def _crop(array: np.ndarray, outer: ChipGrid, inner: ChipGrid) -> np.ndarray:
    row, col = outer.window(inner)
    return array[..., row:row + inner.height, col:col + inner.width]


def _build_result(
    *,
    lat: float,
    lon: float,
    radius_m: float | None,
    grid: ChipGrid,
    chip_grid: ChipGrid,
    chip: Chip,
    probabilities: Mapping[str, np.ndarray],
    runtime: Any,
    start: datetime,
    end: datetime,
    timings: dict[str, float],
    t_start: float,
    settings: Settings,
    window_rgb: np.ndarray | None = None,
) -> Result:
    """Crop the window's prediction to ``grid``, summarise it and assemble the Result."""
    from .grid import summary_mask
    from .summary import summarise

    t = time.perf_counter()
    probs = {k: np.ascontiguousarray(_crop(v, chip_grid, grid)) for k, v in probabilities.items()}
    valid = _crop(chip.masks["S2L2A"], chip_grid, grid)
    area = summary_mask(grid, lat, lon, radius_m)
    info = runtime.model_info()
    summary = summarise(probs, lulc_classes=info["lulc_classes"], building_threshold=info["building_threshold"],
                        area=area, valid=valid)
    if window_rgb is None:
        window_rgb = chip.rgb()  # fetch_many passes it in: one true-colour pass per shared window
    rgb = None if window_rgb is None else np.ascontiguousarray(_crop(window_rgb, chip_grid, grid))
    timings = dict(timings, summary=time.perf_counter() - t)
    timings["total"] = time.perf_counter() - t_start
    now = datetime.now(UTC)
    missing = tuple(chip.missing)
    notes = [f"{m} unavailable; the model ran without it" for m in missing]
    imagery = _imagery_provenance(chip, now)
    s2_dt = _parse_iso(_first(imagery.get("S2L2A", {}).get("datetimes")))
    if s2_dt is not None and (end - s2_dt).total_seconds() > settings.stale_after_days * 86400.0:
        msg = (f"the newest usable Sentinel-2 scene ({s2_dt:%Y-%m-%d}) is {(end - s2_dt).days} days older than "
               f"the window end ({end:%Y-%m-%d}); land cover may have changed since")
        notes.append(msg)
        warnings.warn(msg, StaleSceneWarning, stacklevel=3)
    prov = Provenance(
        imagery=imagery,
        modalities_used=tuple(m for m in info["modalities"] if m in chip.arrays),
        modalities_missing=missing,
        checkpoint=info["checkpoint"],
        backend=info["backend"],
        device=info["device"],
        precision=info["precision"],
        catalog=str(getattr(chip, "provider", "") or next(
            (p.get("provider") for p in imagery.values() if p.get("provider")), "")),
        date_window=(start.isoformat(), end.isoformat()),
    )
    return Result(
        lat=lat, lon=lon, radius_m=radius_m,
        building_density=summary.building_density,
        building_probability_mean=summary.building_probability_mean,
        n_building_components=summary.n_building_components,
        lulc_fractions=summary.lulc_fractions,
        lulc_fractions_mean_prob=summary.lulc_fractions_mean_prob,
        dominant_class=summary.dominant_class,
        confidence=summary.confidence,
        nodata_fraction=summary.nodata_fraction,
        building_threshold=summary.building_threshold,
        class_names=tuple(info["lulc_classes"]),
        class_colors=tuple(info["lulc_colors"]),
        grid=grid,
        provenance=prov,
        timings=timings,
        warnings=tuple(notes),
        probabilities=probs,
        summary_area=area,
        valid=valid,
        rgb=rgb,
    )


def _predict(chip: Chip, runtime: Any) -> Mapping[str, np.ndarray]:
    arrays = {m: a for m, a in chip.arrays.items() if m in runtime.model_info()["modalities"]}
    masks = {m: chip.masks[m] for m in arrays if m in chip.masks}
    return runtime.predict(arrays, masks).probabilities


def fetch(
    lat: float,
    lon: float,
    *,
    when: Any = None,
    size_m: float | None = None,
    radius_m: float | None = None,
    settings: Settings | None = None,
) -> Result:
    """Building density and land-cover fractions around one NYC point.

    Args:
        lat, lon: WGS84 degrees; must lie in the NYC domain unless ``settings.domain_check`` is off.
        when: None (the newest clear scene in the last ``settings.recency_days``), a date or
            datetime (the window ending then), an ISO string, ``"start/end"``, or ``(start, end)``.
        size_m: side of the square window the model runs on, metres (default 2240 = one 224 tile;
            larger windows are covered by more tiles in the same batched pass).
        radius_m: summarise only a circle of this radius around the point (default: the window).
        settings: a :class:`Settings`; default ``Settings.from_env()``.

    Raises the library's errors: InvalidLocationError, InvalidInputError, NoSceneError,
    CatalogError, ChipError, DeadlineExceededError, CheckpointError, BackendError.
    """
    t_start = time.perf_counter()
    settings = _resolve_settings(settings)
    from .dates import resolve_when
    from .deadline import Deadline
    from .grid import chip_grid, validate_location

    lat, lon = validate_location(lat, lon, settings)
    size, radius = _check_size(size_m, radius_m, settings)
    start, end = resolve_when(when, settings)
    grid = chip_grid(lat, lon, size_m=size, settings=settings)
    timings = {"grid": time.perf_counter() - t_start}

    t = time.perf_counter()
    runtime = _runtime(settings)
    timings["load_model"] = time.perf_counter() - t
    caches = get_caches(settings)
    rkey = None
    if caches is not None:
        info = runtime.model_info()
        rkey = stable_key("result", _grid_key(grid), _window_key(start, end), _chip_settings_key(settings),
                          radius, (round(lat, 6), round(lon, 6)) if radius else None,
                          info["checkpoint"].get("sha256"), info["precision"])
        hit = caches.results.peek(rkey)
        if hit is not None:
            import dataclasses

            # the answer of the same snapped grid (and circle): report the point that was asked for
            return dataclasses.replace(hit, cached=True, lat=lat, lon=lon,
                                       timings=dict(hit.timings, total=time.perf_counter() - t_start))

    def compute() -> Result:
        deadline = Deadline(settings.deadline_s)
        t = time.perf_counter()
        chip = _get_chip(grid, start, end, settings, deadline)
        timings["imagery"] = time.perf_counter() - t
        # the reader's own stages (STAC search, SCL scoring of candidates, pixel reads); absent on a chip-cache hit
        for stage in ("search", "choose", "read"):
            if stage in getattr(chip, "timings", {}) and timings["imagery"] >= chip.timings[stage]:
                timings[f"imagery_{stage}"] = float(chip.timings[stage])
        t = time.perf_counter()
        probs = _predict(chip, runtime)
        timings["model"] = time.perf_counter() - t
        return _build_result(lat=lat, lon=lon, radius_m=radius, grid=grid, chip_grid=chip.grid, chip=chip,
                             probabilities=probs, runtime=runtime, start=start, end=end, timings=timings,
                             t_start=t_start, settings=settings)

    if caches is None or rkey is None:
        return compute()
    # Single flight: concurrent calls for the same key wait for one computation.
    return caches.results.get_or_compute(rkey, compute)


def _warn_missing(chip: Chip) -> None:
    for m in chip.missing:
        warnings.warn(f"{m} unavailable for this chip; the model ran without it (see result.provenance)",
                      MissingModalityWarning, stacklevel=4)


def _runtime(settings: Settings) -> Any:
    from .model.backends import get_runtime

    rt = get_runtime(settings)
    _check_offset_rule(rt)
    return rt


def _check_offset_rule(runtime: Any) -> None:
    """The reader harmonises S2 with one rule (chips.s2_offset); a checkpoint trained with another
    would be fed shifted inputs, so it is refused rather than run (DESIGN: same rule both sides)."""
    rule = getattr(getattr(runtime, "config", None), "s2_offset", None)
    if rule is None:
        return
    from .imagery.reader import S2_OFFSET_DN
    from .errors import CheckpointError

    try:
        same = (int(rule.offset_dn), float(rule.from_baseline), float(rule.clip_min)) == (S2_OFFSET_DN, 4.0, 0.0)
    except (TypeError, ValueError):
        same = False
    if not same:
        raise CheckpointError(
            f"the checkpoint's S2 offset rule (subtract {rule.offset_dn} DN from baseline {rule.from_baseline}, "
            f"clip at {rule.clip_min}) differs from the one this library's reader applies (subtract "
            f"{S2_OFFSET_DN} DN from baseline 04.00, clip at 0): retrain or re-export it with the reader's rule")


# ----------------------------------------------------------------------------------------
# fetch_riprap
# ----------------------------------------------------------------------------------------
def fetch_riprap(lat: float, lon: float, *, polygons: bool = False, **kwargs: Any) -> dict[str, Any]:
    """:func:`fetch` for the Riprap client: never raises, always returns its dict.

    Success gives :meth:`Result.to_riprap`; a point outside NYC gives
    ``{"ok": False, "skipped": reason}``; any other failure ``{"ok": False, "err": reason,
    "error_type": class name}``.
    """
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingModalityWarning)
            return fetch(lat, lon, **kwargs).to_riprap(polygons=polygons)
    except InvalidLocationError as exc:
        outside = "outside" in str(exc)
        reason = str(exc) if outside else f"{type(exc).__name__}: {exc}"
        return {"ok": False, "skipped" if outside else "err": reason, "error_type": type(exc).__name__,
                "elapsed_s": round(time.perf_counter() - t0, 3)}
    except Exception as exc:  # noqa: BLE001 - the contract is "never raise"
        if not isinstance(exc, TerramindNYCError):
            log.exception("unexpected failure in fetch_riprap(%s, %s)", lat, lon)
        return {"ok": False, "err": f"{type(exc).__name__}: {exc}", "error_type": type(exc).__name__,
                "elapsed_s": round(time.perf_counter() - t0, 3)}


# ----------------------------------------------------------------------------------------
# fetch_many
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchItem:
    """One point of :func:`fetch_many`: its result or its error, in input order."""

    index: int
    """Position in the input."""
    lat: float
    """Latitude as given (NaN when it was not a number)."""
    lon: float
    """Longitude as given (NaN when it was not a number)."""
    result: Result | None
    """The result, or None when this point failed."""
    error: TerramindNYCError | None = None
    """The library error that failed this point, or None."""

    @property
    def ok(self) -> bool:
        return self.result is not None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "lat": _num(self.lat), "lon": _num(self.lon), "ok": self.ok}
        if self.result is not None:
            d["result"] = self.result.to_dict()
        if self.error is not None:
            d["error"] = str(self.error)
            d["error_type"] = type(self.error).__name__
        return d


def _as_point(p: Any) -> tuple[Any, Any]:
    if isinstance(p, Mapping):
        return p.get("lat"), p.get("lon")
    try:
        lat, lon = p
    except (TypeError, ValueError):
        raise InvalidLocationError(f"a point must be (lat, lon) or {{'lat':..., 'lon':...}}, got {p!r}") from None
    return lat, lon


def _float_or_nan(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _group_windows(grids: list[tuple[int, ChipGrid]], max_side_px: int,
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
    from .model.tiling import tile_count, tile_geometry

    geometry = tile_geometry(224, tile_overlap_px)  # the checkpoint is not loaded yet: the default tile

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
            out.extend(_group_windows(members, max_side_px // 2, tile_overlap_px))
        else:
            out.extend([m] for m in members)
    return out


#: Default largest shared window of fetch_many (four default windows a side; 896 px at 10 m:
#: about 50 MB of inputs, 25 tiles). Larger ``size_m`` allows twice ``size_m``.
_MAX_WINDOW_M = 8960.0


def fetch_many(
    points: Iterable[Any],
    *,
    when: Any = None,
    size_m: float | None = None,
    radius_m: float | None = None,
    settings: Settings | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    max_window_m: float | None = None,
) -> list[BatchItem]:
    """:func:`fetch` for many points, sharing reads and model passes between neighbours.

    All points are validated first; points whose windows fit together in one window of at most
    ``max_window_m`` (default 8.96 km, or twice the window size when that is larger) form a group
    that is read and predicted once, when that costs fewer model tiles than separate windows.
    Groups run concurrently on ``workers`` threads (default ``settings.io_threads`` capped at 4).
    Results come back in input order; one bad point never fails the batch (its ``error`` is set).
    ``progress`` shows a progress bar (default: when stderr is a terminal).
    """
    import sys

    settings = _resolve_settings(settings)
    from .grid import chip_grid, validate_location

    pts = list(points)
    items: list[BatchItem | None] = [None] * len(pts)
    size, radius = _check_size(size_m, radius_m, settings)
    valid_points: list[tuple[int, float, float, ChipGrid]] = []
    for i, p in enumerate(pts):
        try:
            lat, lon = _as_point(p)
            lat, lon = validate_location(lat, lon, settings)
            valid_points.append((i, lat, lon, chip_grid(lat, lon, size_m=size, settings=settings)))
        except TerramindNYCError as exc:
            la, lo = (_as_point(p) if isinstance(p, (Mapping, tuple, list)) and len(p) == 2 else (None, None))
            items[i] = BatchItem(i, _float_or_nan(la), _float_or_nan(lo), None, exc)
    max_px = int(round((max_window_m or max(2 * size, _MAX_WINDOW_M)) / settings.resolution_m))
    groups = _group_windows([(i, g) for i, _, _, g in valid_points], max_px, settings.tile_overlap_px)
    coords = {i: (lat, lon) for i, lat, lon, _ in valid_points}

    def run_group(members: list[tuple[int, ChipGrid]]) -> list[BatchItem]:
        if len(members) == 1:
            i, _ = members[0]
            lat, lon = coords[i]
            try:
                return [BatchItem(i, lat, lon, fetch(lat, lon, when=when, size_m=size,
                                                     radius_m=radius, settings=settings))]
            except TerramindNYCError as exc:
                return [BatchItem(i, lat, lon, None, exc)]
        return _run_shared_window(members, coords, when, radius, settings)

    n_workers = workers or min(4, settings.io_threads)
    if n_workers < 1:
        raise InvalidInputError(f"workers must be >= 1, got {workers}")
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(valid_points), desc="terramind-nyc", unit="pt")
    try:
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="tmnyc-batch") as pool:
            for done in pool.map(run_group, groups):
                for item in done:
                    items[item.index] = item
                if bar is not None:
                    bar.update(len(done))
    finally:
        if bar is not None:
            bar.close()
    return [it for it in items if it is not None]


def _run_shared_window(
    members: list[tuple[int, ChipGrid]],
    coords: dict[int, tuple[float, float]],
    when: Any,
    radius: float | None,
    settings: Settings,
) -> list[BatchItem]:
    """Read and predict one window covering every member's grid, then summarise each member."""
    from .dates import resolve_when
    from .deadline import Deadline
    from .grid import union_grid

    t_start = time.perf_counter()
    try:
        window = union_grid(g for _, g in members)
        start, end = resolve_when(when, settings)
        runtime = _runtime(settings)
        t = time.perf_counter()
        chip = _get_chip(window, start, end, settings, Deadline(settings.deadline_s))
        t_img = time.perf_counter() - t
        t = time.perf_counter()
        probs = _predict(chip, runtime)
        t_model = time.perf_counter() - t
    except TerramindNYCError as exc:
        return [BatchItem(i, *coords[i], None, exc) for i, _ in members]
    out = []
    share = 1.0 / len(members)
    window_rgb = chip.rgb()
    for i, g in members:
        lat, lon = coords[i]
        try:
            res = _build_result(lat=lat, lon=lon, radius_m=radius, grid=g, chip_grid=chip.grid, chip=chip,
                                probabilities=probs, runtime=runtime, start=start, end=end,
                                timings={"imagery": t_img * share, "model": t_model * share},
                                t_start=t_start, settings=settings, window_rgb=window_rgb)
            out.append(BatchItem(i, lat, lon, res))
        except TerramindNYCError as exc:
            out.append(BatchItem(i, lat, lon, None, exc))
    return out
