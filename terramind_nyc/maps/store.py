"""The on-disk city map: a Zarr store of per-head probabilities and derived layers, plus a manifest.

A map folder holds::

    out/
      manifest.json        what the map is: grid, date windows, heads, model, fingerprint
      map.zarr/            Zarr v3 group, consolidated (xarray: ``xr.open_zarr(out / "map.zarr")``)
        prob_<head>        (time, class_<head>, y, x) probabilities: uint8 (p * 255, rounded; default),
                           float16 or float32
        lulc               (time, y, x) uint8 land-cover class index, 255 where not valid
        buildings          (time, y, x) uint8 1 building / 0 not, 255 where not valid
        valid              (time, y, x) bool: valid Sentinel-2 pixel inside the area
        x, y, time         coordinates (metres in the grid CRS; seconds since 1970 of each window's start)
      windows/t0_r1_c2.json one record per window and date: done (with its provenance) or failed
                           (with the typed error); the resume state
      quicklook.png, map.html, map_<layer>_<date>.tif  written after the run

Zarr chunks are ``chunk_px`` a side and every window is a whole number of chunks, so windows
write their regions without locks, from any process that sees the folder. A window's record is
written only after its arrays: a window without a ``done`` record is computed again on resume
(rewriting the same region), never left half-written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..errors import InvalidInputError
from ..grid import ChipGrid
from ..jsonsafe import json_safe

__all__ = ["FORMAT", "FORMAT_VERSION", "GEOTIFF", "MANIFEST", "PAGE", "PROB_DTYPES", "QUICKLOOK", "MapLayout",
           "MapStore", "quantise"]

log = logging.getLogger(__name__)

FORMAT = "terramind-nyc-map"
FORMAT_VERSION = 1
#: How probabilities are stored. ``uint8`` (default): ``round(p * 255)``, 1 byte per class, error
#: at most 1/510; ``float16``: 2 bytes, relative error 5e-4; ``float32``: exact.
PROB_DTYPES = ("uint8", "float16", "float32")
MANIFEST = "manifest.json"
ZARR = "map.zarr"
WINDOWS = "windows"
NODATA = 255
#: The files a finished run writes beside the store (:mod:`.outputs`); ``overwrite`` removes them.
QUICKLOOK = "quicklook.png"
PAGE = "map.html"
GEOTIFF = "map_{layer}_{date}.tif"


def quantise(p: np.ndarray, dtype: str) -> np.ndarray:
    """Probabilities (float32, 0..1) as stored in ``dtype`` (see :data:`PROB_DTYPES`)."""
    if dtype == "uint8":
        return np.rint(np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)
    return p.astype(dtype)


@dataclass(frozen=True)
class MapLayout:
    """What a map is: everything :class:`MapStore` needs to create, check and read it."""

    grid: ChipGrid
    """The whole map's grid (the area's grid on the 10 m lattice)."""
    times: tuple[tuple[str, str], ...]
    """The date windows, ``(start, end)`` ISO 8601 each, oldest first (the ``time`` dimension)."""
    heads: Mapping[str, Mapping[str, Any]]
    """Head -> ``classes``, ``labels``, ``colors``, ``threshold`` (the model's :class:`ModelInfo` heads)."""
    prob_dtype: str
    """How probabilities are stored (:data:`PROB_DTYPES`)."""
    chunk_px: int
    """Zarr chunk side in pixels."""
    window_px: int
    """Side of a window's part of the map in pixels (a multiple of ``chunk_px``)."""
    fingerprint: str
    """Digest of everything that changes the numbers (checkpoint sha256, imagery settings, layout)."""
    model: Mapping[str, Any]
    """The model that computes it (:meth:`ModelInfo.to_dict`)."""
    aoi: Mapping[str, Any]
    """The area (name, bounds, geometry)."""

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of windows."""
        h, w = self.grid.shape
        return -(-h // self.window_px), -(-w // self.window_px)

    def core(self, i: int, j: int) -> tuple[int, int, int, int]:
        """``(row0, row1, col0, col1)`` of window ``(i, j)`` in the map grid."""
        h, w = self.grid.shape
        n = self.window_px
        return i * n, min((i + 1) * n, h), j * n, min((j + 1) * n, w)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``layout`` entry."""
        return json_safe({"grid": self.grid.to_dict(), "times": [list(t) for t in self.times],
                          "heads": self.heads, "prob_dtype": self.prob_dtype, "chunk_px": self.chunk_px,
                          "window_px": self.window_px, "fingerprint": self.fingerprint, "model": self.model,
                          "aoi": self.aoi})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MapLayout:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(ChipGrid.from_dict(d["grid"]), tuple((str(a), str(b)) for a, b in d["times"]),
                       dict(d["heads"]), str(d["prob_dtype"]), int(d["chunk_px"]), int(d["window_px"]),
                       str(d["fingerprint"]), dict(d["model"]), dict(d["aoi"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"not a map manifest layout ({type(exc).__name__}: {exc})") from None


def _epoch_s(iso: str) -> int:
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


class MapStore:
    """A map folder (see the module docstring): create or open it, write windows, read layers."""

    def __init__(self, path: str | os.PathLike[str], layout: MapLayout) -> None:
        self.path = Path(path)
        self.layout = layout

    # --- creating and opening ----------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> MapStore:
        """The map at ``path`` (InvalidInputError when there is none, or it is not one this library wrote)."""
        p = Path(path)
        try:
            d = json.loads((p / MANIFEST).read_text())
        except FileNotFoundError:
            raise InvalidInputError(f"{str(p)!r} holds no map (no {MANIFEST}); write one with map_area()") from None
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read the map manifest in {str(p)!r}: {exc}") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise InvalidInputError(f"{str(p / MANIFEST)!r} is not a {FORMAT} manifest")
        if d.get("format_version") != FORMAT_VERSION:
            raise InvalidInputError(f"the map in {str(p)!r} has format version {d.get('format_version')}; this "
                                    f"library reads version {FORMAT_VERSION}: write it again")
        return cls(p, MapLayout.from_dict(d["layout"]))

    @classmethod
    def create(cls, path: str | os.PathLike[str], layout: MapLayout, *, overwrite: bool = False) -> MapStore:
        """The map folder for ``layout``: a new one, or the existing one when it is the same map.

        A folder holding another map (another fingerprint) or other files is refused unless
        ``overwrite`` (then the map's own files are removed; other files are left alone and
        still refused). A folder that cannot be written is refused up front.
        """
        p = Path(path)
        cls.check_out(p)
        if (p / MANIFEST).exists():
            old = cls.open(p)
            if old.layout.fingerprint == layout.fingerprint:
                for tmp in (p / WINDOWS).glob(".*.tmp*"):  # a record a killed run was writing
                    tmp.unlink(missing_ok=True)
                return old
            if not overwrite:
                raise InvalidInputError(
                    f"{str(p)!r} holds another map (other checkpoint, settings, area or dates: fingerprint "
                    f"{old.layout.fingerprint[:12]} != {layout.fingerprint[:12]}); pass overwrite=True (--overwrite) "
                    "to replace it, or another folder")
            old.remove()
        store = cls(p, layout)
        store._create_arrays()
        atomic_write_text(p / MANIFEST, json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                                     "created": datetime.now(UTC).isoformat(),
                                                     "layout": layout.to_dict()}, indent=1))
        return store

    @staticmethod
    def check_out(path: str | os.PathLike[str]) -> None:
        """Refuse an ``out`` that cannot hold a map: a file, a folder holding other files and no
        map, or one that cannot be written (it is created when missing)."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise InvalidInputError(f"out {str(p)!r} is a file; give a folder for the map")
        if p.is_dir() and not (p / MANIFEST).exists() and any(p.iterdir()):
            raise InvalidInputError(f"{str(p)!r} is not empty and holds no map; give an empty or new folder")
        try:
            p.mkdir(parents=True, exist_ok=True)
            probe = p / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InvalidInputError(f"cannot write the map to {str(p)!r} ({exc.strerror or exc}); "
                                    "choose a folder you can write") from None

    def consolidate(self) -> None:
        """Write Zarr's consolidated metadata (one read opens the store: ``xr.open_zarr`` without warnings)."""
        import zarr

        zarr.consolidate_metadata(self.path / ZARR)

    def remove(self) -> None:
        """Delete the map's own files (manifest, store, window records, renders)."""
        for name in (ZARR, WINDOWS):
            shutil.rmtree(self.path / name, ignore_errors=True)
        for pattern in (MANIFEST, QUICKLOOK, PAGE, GEOTIFF.format(layer="*", date="*")):
            for f in self.path.glob(pattern):
                f.unlink(missing_ok=True)

    def _create_arrays(self) -> None:
        import zarr

        lay = self.layout
        h, w = lay.grid.shape
        t = len(lay.times)
        c = lay.chunk_px
        g = zarr.open_group(self.path / ZARR, mode="w", zarr_format=3)
        g.attrs.update(json_safe({"format": FORMAT, "crs": lay.grid.crs, "transform": list(lay.grid.transform)[:6],
                                  "resolution": lay.grid.resolution, "times": [list(x) for x in lay.times]}))
        for head, spec in lay.heads.items():
            a = g.create_array(f"prob_{head}", shape=(t, len(spec["classes"]), h, w),
                               chunks=(1, len(spec["classes"]), c, c), dtype=lay.prob_dtype, fill_value=0,
                               dimension_names=("time", f"class_{head}", "y", "x"))
            a.attrs.update(json_safe({"classes": spec["classes"], "labels": spec.get("labels"),
                                      "scale": 1 / 255 if lay.prob_dtype == "uint8" else 1.0}))
        for name, dtype, fill in (("lulc", "uint8", NODATA), ("buildings", "uint8", NODATA), ("valid", "bool", False)):
            g.create_array(name, shape=(t, h, w), chunks=(1, c, c), dtype=dtype, fill_value=fill,
                           dimension_names=("time", "y", "x"))
        res, x0, y0 = lay.grid.resolution, lay.grid.transform.c, lay.grid.transform.f
        for name, values in (("x", x0 + res * (np.arange(w) + 0.5)), ("y", y0 - res * (np.arange(h) + 0.5))):
            a = g.create_array(name, shape=values.shape, chunks=values.shape, dtype="float64",
                               dimension_names=(name,))
            a[:] = values
            a.attrs.update({"units": "m", "crs": lay.grid.crs})
        times = np.array([_epoch_s(s) for s, _ in lay.times], dtype="int64")
        a = g.create_array("time", shape=(t,), chunks=(t,), dtype="int64", dimension_names=("time",))
        a[:] = times
        a.attrs.update({"units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian",
                        "long_name": "start of the date window"})

    # --- windows -----------------------------------------------------------------------
    def record_path(self, t: int, i: int, j: int) -> Path:
        """Where window ``(i, j)`` of date ``t`` records its outcome."""
        return self.path / WINDOWS / f"t{t}_r{i}_c{j}.json"

    def record(self, t: int, i: int, j: int) -> dict[str, Any] | None:
        """The window's record, or None (not yet computed, or a record cut short)."""
        try:
            d = json.loads(self.record_path(t, i, j).read_text())
        except (OSError, ValueError):
            return None
        return d if isinstance(d, dict) else None

    def records(self) -> dict[tuple[int, int, int], dict[str, Any]]:
        """Every window record: ``(t, i, j)`` -> record."""
        out = {}
        for f in sorted((self.path / WINDOWS).glob("t*_r*_c*.json")):
            try:
                d = json.loads(f.read_text())
                out[(int(d["time"]), int(d["window"][0]), int(d["window"][1]))] = d
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                log.warning("ignoring an unreadable window record %s", f.name)
        return out

    def write_record(self, t: int, i: int, j: int, record: Mapping[str, Any]) -> None:
        """Write a window's record (atomically: a reader sees the old one or the new one)."""
        atomic_write_text(self.record_path(t, i, j), json.dumps(json_safe(dict(record)), indent=1))

    def write_window(self, t: int, core: tuple[int, int, int, int], probs: Mapping[str, np.ndarray],
                     lulc: np.ndarray, buildings: np.ndarray, valid: np.ndarray) -> None:
        """Write one window's arrays into its region (no lock: regions are whole chunks)."""
        import zarr

        r0, r1, c0, c1 = core
        g: Any = zarr.open_group(self.path / ZARR, mode="r+")
        for head, p in probs.items():
            g[f"prob_{head}"][t, :, r0:r1, c0:c1] = quantise(p, self.layout.prob_dtype)
        g["lulc"][t, r0:r1, c0:c1] = lulc
        g["buildings"][t, r0:r1, c0:c1] = buildings
        g["valid"][t, r0:r1, c0:c1] = valid

    def arrays(self) -> Any:
        """The Zarr group, read-only."""
        import zarr

        return zarr.open_group(self.path / ZARR, mode="r")
