"""Co-registered reads: S2, S1 and DEM onto the chip grid, with masks, units and provenance.

:func:`read_chip` is the whole imagery stage::

    chip = read_chip(chip_grid(40.7484, -73.9857))
    chip.arrays["S2L2A"].shape      # (12, 224, 224) float32, harmonised DN
    chip.masks["S2L2A"].mean()      # valid fraction
    chip.metadata()                 # JSON-safe provenance, no URLs

Data flow: search S2, S1 and the DEM at once -> read SCL of the newest S2 candidates on the
grid -> choose the acquisition (:mod:`terramind_nyc.imagery.catalog`) -> read the 12 S2 bands of its
items, the S1 pass nearest its date and the DEM tiles, every asset in parallel -> harmonise
units (S2 offset per item, S1 dB) -> mosaic items first-valid-wins -> masks and checks.

Each asset is read by GDAL through rasterio in a worker thread with the project's options in
a scoped ``rasterio.Env`` (:func:`gdal_options`): a pixel-aligned asset (the 10 m bands on
the 10 m grid) is read as a window, anything else is warped onto the grid with
a ``WarpedVRT`` (bilinear for reflectance, backscatter and elevation; nearest for
SCL), nodata excluded. See ``docs/imagery.md`` for why this and not odc-stac.

Invalid pixels are NaN in ``arrays`` and False in ``masks``; a chip whose S2 valid fraction is
below ``min_valid_fraction`` is an error (:class:`~terramind_nyc.errors.ChipNodataError`),
never zeros. S1 and DEM are optional: when they cannot be found or read the chip comes back
without them, lists them in ``missing`` with the reason in ``notes``, and warns
(:class:`~terramind_nyc.errors.MissingModalityWarning`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import (
    Catalog,
    S2Choice,
    _choose_s2,
    _Runner,
    _warm_pystac,
    find_dem,
    get_catalog,
    item_crs,
    item_datetime,
    pick_s1,
    redact,
    service_of,
    strip_query,
)
from ..dates import iso_z, resolve_when
from ..deadline import Deadline
from ..errors import ChipError, ChipNodataError, DeadlineExceededError, MissingModalityWarning, TerramindNYCError
from ..settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    import pystac

    from ..grid import ChipGrid

__all__ = [
    "DEM_BANDS",
    "MODALITIES",
    "S1_BANDS",
    "S2_BANDS",
    "S2_OFFSET_DN",
    "Chip",
    "ModalityProvenance",
    "gdal_options",
    "read_chip",
    "read_scl",
    "s2_offset",
]

log = logging.getLogger(__name__)

#: Sentinel-2 L2A bands in the order TerraMind takes them (DESIGN section 2; no B10). The one
#: place this order is written down in the library.
S2_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
#: Sentinel-1 RTC polarisations, in order.
S1_BANDS: tuple[str, ...] = ("vv", "vh")
#: Copernicus DEM asset.
DEM_BANDS: tuple[str, ...] = ("data",)
#: Modalities a chip can hold, in the model's order.
MODALITIES: tuple[str, ...] = ("S2L2A", "S1RTC", "DEM")
#: DN added to S2 L2A from processing baseline 04.00 on (BOA_ADD_OFFSET = -1000).
S2_OFFSET_DN = 1000
#: Date from which products carry the offset, used only when an item has no baseline.
_OFFSET_FROM = datetime(2022, 1, 25, tzinfo=UTC)
#: Default nodata per modality when neither the file nor the STAC item says.
_NODATA_HINT: dict[str, float | None] = {"S2L2A": 0.0, "SCL": 0.0, "S1RTC": -32768.0, "DEM": None}
#: Linear power floor before dB (DESIGN: 10 * log10(max(x, 1e-6))).
_S1_FLOOR = 1e-6
_UNITS = {
    "S2L2A": "DN = surface reflectance x 10000, offset of baseline >= 04.00 removed",
    "S1RTC": "dB (10 log10 of linear gamma0 power)",
    "DEM": "metres above the EGM2008 geoid",
}


# ----------------------------------------------------------------------------------------
# GDAL
# ----------------------------------------------------------------------------------------
def gdal_options(settings: Settings) -> dict[str, str]:
    """GDAL configuration for reading COGs over HTTP (used in a scoped ``rasterio.Env``).

    No directory listing or sidecar probes (one HEAD, a header GET and the data range GETs per
    file), a per-request timeout, and GDAL's own bounded retries with exponential backoff on
    429 and 5xx answers and on timeouts.
    """
    timeout = str(max(1, math.ceil(settings.http_timeout_s)))
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
        "GDAL_HTTP_TIMEOUT": timeout,
        "GDAL_HTTP_CONNECTTIMEOUT": timeout,
        "GDAL_HTTP_MAX_RETRY": str(int(settings.http_retries)),
        "GDAL_HTTP_RETRY_DELAY": f"{settings.http_backoff_s:g}",
        "GDAL_HTTP_RETRY_CODES": "429,500,502,503,504",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "VSI_CACHE": "FALSE",
        "GDAL_HTTP_USERAGENT": "terramind-nyc",
    }


_gdal_lib: Any = None
_gdal_lib_searched = False


def _libgdal() -> Any:
    """The libgdal rasterio uses (already loaded), for ``VSICurlPartialClearCache``; None if not found."""
    global _gdal_lib, _gdal_lib_searched
    if _gdal_lib_searched:
        return _gdal_lib
    _gdal_lib_searched = True
    import rasterio  # maps the libgdal it links to

    candidates: list[str] = []
    try:
        with open("/proc/self/maps") as fh:  # Linux: the copy actually mapped into this process
            candidates = sorted({ln.split()[-1] for ln in fh if "libgdal" in os.path.basename(ln.split()[-1])})
    except OSError:
        pkg = Path(rasterio.__file__).resolve().parent
        for d in (pkg.parent / "rasterio.libs", pkg / ".dylibs"):
            candidates += [str(p) for p in sorted(d.glob("libgdal*"))]
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            fn = lib.VSICurlPartialClearCache
            fn.argtypes = [ctypes.c_char_p]
            fn.restype = None
            lib.VSICurlClearCache.argtypes = []
            lib.VSICurlClearCache.restype = None
            _gdal_lib = lib
            break
        except (OSError, AttributeError):
            continue
    if _gdal_lib is None:
        log.debug("libgdal not found; failed HTTP opens stay in GDAL's cache until the process ends")
    return _gdal_lib


def clear_gdal_http_cache() -> bool:
    """Empty GDAL's process-wide ``/vsicurl/`` cache (file sizes, headers, data blocks, failed opens).

    For tests that inject faults on URLs other tests read, and for long-running processes after
    a storage outage. Returns False when the GDAL library could not be found (nothing cleared).
    """
    lib = _libgdal()
    if lib is None:
        return False
    lib.VSICurlClearCache()
    return True


def _forget(href: str) -> None:
    """Drop GDAL's cached state for ``href``.

    GDAL caches a failed open (404, or 5xx after its retries) per URL for the life of the
    process, so a transient outage would poison every later request for that asset; after a
    failure the URL is removed from the cache so the next request asks the server again.
    """
    if "://" not in href:
        return
    lib = _libgdal()
    if lib is not None:
        lib.VSICurlPartialClearCache(("/vsicurl/" + href).encode())


# ----------------------------------------------------------------------------------------
# Reading one asset onto the grid
# ----------------------------------------------------------------------------------------
def _aligned(src: Any, grid: ChipGrid) -> tuple[int, int] | None:
    """``(row, col)`` of the grid's origin in the source's pixels when they share a lattice."""
    from rasterio.crs import CRS

    t = src.transform
    res = grid.resolution
    if not (t.b == 0 and t.d == 0 and math.isclose(t.a, res, rel_tol=1e-9) and math.isclose(t.e, -res, rel_tol=1e-9)):
        return None
    if src.crs is None or src.crs != CRS.from_user_input(grid.crs):
        return None
    col = (grid.bounds[0] - t.c) / res
    row = (t.f - grid.bounds[3]) / res
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(row), round(col)


def _read_onto_grid(href: str, grid: ChipGrid, *, resampling: str, dtype: str, fill: float,
                    nodata_hint: float | None, env: Mapping[str, str]) -> np.ndarray:
    """Band 1 of ``href`` on ``grid`` as ``dtype``; pixels without valid data are ``fill``."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

    dst = np.full(grid.shape, fill, dtype=dtype)
    with rasterio.Env(**env), rasterio.open(href) as src:
        if src.crs is None or src.transform.is_identity:
            # a header cut short can still parse as a TIFF, without its georeferencing
            raise ChipError(f"the file is not georeferenced ({src.width} x {src.height} px, no CRS or transform); "
                            "it is probably truncated")
        nodata = src.nodata if src.nodata is not None else nodata_hint
        off = _aligned(src, grid)
        if off is not None:
            row0, col0 = off
            r0, r1 = max(row0, 0), min(row0 + grid.height, src.height)
            c0, c1 = max(col0, 0), min(col0 + grid.width, src.width)
            if r1 > r0 and c1 > c0:
                a = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
                sub = a.astype(dtype, copy=False)
                bad = np.zeros(a.shape, dtype=bool)
                if nodata is not None:
                    bad |= np.isnan(a) if np.isnan(nodata) else (a == nodata)
                if a.dtype.kind == "f":
                    bad |= ~np.isfinite(a)
                part = dst[r0 - row0:r1 - row0, c0 - col0:c1 - col0]
                np.copyto(part, sub, where=~bad)
        else:
            # WarpedVRT, not rasterio.warp.reproject: reproject enters warnings.catch_warnings(),
            # which is not thread-safe and scrambles the process's warning filters when reads run
            # in parallel. Same GDAL warper, same pixels (checked against reproject and odc-stac).
            with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                           resampling=Resampling[resampling], src_nodata=nodata, nodata=fill, dtype=dtype) as vrt:
                vrt.read(1, out=dst)
    if dst.dtype.kind == "f":
        dst[~np.isfinite(dst)] = np.nan
    return dst


