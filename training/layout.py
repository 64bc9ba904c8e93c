"""The dataset's on-disk layout and its index, with atomic writes.

::

    ROOT/
      index.json                   the index: dataset metadata + one record per chip (ok or skipped)
      chips/<chip_id>/
        S2L2A.tif                  float32 (T*12, H, W) harmonised DN (offset rule applied), nodata NaN
        S1RTC.tif                  float32 (T*2, H, W) gamma0 in dB, nodata NaN
        DEM.tif                    float32 (1, H, W) metres, nodata NaN
        MASK_LULC.tif              int8 (1, H, W) land-cover class index, -1 = ignore (no WorldCover data)
        MASK_BUILDINGS.tif         int8 (1, H, W) 0 background / 1 building, -1 = outside the labelled extent

All rasters of a chip share its grid (EPSG:32618, 10 m, the same snapped window as inference).
Band order within a modality is the model config's; with T timesteps the bands are grouped by
time (t0 bands, then t1 bands, ...).

Atomicity: a chip's files are written into ``chips/.tmp-<chip_id>-<pid>/`` and the folder is
renamed into place only when every file is complete; the index is rewritten through a temporary
file and :func:`os.replace`. A chip is only ever *indexed* after its folder is in place, so an
interrupted build never leaves a half-written chip in the index; a resumed build removes stray
temporary folders and re-does chips whose folder exists but which the index does not list.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np

from .errors import DatasetError, DatasetFileError

__all__ = [
    "CHIPS_DIR",
    "INDEX_NAME",
    "INDEX_SCHEMA",
    "MASK_FILES",
    "MODALITY_FILES",
    "SPLITS",
    "ChipRecord",
    "ChipWriter",
    "DatasetIndex",
    "new_index",
    "read_raster",
    "remove_stray_temporaries",
    "write_json_atomic",
    "write_raster",
]

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
INDEX_SCHEMA = "terramind_nyc.training.dataset/1"
CHIPS_DIR = "chips"
#: Modality -> file name inside a chip folder.
MODALITY_FILES: Mapping[str, str] = {"S2L2A": "S2L2A.tif", "S1RTC": "S1RTC.tif", "DEM": "DEM.tif"}
#: Head -> label mask file name inside a chip folder.
MASK_FILES: Mapping[str, str] = {"lulc": "MASK_LULC.tif", "buildings": "MASK_BUILDINGS.tif"}
SPLITS = ("train", "val", "test")

Status = Literal["ok", "skipped"]


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ChipRecord:
    """One chip of the dataset index (kept or skipped)."""

    id: str
    """Stable chip id derived from the snapped grid centre (``e<easting>_n<northing>``)."""
    lat: float
    """Requested centre latitude (degrees)."""
    lon: float
    """Requested centre longitude (degrees)."""
    status: Status
    """``ok`` (files written) or ``skipped`` (see ``reason``)."""
    reason: str | None = None
    """Why the chip was skipped (cloud, nodata, no WorldCover, ...); None when ok."""
    split: str | None = None
    """``train``, ``val`` or ``test`` once the split is assigned; None before, and for skipped chips."""
    group: str | None = None
    """Spatial group the split was assigned by (chips of one group share a split)."""
    files: Mapping[str, str] = field(default_factory=dict)
    """Modality or head name -> file path relative to the dataset root."""
    crs: str | None = None
    """Grid CRS (``EPSG:32618``)."""
    transform: tuple[float, ...] | None = None
    """Affine transform of the grid (a, b, c, d, e, f), metres."""
    width: int | None = None
    """Grid width in pixels."""
    height: int | None = None
    """Grid height in pixels."""
    missing: tuple[str, ...] = ()
    """Modalities that were unavailable for this chip (their file is absent)."""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    """Per modality and label source: item ids, datetimes, cloud/nodata fractions, offset handling."""
    stats: Mapping[str, Any] = field(default_factory=dict)
    """Label statistics: per-head class pixel counts, ignored pixels, building fraction (0..1)."""

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) of the grid in its CRS (metres)."""
        if self.transform is None or self.width is None or self.height is None:
            raise DatasetError(f"chip {self.id} has no grid (status {self.status})")
        a, _, c, _, e, f = self.transform[:6]
        x0, x1 = c, c + a * self.width
        y0, y1 = f, f + e * self.height
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["files"] = dict(self.files)
        d["transform"] = list(self.transform) if self.transform is not None else None
        d["missing"] = list(self.missing)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChipRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise DatasetError(f"chip record has unknown fields {sorted(unknown)}")
        kw = dict(d)
        if kw.get("transform") is not None:
            kw["transform"] = tuple(float(v) for v in kw["transform"])
        kw["missing"] = tuple(kw.get("missing") or ())
        kw["files"] = dict(kw.get("files") or {})
        return cls(**kw)


