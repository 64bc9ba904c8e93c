"""``python -m training build-dataset``: the NYC two-label dataset.

For each chip centre (a list of points, or a tiling of a bounding box on the chip lattice) the
build reuses terramind_nyc's own imagery path, so training sees exactly what inference sees:

1. ``grid.chip_grid`` (224 px, 10 m, EPSG:32618, snapped like inference),
2. ``chips.read_chip`` (scene choice by the chip's own SCL, S1 pairing, DEM, S2 offset rule,
   S1 dB, nodata masks; chips failing the cloud/nodata rules raise and are *skipped*),
3. WorldCover 2021 ``map`` -> ``MASK_LULC`` (:mod:`training.worldcover`),
4. building footprints -> ``MASK_BUILDINGS`` (:mod:`training.footprints`),

and writes the chip (see :mod:`training.layout`) and its record. Chips that cannot be used are
recorded as ``skipped`` with the reason (no scene, too cloudy, mostly nodata, no WorldCover,
WorldCover mostly nodata, missing modality, outside the domain). Transient failures (catalog or
footprint service down, deadline) are *not* recorded, so the next run retries them. A rerun
with the same ``--out`` resumes: recorded chips are not fetched again. When every chip is done
the spatial split (seed 42) is assigned and written to the index.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

from terramind_nyc.errors import (
    CatalogError,
    ChipError,
    ChipNodataError,
    DeadlineExceededError,
    InvalidLocationError,
    NoSceneError,
    TerramindNYCWarning,
)
from terramind_nyc.grid import ChipGrid
from terramind_nyc.jsonsafe import json_safe
from terramind_nyc.settings import Settings

from .errors import DatasetError
from .footprints import FootprintSource, FootprintsUnavailableError, rasterize_footprints
from .labels import IGNORE_INDEX
from .layout import (
    MASK_FILES,
    MODALITY_FILES,
    ChipRecord,
    ChipWriter,
    DatasetIndex,
    new_index,
    remove_stray_temporaries,
)
from .points import chip_id
from .split import DEFAULT_BLOCK_M, DEFAULT_FRACTIONS, DEFAULT_SEED, assign_splits
from .worldcover import WORLDCOVER_ASSET, WORLDCOVER_COLLECTION, WorldCoverMissingError, WorldCoverReadError

__all__ = ["BuildOptions", "BuildSummary", "build_dataset"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    """What to build and from which sources."""

    out: Path
    """Dataset root (created; an existing index is resumed)."""
    centres: tuple[tuple[float, float], ...]
    """Chip centres ``(lat, lon)`` in WGS84 degrees."""
    size_px: int = 224
    """Chip side in pixels (10 m each)."""
    when: Any = None
    """Imagery date window (as ``fetch``'s ``when``); None = the settings' recency window."""
    max_lulc_nodata: float = 0.5
    """Skip a chip whose WorldCover nodata share exceeds this (0..1)."""
    allow_missing: tuple[str, ...] = ()
    """Modalities a chip may lack (S1RTC, DEM); a chip missing any other is skipped."""
    fractions: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    """Split fractions (train/val/test)."""
    block_m: float = DEFAULT_BLOCK_M
    """Side of the spatial split blocks (metres)."""
    seed: int = DEFAULT_SEED
    """Split seed."""
    progress: bool = True
    """Show a tqdm progress bar."""


@dataclass(frozen=True)
class BuildSummary:
    """What a build run did."""

    root: str
    """Dataset root."""
    planned: int
    """Chip centres asked for."""
    ok: int
    """Chips in the dataset (this run and earlier runs)."""
    skipped: int
    """Chips recorded as skipped (this run and earlier runs)."""
    resumed: int
    """Chips already recorded by an earlier run (not fetched again)."""
    failed: int
    """Chips that failed transiently in this run (not recorded; a rerun retries them)."""
    reasons: dict[str, int]
    """Skip / failure category -> count."""
    splits: dict[str, int]
    """Split -> number of chips (empty while chips are still failing)."""
    failures: dict[str, str] = field(default_factory=dict)
    """Chip id -> ``category: message`` of each transient failure of this run (retried by a rerun)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------
# the build
# ----------------------------------------------------------------------------------------
class _Skip(Exception):
    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category


def _classify(exc: BaseException) -> tuple[str, bool]:
    """(category, permanent) of an error raised while building one chip."""
    if isinstance(exc, _Skip):
        return exc.category, True
    if isinstance(exc, InvalidLocationError):
        return "outside domain", True
    if isinstance(exc, WorldCoverMissingError):
        return "no WorldCover", True
    if isinstance(exc, NoSceneError):
        return ("too cloudy" if exc.reason == "cloud" else "no scene"), True
    if isinstance(exc, ChipNodataError):
        return "mostly nodata", True
    if isinstance(exc, DeadlineExceededError):
        return "deadline", False
    if isinstance(exc, FootprintsUnavailableError):
        return "footprints unavailable", False
    if isinstance(exc, WorldCoverReadError):
        return "WorldCover unavailable", False
    if isinstance(exc, (CatalogError, ChipError)):
        return "imagery unavailable", False
    raise exc


def _label_stats(masks: Mapping[str, np.ndarray], classes: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for h, m in masks.items():
        valid = m[m != IGNORE_INDEX].astype(np.int64)
        stats[h] = {"counts": np.bincount(valid, minlength=len(classes[h])).tolist(),
                    "ignored": int((m == IGNORE_INDEX).sum())}
    b = masks.get("buildings")
    if b is not None:
        valid = b != IGNORE_INDEX
        stats["building_fraction"] = float((b[valid] == 1).mean()) if valid.any() else None
    return stats


@dataclass
class Sources:
    """The pluggable parts of a build (the CLI wires the real ones; tests may pass their own)."""

    settings: Settings
    """terramind_nyc settings: catalog provider, signing, limits, grid."""
    footprints: FootprintSource
    """Building footprints."""
    classes: Mapping[str, Sequence[str]]
    """Head -> class names in model order (from the model config)."""
    bands: Mapping[str, Sequence[str]]
    """Modality -> band names in model order (from the model config)."""
    extent: Any = None
    """Optional polygon (grid CRS) outside which building labels are -1."""
    extent_crs: str | None = None
    read_chip: Callable[..., Any] | None = None
    """``read_chip(grid, when=..., settings=..., deadline=...)``; default terramind_nyc.imagery.reader.read_chip."""
    read_worldcover: Callable[[ChipGrid], Any] | None = None
    """``grid -> WorldCoverLabels``; default: search ``esa-worldcover`` in the settings' catalog."""


#: WorldCover 2021 v200 covers calendar year 2021 (the 2020 v100 map is the same collection).
WORLDCOVER_YEAR = 2021


def _default_worldcover(src: Sources) -> Callable[[ChipGrid], Any]:
    """WorldCover through terramind_nyc's catalog (same provider, signing, retries, deadline)."""
    from datetime import datetime

    from terramind_nyc.deadline import Deadline
    from terramind_nyc.imagery.catalog import get_catalog

    from .worldcover import worldcover_labels

    s = src.settings
    catalog = get_catalog(s)
    start = datetime(WORLDCOVER_YEAR, 1, 1, tzinfo=UTC)
    end = datetime(WORLDCOVER_YEAR, 12, 31, 23, 59, 59, tzinfo=UTC)
    env = {"GDAL_HTTP_TIMEOUT": str(math.ceil(s.http_timeout_s)), "GDAL_HTTP_MAX_RETRY": str(s.http_retries),
           "GDAL_HTTP_RETRY_DELAY": str(s.http_backoff_s)}

    def read(grid: ChipGrid) -> Any:
        items = catalog.search(WORLDCOVER_COLLECTION, bbox_4326=grid.bounds_4326, start=start, end=end,
                               deadline=Deadline(s.deadline_s))  # signed by the catalog
        return worldcover_labels(grid, src.classes["lulc"], items=items, asset=WORLDCOVER_ASSET, gdal_env=env)

    return read


def _extent_in(src: Sources, crs: str) -> Any:
    if src.extent is None:
        return None
    import geopandas as gpd

    return gpd.GeoSeries([src.extent], crs=src.extent_crs or crs).to_crs(crs).iloc[0]


def _one_chip(opts: BuildOptions, src: Sources, grid: ChipGrid, cid: str, lat: float, lon: float,
              read_chip: Callable[..., Any], read_wc: Callable[[ChipGrid], Any]) -> ChipRecord:
    from terramind_nyc.deadline import Deadline

    deadline = Deadline(src.settings.deadline_s)
    with warnings.catch_warnings():  # a missing modality is recorded in the chip record instead
        warnings.simplefilter("ignore", TerramindNYCWarning)
        chip = read_chip(grid, when=opts.when, settings=src.settings, deadline=deadline)
    missing = tuple(getattr(chip, "missing", ()) or ())
    bad = [m for m in missing if m not in opts.allow_missing]
    if "S2L2A" in missing or bad:
        raise _Skip("missing modality", f"modalities {bad or ['S2L2A']} unavailable (allowed missing: "
                    f"{list(opts.allow_missing)})")
    wc = read_wc(grid)
    if wc.nodata_fraction > opts.max_lulc_nodata:
        raise _Skip("WorldCover nodata", f"WorldCover has no data on {wc.nodata_fraction:.0%} of the chip "
                    f"(limit {opts.max_lulc_nodata:.0%})")
    gdf = src.footprints.query(grid.bounds, grid.crs)
    bmask = rasterize_footprints(gdf, shape=grid.shape, transform=tuple(grid.transform)[:6],
                                 extent=_extent_in(src, grid.crs))
    masks = {"lulc": wc.mask, "buildings": bmask}
    transform = tuple(float(v) for v in tuple(grid.transform)[:6])
    with ChipWriter(opts.out, cid, crs=grid.crs, transform=transform) as w:
        for m, arr in chip.arrays.items():
            if m not in MODALITY_FILES or m not in src.bands:
                continue
            a = np.asarray(arr, dtype=np.float32).copy()
            valid = np.asarray(chip.masks[m], dtype=bool)
            a[:, ~valid] = np.nan
            w.write(m, MODALITY_FILES[m], a, nodata=float("nan"), descriptions=list(src.bands[m]))
        for h, mask in masks.items():
            w.write(h, MASK_FILES[h], mask, nodata=IGNORE_INDEX)
        files = w.commit()
    meta = chip.metadata() if hasattr(chip, "metadata") else {"provenance": getattr(chip, "provenance", {})}
    prov = json_safe({k: v for k, v in meta.items() if k not in ("grid", "timings")})
    prov_all = {"imagery": prov, "worldcover": {"items": list(wc.item_ids), "nodata_fraction": wc.nodata_fraction,
                                                "codes": {str(k): v for k, v in wc.codes.items()}},
                "footprints": {**src.footprints.describe(), "features": len(gdf)}}
    stats = _label_stats(masks, src.classes)
    stats["valid_fraction"] = {m: float(np.asarray(v, dtype=bool).mean()) for m, v in chip.masks.items()}
    return ChipRecord(id=cid, lat=lat, lon=lon, status="ok", files=files, crs=grid.crs, transform=transform,
                      width=grid.width, height=grid.height, missing=missing, provenance=prov_all, stats=stats)


def _reader_offset_rule() -> dict[str, Any]:
    """The S2 offset rule terramind_nyc's reader applies, in the artifact config's terms (export checks it)."""
    from terramind_nyc.sensors import READER_S2_OFFSET

    return dataclasses.asdict(READER_S2_OFFSET)


def _meta(opts: BuildOptions, src: Sources) -> dict[str, Any]:
    return {
        "classes": {h: list(c) for h, c in src.classes.items()},
        "modalities": {m: list(b) for m, b in src.bands.items()},
        "timesteps": 1,
        "tile_size": opts.size_px,
        "resolution_m": src.settings.resolution_m,
        "crs": src.settings.crs,
        "offset_rule": "S2 L2A DN harmonised by terramind_nyc.imagery.reader (processing baseline >= 04.00: -1000, clip 0)",
        "s2_offset": _reader_offset_rule(),
        "sources": {
            "imagery": {"provider": src.settings.catalog_provider,
                        "collections": [src.settings.s2_collection, src.settings.s1_collection,
                                        src.settings.dem_collection]},
            "worldcover": {"collection": WORLDCOVER_COLLECTION, "asset": WORLDCOVER_ASSET,
                           "mapping": "training.labels.WORLDCOVER_TO_CLASS"},
            "footprints": src.footprints.describe(),
        },
        "limits": {"max_cloud": src.settings.max_cloud, "max_nodata": src.settings.max_nodata,
                   "min_valid_fraction": src.settings.min_valid_fraction, "max_lulc_nodata": opts.max_lulc_nodata,
                   "allow_missing": list(opts.allow_missing)},
        "split": {"seed": opts.seed, "block_m": opts.block_m, "fractions": dict(opts.fractions)},
    }


def _compatible(index: DatasetIndex, meta: Mapping[str, Any], root: Path) -> None:
    for key in ("classes", "modalities", "tile_size", "crs", "resolution_m"):
        if index.meta.get(key) != meta.get(key):
            raise DatasetError(
                f"the dataset at {root} was built with {key}={index.meta.get(key)!r}, this build asks for "
                f"{meta.get(key)!r}; use another --out"
            )


def build_dataset(opts: BuildOptions, src: Sources) -> BuildSummary:
    """Build (or resume) the dataset at ``opts.out``; return what happened."""
    from tqdm.auto import tqdm

    from terramind_nyc.grid import chip_grid

    root = Path(opts.out)
    root.mkdir(parents=True, exist_ok=True)
    remove_stray_temporaries(root)
    meta = _meta(opts, src)
    try:
        index = DatasetIndex.load(root)
        _compatible(index, meta, root)
        log.info("resuming the build at %s (%d chips recorded)", root, len(index.chips))
    except DatasetError as exc:
        if (root / "index.json").exists():
            raise
        log.debug("new dataset: %s", exc)
        index = new_index(meta)
    index = index.with_meta(**{k: v for k, v in meta.items() if k not in ("classes",)})
    index.save(root)
    read_chip = src.read_chip
    if read_chip is None:
        from terramind_nyc.imagery.reader import read_chip as _rc

        read_chip = _rc
    read_wc = src.read_worldcover or _default_worldcover(src)
    size_m = opts.size_px * src.settings.resolution_m
    reasons: Counter[str] = Counter()
    resumed = failed = 0
    failures: dict[str, str] = {}
    seen: set[str] = set()
    bar = tqdm(opts.centres, desc="chips", unit="chip", disable=not opts.progress)
    for lat, lon in bar:
        try:
            grid = chip_grid(lat, lon, size_m=size_m, settings=src.settings)
        except InvalidLocationError as exc:
            cid = f"lat{lat:.5f}_lon{lon:.5f}"
            if index.get(cid) is None:
                index = index.with_chip(ChipRecord(id=cid, lat=lat, lon=lon, status="skipped",
                                                   reason=f"outside domain: {exc}"))
                index.save(root)
            reasons["outside domain"] += 1
            continue
        cid = chip_id(grid)
        if cid in seen:
            continue
        seen.add(cid)
        rec = index.get(cid)
        if rec is not None and (rec.status == "skipped" or all((root / p).is_file() for p in rec.files.values())):
            resumed += 1
            continue
        try:
            rec = _one_chip(opts, src, grid, cid, lat, lon, read_chip, read_wc)
        except Exception as exc:  # noqa: BLE001 - classified below; unknown errors re-raise
            category, permanent = _classify(exc)
            reasons[category] += 1
            if not permanent:
                failed += 1
                failures[cid] = f"{category}: {exc}"
                log.warning("chip %s failed (%s): %s; a rerun retries it", cid, category, exc)
                continue
            log.info("chip %s skipped (%s): %s", cid, category, exc)
            rec = ChipRecord(id=cid, lat=lat, lon=lon, status="skipped", reason=f"{category}: {exc}",
                             crs=grid.crs, transform=tuple(float(v) for v in tuple(grid.transform)[:6]),
                             width=grid.width, height=grid.height)
        index = index.with_chip(rec)
        index.save(root)
        bar.set_postfix(ok=len(index.ok()), skipped=sum(c.status == "skipped" for c in index.chips))
    bar.close()
    splits: dict[str, int] = {}
    if failed == 0:
        index = index.with_chips(assign_splits(index.chips, fractions=opts.fractions, block_m=opts.block_m,
                                               seed=opts.seed))
        splits = dict(Counter(c.split for c in index.ok() if c.split))
    else:
        log.warning("%d chip(s) failed transiently; rerun the same command to retry them and assign the split",
                    failed)
    index.save(root)
    return BuildSummary(root=str(root), planned=len(opts.centres), ok=len(index.ok()),
                        skipped=sum(c.status == "skipped" for c in index.chips), resumed=resumed, failed=failed,
                        reasons=dict(reasons), splits=splits, failures=failures)

