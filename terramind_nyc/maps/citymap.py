"""Answers from a written city map: a point's :class:`~terramind_nyc.result.Result` in milliseconds.

    m = CityMap.open("nyc-map")
    r = m.at(40.7484, -73.9857, radius_m=300)      # same fields as fetch(); provenance of its window
    m.summarise(polygon)                           # fractions and density over a neighbourhood

:meth:`CityMap.at` crops the stored probabilities to the grid ``fetch`` would use for the point
and summarises them exactly as ``fetch`` does (:meth:`~terramind_nyc.pipeline.Pipeline.result`).
The probabilities themselves are the map's: one tiled pass over the whole area, with each
window's own scene. They equal ``fetch``'s on the map's grid (tests/maps checks it) up to their
storage (uint8: at most 1/510); a point's own ``fetch`` runs its own, smaller pass (other tile
positions, and its scene chosen on its own chip), so for a network with spatial context the two
are close, not equal. Where the map cannot answer (outside it, a window not done, no valid pixel,
no fitting date window) it raises :class:`~terramind_nyc.errors.MapCoverageError`;
:func:`fetch_or_map` (behind ``fetch(..., map=...)``) then fetches live, as it does when the
scene is older than ``map_max_age_days`` before the window asked for.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..dates import parse_iso, resolve_when
from ..errors import InvalidInputError, MapCoverageError
from ..grid import ChipGrid
from ..pipeline import ModelPass, current_pipeline
from ..result import Result
from ..settings import Settings
from .store import MapStore

__all__ = ["CHUNK_CACHE_BYTES", "CityMap", "MapSummary", "fetch_or_map"]

log = logging.getLogger(__name__)

#: Bytes of decoded chunks one open map keeps (a whole NYC date in uint8 is about 200 MB).
CHUNK_CACHE_BYTES = 512 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class MapSummary:
    """Land cover and buildings over an area of a map (:meth:`CityMap.summarise`)."""

    lulc_fractions: dict[str, float]
    """Land-cover class -> share of the area's valid pixels (0..1)."""
    building_density: float
    """Share of the area's valid pixels that are building (0..1)."""
    n_pixels: int
    """Pixels of the map inside the area."""
    valid_fraction: float
    """Share of those with valid imagery (0..1)."""
    time: tuple[str, str]
    """The date window summarised."""
    scenes: tuple[str, ...]
    """Sentinel-2 items behind the windows the area touches."""


def _model_info(d: Mapping[str, Any]) -> Any:
    from ..model.runtime import ModelInfo

    names = {f.name for f in dataclasses.fields(ModelInfo)}
    kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
    return ModelInfo(**kw)