def _asset_href(item: pystac.Item, key: str, modality: str) -> str:
    asset = item.assets.get(key)
    if asset is None or not asset.href:
        raise ChipError(
            f"{modality} item {item.id} has no asset {key!r} (it has {sorted(item.assets)}); "
            "the catalog does not follow the expected asset naming: use a catalog with the "
            "Planetary Computer asset keys"
        )
    return asset.href


def _nodata_from_stac(item: pystac.Item, key: str) -> float | None:
    asset = item.assets.get(key)
    if asset is None:
        return None
    for b in asset.extra_fields.get("raster:bands") or []:
        if isinstance(b, Mapping) and b.get("nodata") is not None:
            try:
                return float(b["nodata"])
            except (TypeError, ValueError):
                return None
    return None


def _read_asset(item: pystac.Item, key: str, grid: ChipGrid, *, modality: str, resampling: str, settings: Settings,
                dtype: str = "float32") -> np.ndarray:
    """One asset of one item on the grid; failures become ChipError naming item, asset and host."""
    href = _asset_href(item, key, modality)
    hint = _nodata_from_stac(item, key)
    if hint is None:
        hint = _NODATA_HINT.get("SCL" if key == "SCL" else modality)
    fill = 0.0 if dtype == "uint8" else math.nan
    t = time.perf_counter()
    try:
        out = _read_onto_grid(href, grid, resampling=resampling, dtype=dtype, fill=fill, nodata_hint=hint,
                              env=gdal_options(settings))
    except Exception as exc:  # noqa: BLE001 - GDAL/rasterio errors of any kind become ChipError
        _forget(href)
        msg = redact(str(exc)) or type(exc).__name__
        hint_txt = ""
        low = msg.lower()
        if "404" in msg or "not exist" in low or "no such file" in low:
            hint_txt = "; the asset is missing on the server: the catalog may be stale, try another scene or later"
        elif any(w in low for w in ("read failed", "warp failed", "truncat", "tiffread", "incomplete", "ireadblock",
                                    "not georeferenced")):
            hint_txt = "; the file looks truncated or the transfer broke off: try again later"
        elif any(c in msg for c in ("429", "500", "502", "503", "504")) or "timed out" in low:
            hint_txt = f"; the server kept failing after {settings.http_retries} retries: try again later"
        raise ChipError(
            f"reading {modality} asset {key!r} of item {item.id} from {service_of(href)} failed "
            f"({type(exc).__name__}: {msg}){hint_txt}"
        ) from None
    log.debug("read %s %s %s (%s) in %.3f s", modality, item.id, key, strip_query(href), time.perf_counter() - t)
    return out