@dataclass(frozen=True)
class DatasetIndex:
    """The dataset index: metadata shared by every chip plus one record per chip."""

    meta: Mapping[str, Any]
    """Dataset metadata: classes per head, modalities and bands, timesteps, grid, sources, split rule."""
    chips: tuple[ChipRecord, ...] = ()
    """Chip records in build order."""

    # --- queries -------------------------------------------------------------------------
    def get(self, chip_id: str) -> ChipRecord | None:
        for c in self.chips:
            if c.id == chip_id:
                return c
        return None

    def ok(self, split: str | None = None) -> list[ChipRecord]:
        """Chips with files; restricted to ``split`` when given."""
        out = [c for c in self.chips if c.status == "ok"]
        if split is not None:
            if split not in SPLITS:
                raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
            out = [c for c in out if c.split == split]
        return out

    @property
    def classes(self) -> dict[str, list[str]]:
        """Head -> class names in model order."""
        return {k: list(v) for k, v in dict(self.meta.get("classes", {})).items()}

    @property
    def timesteps(self) -> int:
        return int(self.meta.get("timesteps", 1))

    # --- updates -------------------------------------------------------------------------
    def with_chip(self, record: ChipRecord) -> DatasetIndex:
        """A copy with ``record`` added, replacing any record of the same id."""
        chips = [c for c in self.chips if c.id != record.id] + [record]
        return dataclasses.replace(self, chips=tuple(chips))

    def with_chips(self, records: Iterable[ChipRecord]) -> DatasetIndex:
        by_id = {r.id: r for r in records}
        chips = [by_id.pop(c.id, c) for c in self.chips] + list(by_id.values())
        return dataclasses.replace(self, chips=tuple(chips))

    def with_meta(self, **changes: Any) -> DatasetIndex:
        return dataclasses.replace(self, meta={**dict(self.meta), **changes})

    # --- io ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema": INDEX_SCHEMA, **dict(self.meta), "updated": _now(), "chips": [c.to_dict() for c in self.chips]}

    def save(self, root: str | os.PathLike[str]) -> Path:
        """Write ``ROOT/index.json`` atomically."""
        path = Path(root) / INDEX_NAME
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> DatasetIndex:
        """Read ``ROOT/index.json``; raise :class:`DatasetError` if it is missing or malformed."""
        path = Path(root) / INDEX_NAME
        if not path.is_file():
            raise DatasetFileError(
                f"no dataset index at {path}; build one with `python -m training build-dataset --out {root}`"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"dataset index {path} is not valid JSON: {exc}") from exc
        schema = data.pop("schema", None)
        if schema != INDEX_SCHEMA:
            raise DatasetError(f"dataset index {path} has schema {schema!r}; this version reads {INDEX_SCHEMA!r}")
        chips = tuple(ChipRecord.from_dict(c) for c in data.pop("chips", []))
        data.pop("updated", None)
        return cls(meta=data, chips=chips)

    def check_files(self, root: str | os.PathLike[str], chips: Sequence[ChipRecord] | None = None,
                    required: Sequence[str] = ()) -> None:
        """Raise :class:`DatasetFileError` naming the first missing file of ``chips`` (default: all ok chips).

        ``required`` lists file keys (modalities / heads) every chip must have.
        """
        root = Path(root)
        missing: list[str] = []
        for c in self.ok() if chips is None else chips:
            for key in required:
                if key not in c.files and key not in c.missing:
                    missing.append(f"{c.id}: no {key} entry")
            for key, rel in c.files.items():
                if not (root / rel).is_file():
                    missing.append(str(root / rel))
            if len(missing) > 5:
                break
        if missing:
            more = " ..." if len(missing) > 5 else ""
            raise DatasetFileError(
                f"the dataset index at {root / INDEX_NAME} points at missing files: {', '.join(missing[:5])}{more}; "
                "rebuild the dataset (build-dataset resumes) or fix the index"
            )