class CityMap:
    """A map folder written by :func:`~terramind_nyc.maps.map_area`, open for reading."""

    def __init__(self, store: MapStore) -> None:
        self.store = store
        self.layout = store.layout
        self._group = store.arrays()
        self._arrays = {name: self._group[name] for name in self._group.array_keys()}
        self._records = store.records()
        self._info = _model_info(self.layout.model)
        from cachetools import LRUCache

        # decoded chunks, so that points near each other (and a warm map) read no chunk twice: a
        # Zarr read costs milliseconds, a cached chunk microseconds
        self._chunks: LRUCache[tuple[str, int, int, int], np.ndarray] = LRUCache(
            maxsize=CHUNK_CACHE_BYTES, getsizeof=lambda a: int(a.nbytes))
        self._chunks_lock = threading.Lock()

    def _chunk(self, name: str, t: int, i: int, j: int) -> np.ndarray:
        key = (name, t, i, j)
        with self._chunks_lock:
            hit = self._chunks.get(key)
        if hit is not None:
            return hit
        c = self.layout.chunk_px
        arr = self._arrays[name]
        block = np.asarray(arr[t, ..., i * c:(i + 1) * c, j * c:(j + 1) * c])
        if name.startswith("prob_"):  # probabilities are cached as float32 0..1, decoded once
            scale = 1.0 / 255.0 if self.layout.prob_dtype == "uint8" else 1.0
            block = block.astype(np.float32) * np.float32(scale)
        with self._chunks_lock:
            self._chunks[key] = block
        return block

    def read(self, name: str, t: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Pixels ``rows`` x ``cols`` of array ``name`` (``prob_<head>``, ``lulc``, ``buildings``,
        ``valid``) at date index ``t``, through the decoded-chunk cache (probabilities as float32 0..1)."""
        c = self.layout.chunk_px
        (r0, r1), (c0, c1) = rows, cols
        out: np.ndarray | None = None
        for i in range(r0 // c, (r1 - 1) // c + 1):
            for j in range(c0 // c, (c1 - 1) // c + 1):
                chunk = self._chunk(name, t, i, j)
                if out is None:
                    out = np.empty((*chunk.shape[:-2], r1 - r0, c1 - c0), chunk.dtype)
                y0, y1 = max(r0, i * c), min(r1, (i + 1) * c)  # the part of the chunk inside the block
                x0, x1 = max(c0, j * c), min(c1, (j + 1) * c)
                out[..., y0 - r0:y1 - r0, x0 - c0:x1 - c0] = chunk[..., y0 - i * c:y1 - i * c, x0 - j * c:x1 - j * c]
        assert out is not None
        return out

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> CityMap:
        """Open the map folder at ``path`` (InvalidInputError when it holds none)."""
        return cls(MapStore.open(path))

    @property
    def path(self) -> Path:
        """The map folder."""
        return self.store.path

    @property
    def grid(self) -> ChipGrid:
        """The map's grid."""
        return self.layout.grid

    def _time_index(self, when: Any, s: Settings) -> int:
        times = self.layout.times
        if when is None:
            return len(times) - 1
        if isinstance(when, int) and not isinstance(when, bool):
            if not -len(times) <= when < len(times):
                raise InvalidInputError(f"the map has {len(times)} date window(s); time index {when} is out of range")
            return when % len(times)
        start, end = resolve_when(when, s)
        fits = [k for k, (a, b) in enumerate(times) if parse_iso(a) <= end and parse_iso(b) >= start]  # type: ignore[operator]
        if not fits:
            raise MapCoverageError(f"no date window of the map overlaps {start:%Y-%m-%d}..{end:%Y-%m-%d} "
                                   f"(it has {', '.join(a[:10] + '..' + b[:10] for a, b in times)})")
        return fits[-1]

    def _window(self, t: int, row: int, col: int) -> dict[str, Any]:
        i, j = row // self.layout.window_px, col // self.layout.window_px
        rec = self._records.get((t, i, j))
        if rec is None or rec.get("status") != "done":
            self._records = self.store.records()  # a run may have finished it since the map was opened
            rec = self._records.get((t, i, j))
        if rec is None or rec.get("status") != "done":
            why = "was not computed" if rec is None else f"failed ({rec.get('error_type')})"
            raise MapCoverageError(f"window r{i} c{j} of the map {str(self.path)!r} {why}")
        return rec

    def at(self, lat: Any, lon: Any, *, when: Any = None, size_m: float | None = None, radius_m: float | None = None,
           settings: Settings | None = None) -> Result:
        """The :class:`Result` ``fetch`` would give for the point, from the map.

        ``when``: a date window (the map's newest that overlaps it) or a time index; default the
        newest. Raises InvalidLocationError / InvalidInputError for bad input, MapCoverageError
        where the map has no answer.
        """
        t_start = time.perf_counter()
        s = Settings.resolve(settings)
        pipe = current_pipeline()
        t = self._time_index(when, s)
        start, end = self.layout.times[t]
        req = pipe.request(lat, lon, when=(start, end), size_m=size_m, radius_m=radius_m, settings=s)
        if req.grid.crs != self.grid.crs or req.grid.resolution != self.grid.resolution:
            raise MapCoverageError(f"the map is on {self.grid.crs} at {self.grid.resolution} m, the request on "
                                   f"{req.grid.crs} at {req.grid.resolution} m")
        try:
            r0, c0 = self.grid.window(req.grid)
        except InvalidInputError:
            raise MapCoverageError(f"the window around ({req.lat}, {req.lon}) is not inside the map "
                                   f"{str(self.path)!r}") from None
        h, w = req.grid.shape
        rec = self._window(t, r0 + h // 2, c0 + w // 2)
        for i in {(r0 // self.layout.window_px), ((r0 + h - 1) // self.layout.window_px)}:
            for j in {(c0 // self.layout.window_px), ((c0 + w - 1) // self.layout.window_px)}:
                self._window(t, i * self.layout.window_px, j * self.layout.window_px)
        rows, cols = (r0, r0 + h), (c0, c0 + w)
        probs = {head: self.read(f"prob_{head}", t, rows, cols) for head in self.layout.heads}
        valid = self.read("valid", t, rows, cols).astype(bool)
        from ..grid import summary_mask
        from ..imagery.chip import Chip

        area = summary_mask(req.grid, req.lat, req.lon, req.radius_m)
        if not (valid & area).any():
            raise MapCoverageError(f"the map has no valid pixel around ({req.lat}, {req.lon})")
        chip = Chip.from_arrays({"mask_S2L2A": valid}, {**rec["chip"], "grid": req.grid.to_dict()})
        run = ModelPass(chip=chip, probabilities=probs, info=self._info, rgb=None)
        timings = {"grid": 0.0, "map": time.perf_counter() - t_start}
        i, j = rec["window"]
        r = pipe.result(req, run, timings, t_start)
        note = f"answered from the map {self.path.name!r} (window r{i} c{j}, computed {str(rec.get('finished'))[:10]})"
        return dataclasses.replace(r, warnings=(*r.warnings, note))

    def summarise(self, polygon: Any, *, when: Any = None, settings: Settings | None = None) -> MapSummary:
        """Fractions and building density over ``polygon`` (anything :func:`~.aoi.resolve_aoi` takes)."""
        from .aoi import resolve_aoi

        s = Settings.resolve(settings)
        t = self._time_index(when, s)
        a = resolve_aoi(polygon, s.replace(crs=self.grid.crs, resolution_m=self.grid.resolution))
        bx0, by0, bx1, by1 = a.grid.bounds
        gx0, gy0, gx1, gy1 = self.grid.bounds
        ix0, iy0, ix1, iy1 = max(bx0, gx0), max(by0, gy0), min(bx1, gx1), min(by1, gy1)
        if ix0 >= ix1 or iy0 >= iy1:
            raise MapCoverageError("the area lies outside the map")
        from .window import sub_grid

        res = self.grid.resolution
        c0, c1 = round((ix0 - gx0) / res), round((ix1 - gx0) / res)
        r0, r1 = round((gy1 - iy1) / res), round((gy1 - iy0) / res)
        inside = a.mask(sub_grid(self.grid, (r0, r1), (c0, c1)))
        valid = self.read("valid", t, (r0, r1), (c0, c1)).astype(bool) & inside
        n = int(inside.sum())
        k = int(valid.sum())
        if k == 0:
            raise MapCoverageError("the map has no valid pixel inside the area")
        lulc = self.read("lulc", t, (r0, r1), (c0, c1))[valid]
        bld = self.read("buildings", t, (r0, r1), (c0, c1))[valid]
        labels = self.layout.heads.get("lulc", {}).get("classes", [])
        counts = np.bincount(lulc, minlength=len(labels))[:len(labels)]
        wp = self.layout.window_px
        scenes = sorted({iid for (tt, i, j), rec in self._records.items()
                         if tt == t and rec.get("status") == "done" and r0 < (i + 1) * wp and r1 > i * wp
                         and c0 < (j + 1) * wp and c1 > j * wp
                         for iid in rec["chip"]["provenance"].get("S2L2A", {}).get("item_ids", [])})
        return MapSummary({c: float(counts[q]) / k for q, c in enumerate(labels)}, float((bld == 1).sum()) / k, n,
                          k / n if n else 0.0, self.layout.times[t], tuple(scenes))


_open: dict[tuple[str, float], CityMap] = {}
_open_lock = threading.Lock()


def _cached(path: str | os.PathLike[str]) -> CityMap:
    p = Path(path)
    try:
        stamp = (p / "manifest.json").stat().st_mtime
    except OSError:
        raise MapCoverageError(f"{str(p)!r} holds no map") from None
    key = (str(p.resolve()), stamp)
    with _open_lock:
        m = _open.get(key)
        if m is None:
            m = _open[key] = CityMap.open(p)
        return m


def _check_age(r: Result, when: Any, s: Settings) -> None:
    """MapCoverageError when the answer's scene is more than ``map_max_age_days`` older than the end of
    the window asked for (now, without ``when``)."""
    from datetime import UTC, datetime

    acquired = parse_iso(r.provenance.s2_acquired)
    end = datetime.now(UTC) if when is None else resolve_when(when, s)[1]
    if acquired is not None and (end - acquired).total_seconds() > s.map_max_age_days * 86400.0:
        raise MapCoverageError(f"the map's scene ({acquired:%Y-%m-%d}) is more than map_max_age_days="
                               f"{s.map_max_age_days:g} days older than {end:%Y-%m-%d}")


def fetch_or_map(lat: Any, lon: Any, *, map: str | os.PathLike[str] | None = None, when: Any = None,  # noqa: A002
                 size_m: float | None = None, radius_m: float | None = None,
                 settings: Settings | None = None) -> Result:
    """``fetch`` from the map at ``map`` where it can answer, else live (``map=None``: always live)."""
    if map is not None:
        try:
            m: CityMap | None = _cached(map)
        except (MapCoverageError, InvalidInputError) as exc:
            log.warning("the map at %s cannot be read (%s); fetching live", map, exc)
            m = None
        if m is not None:
            try:
                r = m.at(lat, lon, when=when, size_m=size_m, radius_m=radius_m, settings=settings)
                _check_age(r, when, Settings.resolve(settings))
                return r
            except MapCoverageError as exc:
                log.info("the map cannot answer (%s); fetching live", exc)
    return current_pipeline().fetch(lat, lon, when=when, size_m=size_m, radius_m=radius_m, settings=settings)