def read_scl(item: pystac.Item, grid: ChipGrid, *, settings: Settings) -> np.ndarray:
    """The item's SCL band on the grid (nearest), uint8, 0 where the item has no data."""
    return _read_asset(item, "SCL", grid, modality="S2L2A", resampling="nearest", settings=settings, dtype="uint8")


# ----------------------------------------------------------------------------------------
# Units
# ----------------------------------------------------------------------------------------
def s2_offset(item: pystac.Item) -> int:
    """DN to subtract from this S2 L2A item: 1000 for processing baseline >= 04.00, else 0.

    Decided from ``s2:processing_baseline``. An item without it falls back to its date
    (products from 2022-01-25 on carry the offset), with a warning in the log.
    """
    b = (item.properties or {}).get("s2:processing_baseline")
    if b is not None:
        try:
            return S2_OFFSET_DN if float(b) >= 4.0 else 0
        except ValueError:
            pass
    dt = item_datetime(item)
    off = S2_OFFSET_DN if dt is not None and dt >= _OFFSET_FROM else 0
    log.warning("S2 item %s has no usable s2:processing_baseline (%r); assuming offset %d from its date",
                item.id, b, off)
    return off


def _to_db(lin: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (10.0 * np.log10(np.maximum(lin, _S1_FLOOR))).astype(np.float32)


def _mosaic(layers: Sequence[np.ndarray]) -> np.ndarray:
    """First valid (non-NaN) value per pixel across ``layers`` (same shape, float)."""
    out = layers[0].copy()
    for a in layers[1:]:
        np.copyto(out, a, where=np.isnan(out) & ~np.isnan(a))
    return out


# ----------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModalityProvenance:
    """Where one modality of a chip came from. JSON-safe via :meth:`to_dict`; no URLs or tokens."""

    modality: str
    """``"S2L2A"``, ``"S1RTC"`` or ``"DEM"``."""
    collection: str
    """STAC collection id."""
    provider: str
    """Catalog provider: ``"planetary-computer"``, ``"stac-api"`` or ``"local"``."""
    catalog: str
    """Token-free label of the catalog (host, or file name for a local catalog)."""
    item_ids: tuple[str, ...]
    """STAC item ids, in mosaic order (first valid pixel wins)."""
    datetimes: tuple[str, ...]
    """Acquisition datetime of each item, ISO 8601 UTC (``...Z``)."""
    bands: tuple[str, ...]
    """Asset keys read, in array order."""
    units: str
    """Units of the values in ``Chip.arrays``."""
    source_crs: tuple[str | None, ...]
    """CRS of each item from ``proj:code`` or ``proj:epsg`` (None when the item has neither)."""
    resampling: str
    """Resampling onto the grid (``"bilinear"``; SCL always ``"nearest"``)."""
    nodata_fraction: float
    """Share of the chip's pixels without valid data for this modality, 0..1."""
    processing_baselines: tuple[str | None, ...] = ()
    """S2: ``s2:processing_baseline`` of each item."""
    offsets_dn: tuple[int, ...] = ()
    """S2: DN subtracted from each item (1000 for baseline >= 04.00, else 0), then clipped at 0."""
    offset_removed: bool | None = None
    """S2: whether an offset was removed from any item; None for other modalities."""
    cloud_fraction: float | None = None
    """S2: chip-level cloud fraction from SCL (classes 3, 8, 9, 10 over valid pixels), 0..1."""
    candidates_checked: int | None = None
    """S2: candidate acquisitions judged on the chip before this one was chosen (itself included)."""
    time_offset_days: float | None = None
    """S1: acquisition time minus the S2 acquisition time, days."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Chip:
    """Co-registered imagery on one chip grid, with masks and provenance."""

    grid: ChipGrid
    """The pixel grid every array is on."""
    arrays: Mapping[str, np.ndarray]
    """Modality -> float32 ``(bands, H, W)``: ``"S2L2A"`` (12, :data:`S2_BANDS` order) harmonised DN
    (reflectance x 10000, offset removed where baseline >= 04.00, clipped at 0); ``"S1RTC"`` (2: vv,
    vh) backscatter in dB; ``"DEM"`` (1) elevation in metres. NaN where the mask is False. Absent
    modalities are absent."""
    masks: Mapping[str, np.ndarray]
    """Modality -> bool ``(H, W)``, True where every band is valid (S2 also needs SCL not 0/1)."""
    scl: np.ndarray | None
    """uint8 ``(H, W)`` Sentinel-2 scene classification on the grid (0 = no data)."""
    provenance: Mapping[str, ModalityProvenance]
    """Modality -> where it came from (present modalities only)."""
    missing: tuple[str, ...] = ()
    """Optional modalities that could not be provided (``"S1RTC"``, ``"DEM"``)."""
    notes: Mapping[str, str] = field(default_factory=dict)
    """Missing modality -> why (no acquisition within the window, read failed, deadline, ...)."""
    window: tuple[str, str] = ("", "")
    """The searched date window, ISO UTC ``(start, end)``."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds spent per stage: ``search``, ``choose``, ``read``, ``total``."""

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays, masks and SCL."""
        n = sum(int(a.nbytes) for a in self.arrays.values()) + sum(int(m.nbytes) for m in self.masks.values())
        return n + (int(self.scl.nbytes) if self.scl is not None else 0)

    @property
    def provider(self) -> str:
        """Label of the catalog the S2 imagery came from."""
        p = self.provenance.get("S2L2A")
        return p.catalog if p is not None else ""

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, meta)``: plain numpy arrays and JSON-safe metadata that :meth:`from_arrays`
        turns back into this chip (the on-disk chip cache stores them as .npz + .json, no pickle)."""
        arrays = {f"array_{m}": np.asarray(a) for m, a in self.arrays.items()}
        arrays.update({f"mask_{m}": np.asarray(v) for m, v in self.masks.items()})
        if self.scl is not None:
            arrays["scl"] = np.asarray(self.scl)
        meta = {"format": 1, "grid": self.grid.to_dict(),
                "provenance": {m: dataclasses.asdict(p) for m, p in self.provenance.items()},
                "missing": list(self.missing), "notes": dict(self.notes), "window": list(self.window),
                "timings": dict(self.timings)}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Chip:
        """Rebuild a chip from :meth:`to_arrays` output. Raises ValueError when it does not fit."""
        if meta.get("format") != 1:
            raise ValueError(f"unknown chip format {meta.get('format')!r}")
        tuples = {f.name for f in dataclasses.fields(ModalityProvenance) if str(f.type).startswith("tuple")}
        fields: dict[str, dict[str, Any]] = {
            m: {k: tuple(v) if k in tuples and v is not None else v for k, v in d.items()}
            for m, d in meta["provenance"].items()}
        prov = {m: ModalityProvenance(**f) for m, f in fields.items()}
        from ..grid import ChipGrid

        return cls(
            grid=ChipGrid.from_dict(meta["grid"]),
            arrays={k[len("array_"):]: np.asarray(v, np.float32) for k, v in arrays.items() if k.startswith("array_")},
            masks={k[len("mask_"):]: np.asarray(v, bool) for k, v in arrays.items() if k.startswith("mask_")},
            scl=np.asarray(arrays["scl"]) if "scl" in arrays else None,
            provenance=prov, missing=tuple(meta.get("missing", ())), notes=dict(meta.get("notes", {})),
            window=tuple(meta.get("window", ("", ""))),  # type: ignore[arg-type]
            timings=dict(meta.get("timings", {})),
        )

    def valid_fraction(self, modality: str) -> float:
        """Share of valid pixels of ``modality`` (0 when absent)."""
        m = self.masks.get(modality)
        return float(m.mean()) if m is not None and m.size else 0.0

    def metadata(self) -> dict[str, Any]:
        """JSON-safe description: grid, window, modalities, bands, provenance, missing + why."""
        return {
            "grid": self.grid.to_dict(),
            "window": list(self.window),
            "modalities": [m for m in MODALITIES if m in self.arrays],
            "bands": {m: list(b) for m, b in (("S2L2A", S2_BANDS), ("S1RTC", S1_BANDS), ("DEM", DEM_BANDS))
                      if m in self.arrays},
            "valid_fraction": {m: round(self.valid_fraction(m), 6) for m in self.arrays},
            "provenance": {m: p.to_dict() for m, p in self.provenance.items()},
            "missing": list(self.missing),
            "notes": dict(self.notes),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
        }

    def rgb(self, max_dn: float = 3000.0) -> np.ndarray | None:
        """True-colour uint8 ``(3, H, W)`` (B04, B03, B02) scaled 0..``max_dn`` DN; 0 where invalid."""
        s2 = self.arrays.get("S2L2A")
        return None if s2 is None else true_colour(s2, self.masks["S2L2A"], max_dn)


def true_colour(s2: np.ndarray, valid: np.ndarray, max_dn: float = 3000.0) -> np.ndarray:
    """True-colour uint8 ``(3, H, W)`` from harmonised S2 DN ``(12, H, W)`` in :data:`S2_BANDS`
    order, scaled 0..``max_dn`` DN; 0 where ``valid`` is False."""
    idx = [S2_BANDS.index(b) for b in ("B04", "B03", "B02")]
    rgb = np.nan_to_num(s2[idx], nan=0.0)
    out = np.clip(rgb / max_dn * 255.0, 0, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return out


# ----------------------------------------------------------------------------------------
# read_chip
# ----------------------------------------------------------------------------------------
@dataclass
class _Stage:
    """An optional modality in flight: its items and the futures of its asset reads."""

    modality: str
    items: list[pystac.Item] | None = None
    reads: list[tuple[pystac.Item, str, Future[np.ndarray]]] = field(default_factory=list)


def _submit_reads(runner: _Runner, items: Sequence[pystac.Item], bands: Sequence[str], grid: ChipGrid, *,
                  modality: str, settings: Settings) -> list[tuple[pystac.Item, str, Future[np.ndarray]]]:
    out = []
    for it in items:
        for b in bands:
            _asset_href(it, b, modality)  # a missing key fails here, before any read is queued
        for b in bands:
            out.append((it, b, runner.submit(_read_asset, it, b, grid, modality=modality, resampling="bilinear",
                                             settings=settings)))
    return out


def _stage_s1(runner: _Runner, grid: ChipGrid, search: Future[list[pystac.Item]], s2_dt: datetime, s: Settings,
              dl: Deadline, source: str) -> _Stage:
    """Pick the S1 pass from the search started with the S2 search, and queue its reads."""
    items = runner.wait(search, f"searching {s.s1_collection}", source)
    st = _Stage("S1RTC", pick_s1(grid, items, s2_dt, settings=s))
    if st.items:
        st.reads = _submit_reads(runner, st.items, S1_BANDS, grid, modality="S1RTC", settings=s)
    return st


def _stage_dem(runner: _Runner, grid: ChipGrid, cat: Catalog, s: Settings, dl: Deadline) -> _Stage:
    st = _Stage("DEM", find_dem(grid, cat, settings=s, deadline=dl))
    if st.items:
        st.reads = _submit_reads(runner, st.items, DEM_BANDS, grid, modality="DEM", settings=s)
    return st


def _describe(reads: Sequence[tuple[pystac.Item, str, Future[np.ndarray]]]) -> Any:
    index = {id(f): (it, b) for it, b, f in reads}

    def describe(f: Future[Any]) -> tuple[str, str]:
        it, b = index[id(f)]
        return f"reading asset {b!r} of {it.id}", service_of(it.assets[b].href)

    return describe


def _stack(reads: Sequence[tuple[pystac.Item, str, Future[np.ndarray]]], items: Sequence[pystac.Item],
           bands: Sequence[str]) -> list[np.ndarray]:
    """Per item, the ``(bands, H, W)`` stack of its finished reads."""
    got = {(it.id, b): f.result() for it, b, f in reads}
    return [np.stack([got[(it.id, b)] for b in bands]) for it in items]


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
        when: the date window, as :func:`terramind_nyc.imagery.catalog.resolve_when` takes it
            (None: the last ``recency_days``).
        settings: default ``Settings.from_env()``.
        deadline: the request's overall deadline (default ``Deadline(settings.deadline_s)``).
        catalog: a catalog to use instead of ``get_catalog(settings)`` (e.g. one with a custom
            signer).

    Raises:
        InvalidInputError: a bad ``when``.
        NoSceneError: no S2 scene in the window, or all too cloudy over the chip.
        ChipNodataError: too little of the chip has valid S2 data.
        CatalogError, ChipError: the catalog or an S2 asset failed (message names the step and
            the service).
        DeadlineExceededError: the deadline passed before the S2 data were read.
    """
    s = Settings.resolve(settings)
    start, end = resolve_when(when, s)
    dl = deadline if deadline is not None else Deadline(s.deadline_s)
    cat = catalog if catalog is not None else get_catalog(s)
    _warm_pystac()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with _Runner(s.io_threads, dl) as runner:
        # S2 search, and the S1 and DEM searches beside it (S1 over the window +- s1_window_days:
        # the pass is picked once the S2 date is known), so none waits for another
        s2_fut = runner.submit(cat.search, s.s2_collection, bbox_4326=grid.bounds_4326, start=start, end=end,
                               deadline=dl, cloud_lt=s.scene_prefilter_cloud_pct)
        w = timedelta(days=s.s1_window_days)
        s1_search = runner.submit(cat.search, s.s1_collection, bbox_4326=grid.bounds_4326, start=start - w,
                                  end=end + w, deadline=dl)
        dem_fut = runner.submit(_stage_dem, runner, grid, cat, s, dl)
        items = runner.wait(s2_fut, f"searching {s.s2_collection}", cat.source)
        timings["search"] = time.perf_counter() - t0
        t = time.perf_counter()
        choice = _choose_s2(grid, items, catalog=cat, start=start, end=end, settings=s, runner=runner)
        timings["choose"] = time.perf_counter() - t
        t = time.perf_counter()
        s1_fut: Future[_Stage]
        if s1_search.done():  # the usual case: queue the S1 reads now, beside the S2 bands
            s1_fut = Future()
            try:
                s1_fut.set_result(_stage_s1(runner, grid, s1_search, choice.datetime, s, dl, cat.source))
            except Exception as exc:  # noqa: BLE001 - S1 is optional; handled with the other failures below
                s1_fut.set_exception(exc)
        else:
            s1_fut = runner.submit(_stage_s1, runner, grid, s1_search, choice.datetime, s, dl, cat.source)
        s2_reads = _submit_reads(runner, choice.items, S2_BANDS, grid, modality="S2L2A", settings=s)
        runner.wait_all([f for _, _, f in s2_reads], _describe(s2_reads))
        s2, s2_mask, s2_prov = _compose_s2(grid, choice, s2_reads, cat, s)
        arrays: dict[str, np.ndarray] = {"S2L2A": s2}
        masks: dict[str, np.ndarray] = {"S2L2A": s2_mask}
        prov: dict[str, ModalityProvenance] = {"S2L2A": s2_prov}
        notes: dict[str, str] = {}
        for modality, fut in (("S1RTC", s1_fut), ("DEM", dem_fut)):
            try:
                res = _finish_optional(runner, fut, modality, grid, choice, cat, s)
            except (TerramindNYCError, OSError) as exc:
                notes[modality] = _reason(exc)
                log.info("%s unavailable: %s", modality, notes[modality])
                continue
            except Exception as exc:  # an optional modality never fails the chip
                notes[modality] = f"{type(exc).__name__}: {redact(str(exc))}"
                log.warning("%s unavailable after an unexpected error", modality, exc_info=True)
                continue
            if isinstance(res, str):
                notes[modality] = res
                continue
            arrays[modality], masks[modality], prov[modality] = res
        timings["read"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    missing = tuple(m for m in MODALITIES if m not in arrays)
    for m in missing:
        warnings.warn(f"{m} unavailable for this chip: {notes.get(m, 'unknown reason')}", MissingModalityWarning,
                      stacklevel=2)
    chip = Chip(grid=grid, arrays=arrays, masks=masks, scl=choice.scl, provenance=prov, missing=missing,
                notes=notes, window=(iso_z(start), iso_z(end)), timings=timings)
    log.debug("chip %s: %s in %.2f s (missing %s)", grid.bounds, list(arrays), timings["total"], missing)
    return chip


def _crs_of(item: pystac.Item, asset: str) -> str | None:
    """``proj:code`` / ``proj:epsg`` of an item's asset or the item (never ``Item.to_dict()``: with
    an API client as root it resolves links over the network)."""
    a = item.assets.get(asset)
    return item_crs({"properties": item.properties or {},
                     "assets": {asset: a.extra_fields if a is not None else {}}}, asset)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DeadlineExceededError):
        return f"did not finish before the deadline ({exc})"
    return str(exc)


def _compose_s2(grid: ChipGrid, choice: S2Choice, reads: Sequence[tuple[pystac.Item, str, Future[np.ndarray]]],
                cat: Catalog, s: Settings) -> tuple[np.ndarray, np.ndarray, ModalityProvenance]:
    stacks = _stack(reads, choice.items, S2_BANDS)
    offsets = []
    for it, arr in zip(choice.items, stacks):
        off = s2_offset(it)
        offsets.append(off)
        if off:
            arr -= np.float32(off)
            np.maximum(arr, np.float32(0.0), out=arr)
    s2 = _mosaic(stacks)
    mask = np.isfinite(s2).all(axis=0) & ~np.isin(choice.scl, (0, 1))
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
        bands=S2_BANDS, units=_UNITS["S2L2A"],
        source_crs=tuple(_crs_of(i, "B04") for i in choice.items),
        resampling="bilinear", nodata_fraction=round(1.0 - valid, 6),
        processing_baselines=tuple(
            (None if (i.properties or {}).get("s2:processing_baseline") is None
             else str(i.properties["s2:processing_baseline"])) for i in choice.items),
        offsets_dn=tuple(offsets), offset_removed=any(o > 0 for o in offsets),
        cloud_fraction=round(choice.cloud_fraction, 6), candidates_checked=len(choice.checked),
    )
    return s2, mask, prov


def _finish_optional(runner: _Runner, fut: Future[_Stage], modality: str, grid: ChipGrid, choice: S2Choice,
                     cat: Catalog, s: Settings) -> tuple[np.ndarray, np.ndarray, ModalityProvenance] | str:
    """Wait for an optional modality; its array, mask and provenance, or the reason it is absent."""
    coll = s.s1_collection if modality == "S1RTC" else s.dem_collection
    st = runner.wait(fut, f"searching {coll}", cat.source)
    if not st.items:
        if modality == "S1RTC":
            return (f"no {coll} acquisition within +-{s.s1_window_days} days of the S2 scene "
                    f"({iso_z(choice.datetime)}) covers the chip in {cat.source}; raise `s1_window_days`")
        return f"no {coll} item covers the chip in {cat.source}"
    runner.wait_all([f for _, _, f in st.reads], _describe(st.reads))
    bands = S1_BANDS if modality == "S1RTC" else DEM_BANDS
    stacks = _stack(st.reads, st.items, bands)
    arr = _mosaic(stacks)
    mask = np.isfinite(arr).all(axis=0)
    arr[:, ~mask] = np.nan
    if modality == "S1RTC":
        arr = _to_db(arr)
        arr[:, ~mask] = np.nan
    valid = float(mask.mean())
    if valid < s.min_valid_fraction:
        return (f"{modality} has valid data on only {valid:.0%} of the chip (< `min_valid_fraction` "
                f"{s.min_valid_fraction:.0%}; items {', '.join(i.id for i in st.items)})")
    key = bands[0]
    dts = [item_datetime(i) for i in st.items]
    prov = ModalityProvenance(
        modality=modality, collection=coll, provider=cat.provider, catalog=cat.source,
        item_ids=tuple(i.id for i in st.items), datetimes=tuple(iso_z(d) if d else "" for d in dts),
        bands=bands, units=_UNITS[modality],
        source_crs=tuple(_crs_of(i, key) for i in st.items),
        resampling="bilinear", nodata_fraction=round(1.0 - valid, 6),
        time_offset_days=(round(((dts[0] - choice.datetime).total_seconds()) / 86400.0, 4)
                          if modality == "S1RTC" and dts and dts[0] else None),
    )
    return arr.astype(np.float32, copy=False), mask, prov