def new_index(meta: Mapping[str, Any]) -> DatasetIndex:
    return DatasetIndex(meta={"created": _now(), **dict(meta)})


# ----------------------------------------------------------------------------------------
# atomic file writes
# ----------------------------------------------------------------------------------------
def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder and :func:`os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, default=_json_default)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_raster(path: str | os.PathLike[str], array: np.ndarray, *, crs: str, transform: Sequence[float],
                 nodata: float | None, descriptions: Sequence[str] | None = None) -> None:
    """Write a (bands, H, W) array as a tiled, deflate-compressed GeoTIFF."""
    import rasterio
    from affine import Affine

    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected (bands, H, W), got shape {arr.shape}")
    bands, h, w = arr.shape
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": w, "height": h, "count": bands, "dtype": arr.dtype.name,
        "crs": crs, "transform": Affine(*list(transform)[:6]), "compress": "deflate",
    }
    if nodata is not None:
        profile["nodata"] = nodata
    if h >= 16 and w >= 16 and h % 16 == 0 and w % 16 == 0:
        profile.update(tiled=True, blockxsize=min(256, w - w % 16), blockysize=min(256, h - h % 16))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)


def read_raster(path: str | os.PathLike[str]) -> np.ndarray:
    """Read every band of a GeoTIFF as a (bands, H, W) array."""
    import rasterio

    with rasterio.open(path) as src:
        return src.read()


class ChipWriter:
    """Writes one chip's files into a temporary folder and moves it into place on :meth:`commit`.

    Use as a context manager: leaving the block without :meth:`commit` removes the temporary folder.
    """

    def __init__(self, root: str | os.PathLike[str], chip_id: str, *, crs: str, transform: Sequence[float]) -> None:
        self.root = Path(root)
        self.chip_id = chip_id
        self.crs = crs
        self.transform = tuple(transform)
        self.final = self.root / CHIPS_DIR / chip_id
        self.tmp = self.root / CHIPS_DIR / f".tmp-{chip_id}-{os.getpid()}"
        self.files: dict[str, str] = {}
        self._committed = False

    def __enter__(self) -> Self:
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._committed and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, key: str, filename: str, array: np.ndarray, *, nodata: float | None,
              descriptions: Sequence[str] | None = None) -> None:
        write_raster(self.tmp / filename, array, crs=self.crs, transform=self.transform, nodata=nodata,
                     descriptions=descriptions)
        self.files[key] = f"{CHIPS_DIR}/{self.chip_id}/{filename}"

    def commit(self) -> dict[str, str]:
        """Move the folder into place (replacing a stale one) and return key -> relative path."""
        for name in os.listdir(self.tmp):
            with open(self.tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)
        self._committed = True
        return dict(self.files)


def remove_stray_temporaries(root: str | os.PathLike[str]) -> int:
    """Remove temporary chip folders left by an interrupted build; return how many."""
    chips = Path(root) / CHIPS_DIR
    n = 0
    if chips.is_dir():
        for p in chips.iterdir():
            if p.name.startswith(".tmp-") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                n += 1
    if n:
        log.info("removed %d temporary chip folder(s) left by an interrupted build", n)
    return n
