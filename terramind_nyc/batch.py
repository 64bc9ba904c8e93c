"""Resumable batch runs over a points file: ``terramind-nyc batch IN OUT``.

Input: a CSV with ``lat`` and ``lon`` columns (an ``id`` column, when present, is carried
through; a file without a header is read as ``lat,lon`` per line) or a GeoJSON
FeatureCollection of Point features (``properties.id`` carried through).

Output, by extension: ``.jsonl`` (one JSON object per point: ``index``, ``id``, ``lat``,
``lon``, ``ok``, then ``result`` (or the Riprap dict with ``riprap=True``) or ``error``) or
``.csv`` (one flat row per point). Points are processed in chunks of spatial neighbours so
:func:`~terramind_nyc.fetch_many` can share windows; every finished chunk is appended and
flushed, so an interrupted run loses at most one chunk. Rerunning with the same IN and OUT
skips every point already in OUT (``retry_failed=True`` reruns those that failed). Lines in
OUT follow processing order; ``index`` is the point's position in IN.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInputError
from .settings import Settings

__all__ = ["BatchPoint", "BatchSummary", "read_points", "run_batch"]

_LAT_NAMES = ("lat", "latitude", "y")
_LON_NAMES = ("lon", "lng", "long", "longitude", "x")


@dataclass(frozen=True)
class BatchPoint:
    """One input point."""

    index: int
    """Position in the input (0-based, data rows only)."""
    id: str | None
    """The input's ``id`` value, when it has one."""
    lat: Any
    """Latitude as read (a float, or the raw text when it is not a number)."""
    lon: Any
    """Longitude as read."""


@dataclass(frozen=True)
class BatchSummary:
    """What :func:`run_batch` did."""

    total: int
    """Points in the input."""
    skipped: int
    """Points already in the output from an earlier run."""
    ok: int
    """Points processed now that gave a result."""
    failed: int
    """Points processed now that gave an error."""
    output: str
    """The output file."""


def _num(v: Any) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return v
    return v


def read_points(path: str | os.PathLike[str]) -> list[BatchPoint]:
    """Read points from a CSV or GeoJSON file (see the module docstring). Raises InvalidInputError."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"points file {p.name!r} does not exist")
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() in (".geojson", ".json") or text.lstrip().startswith("{"):
        return _read_geojson(text, p.name)
    return _read_csv(text, p.name)


def _read_geojson(text: str, name: str) -> list[BatchPoint]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{name} is not valid JSON ({exc})") from None
    feats = doc.get("features") if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else None
    if not isinstance(feats, list):
        raise InvalidInputError(f"{name} must be a GeoJSON FeatureCollection of Point features")
    out = []
    for i, f in enumerate(feats):
        geom = (f or {}).get("geometry") or {}
        props = (f or {}).get("properties") or {}
        coords = geom.get("coordinates") if geom.get("type") == "Point" else None
        lon, lat = (coords[0], coords[1]) if isinstance(coords, list) and len(coords) >= 2 else (None, None)
        fid = props.get("id", (f or {}).get("id"))
        out.append(BatchPoint(i, None if fid is None else str(fid), _num(lat), _num(lon)))
    return out


def _read_csv(text: str, name: str) -> list[BatchPoint]:
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        return []
    head = [c.strip().lower() for c in rows[0]]
    lat_i = next((head.index(n) for n in _LAT_NAMES if n in head), None)
    lon_i = next((head.index(n) for n in _LON_NAMES if n in head), None)
    id_i = head.index("id") if "id" in head else None
    if lat_i is None or lon_i is None:
        if any(isinstance(_num(c), str) for c in rows[0][:2]):
            raise InvalidInputError(f"{name}: the header needs 'lat' and 'lon' columns, got {rows[0]!r}")
        lat_i, lon_i, data = 0, 1, rows  # no header: lat,lon per line
    else:
        data = rows[1:]
    out = []
    for i, r in enumerate(data):
        lat = r[lat_i] if lat_i < len(r) else None
        lon = r[lon_i] if lon_i < len(r) else None
        pid = r[id_i] if id_i is not None and id_i < len(r) else None
        out.append(BatchPoint(i, pid, _num(lat), _num(lon)))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, abs_tol=1e-9)
    return str(a) == str(b)


class _Writer:
    """Appends finished points to OUT, JSON lines or CSV, and knows which points it holds."""

    def __init__(self, path: Path, *, riprap: bool, class_names: Callable[[], Sequence[str]]) -> None:
        self.path = path
        self.riprap = riprap
        self.csv = path.suffix.lower() == ".csv"
        if not self.csv and path.suffix.lower() not in (".jsonl", ".ndjson", ".json"):
            raise InvalidInputError(f"output {path.name!r} must end in .jsonl or .csv")
        self._class_names = class_names
        self.columns: list[str] | None = None

    # -- reading what an earlier run left ------------------------------------------------
    def load(self) -> list[dict[str, Any]]:
        """Rows already in OUT; a torn last line (interrupted write) is dropped from the file."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        raw = self.path.read_text(encoding="utf-8")
        if self.csv:
            reader = csv.DictReader(io.StringIO(raw))
            self.columns = list(reader.fieldnames or [])
            rows: list[dict[str, Any]] = []
            good = raw.splitlines(keepends=True)
            if good and not good[-1].endswith("\n"):
                raw = "".join(good[:-1])
                self.path.write_text(raw, encoding="utf-8")
                reader = csv.DictReader(io.StringIO(raw))
            for r in reader:
                rows.append({"index": int(r["index"]), "lat": _num(r["lat"]), "lon": _num(r["lon"]),
                             "ok": r["ok"] == "true", "_row": r})
            return rows
        rows, kept = [], []
        for line in raw.splitlines(keepends=True):
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by an interruption: that point is rerun
            if line.endswith("\n"):
                rows.append(d)
                kept.append(line)
        if "".join(kept) != raw:
            self.path.write_text("".join(kept), encoding="utf-8")
        return rows

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace OUT by ``rows`` (as loaded), atomically."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            if self.csv:
                w = csv.DictWriter(fh, fieldnames=self.columns or [])
                w.writeheader()
                for r in rows:
                    w.writerow(r["_row"])
            else:
                for r in rows:
                    fh.write(json.dumps(r, allow_nan=False) + "\n")
        os.replace(tmp, self.path)

    # -- appending -----------------------------------------------------------------------
    def _csv_columns(self) -> list[str]:
        if self.columns is None:
            self.columns = ["index", "id", "lat", "lon", "ok", "error", "building_density",
                            "building_probability_mean", "n_building_components", "dominant_class", "confidence",
                            "nodata_fraction"] + [f"lulc_{c}" for c in self._class_names()] + [
                "s2_item_ids", "s2_datetime", "modalities_missing", "checkpoint_sha256"]
        return self.columns

    def _csv_row(self, pt: BatchPoint, item: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"index": pt.index, "id": pt.id or "", "lat": pt.lat, "lon": pt.lon,
                               "ok": "true" if item.ok else "false", "error": "" if item.ok else str(item.error)}
        r = item.result
        if r is not None:
            s2 = r.provenance.imagery.get("S2L2A", {})
            row.update(building_density=r.building_density, building_probability_mean=r.building_probability_mean,
                       n_building_components=r.n_building_components, dominant_class=r.dominant_class,
                       confidence=r.confidence, nodata_fraction=r.nodata_fraction,
                       s2_item_ids=" ".join(s2.get("item_ids") or []),
                       s2_datetime=(s2.get("datetimes") or [""])[0],
                       modalities_missing=" ".join(r.provenance.modalities_missing),
                       checkpoint_sha256=r.provenance.checkpoint.get("sha256", ""))
            for k, v in r.lulc_fractions.items():
                row[f"lulc_{k}"] = v
        return row

    def _json_row(self, pt: BatchPoint, item: Any) -> dict[str, Any]:
        lat, lon = (v if isinstance(v, float) and math.isfinite(v) else str(v) for v in (pt.lat, pt.lon))
        d: dict[str, Any] = {"index": pt.index, "id": pt.id, "lat": lat, "lon": lon, "ok": item.ok}
        if item.result is not None:
            d["result"] = item.result.to_riprap() if self.riprap else item.result.to_dict()
        else:
            d["error"] = str(item.error)
            d["error_type"] = type(item.error).__name__
        return d

    def append(self, pairs: Sequence[tuple[BatchPoint, Any]]) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", encoding="utf-8", newline="") as fh:
            if self.csv:
                cols = self._csv_columns()
                w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
                if new:
                    w.writeheader()
                for pt, item in pairs:
                    w.writerow(self._csv_row(pt, item))
            else:
                for pt, item in pairs:
                    fh.write(json.dumps(self._json_row(pt, item), allow_nan=False, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _neighbour_chunks(points: Sequence[BatchPoint], chunk: int) -> Iterator[list[BatchPoint]]:
    """Chunks of nearby points: sorted along ~2 km cells so neighbours share a fetch_many call."""

    def key(p: BatchPoint) -> tuple[int, int, int, float, float]:
        if isinstance(p.lat, float) and isinstance(p.lon, float) and math.isfinite(p.lat) and math.isfinite(p.lon):
            return (0, int(p.lat // 0.02), int(p.lon // 0.02), p.lat, p.lon)
        return (1, 0, 0, 0.0, float(p.index))

    ordered = sorted(points, key=key)
    for i in range(0, len(ordered), chunk):
        yield ordered[i:i + chunk]


def run_batch(
    points_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    when: Any = None,
    size_m: float | None = None,
    radius_m: float | None = None,
    settings: Settings | None = None,
    workers: int | None = None,
    riprap: bool = False,
    retry_failed: bool = False,
    chunk: int = 64,
    progress: bool | None = None,
) -> BatchSummary:
    """Run :func:`~terramind_nyc.fetch_many` over a points file and append to ``out_path``.

    Resumable: points already in ``out_path`` (same index and coordinates) are skipped; an
    ``out_path`` written from a different input raises InvalidInputError rather than mixing
    the two. ``progress`` shows a tqdm bar (default: when stderr is a terminal).
    """
    from .api import fetch_many
    from .pipeline import current_pipeline

    if not isinstance(chunk, int) or chunk < 1:
        raise InvalidInputError(f"chunk must be a positive integer, got {chunk!r}")
    settings = Settings.resolve(settings)
    points = read_points(points_path)
    out = Path(out_path)
    if out.parent and not out.parent.exists():
        raise InvalidInputError(f"output folder {str(out.parent)!r} does not exist")

    def class_names() -> Sequence[str]:
        try:
            return tuple(current_pipeline().runtimes(settings).model_info().lulc_classes)
        except Exception:  # noqa: BLE001 - no model: every point fails anyway; use the default names
            from .model.config import DEFAULT_HEADS

            return DEFAULT_HEADS[0].classes

    writer = _Writer(out, riprap=riprap, class_names=class_names)
    done_rows = writer.load()
    by_index = {p.index: p for p in points}
    for r in done_rows:
        p = by_index.get(int(r["index"]))
        if p is None or not (_same(_num(r["lat"]), p.lat) and _same(_num(r["lon"]), p.lon)):
            raise InvalidInputError(
                f"{out.name} holds point {r['index']} at ({r['lat']}, {r['lon']}), which is not in "
                f"{Path(points_path).name}; it was written from another input: choose a new output file")
    if retry_failed and any(not r["ok"] for r in done_rows):
        done_rows = [r for r in done_rows if r["ok"]]
        writer.rewrite(done_rows)
    done = {int(r["index"]) for r in done_rows}
    pending = [p for p in points if p.index not in done]

    from tqdm.auto import tqdm

    show = progress if progress is not None else os.isatty(2)
    n_ok = n_failed = 0
    with tqdm(total=len(pending), disable=not show, unit="pt", desc="batch") as bar:
        for group in _neighbour_chunks(pending, chunk):
            items = fetch_many([(p.lat, p.lon) for p in group], when=when, size_m=size_m, radius_m=radius_m,
                               settings=settings, workers=workers, progress=False)
            writer.append(list(zip(group, items)))
            n_ok += sum(it.ok for it in items)
            n_failed += sum(not it.ok for it in items)
            bar.update(len(group))
    return BatchSummary(total=len(points), skipped=len(done), ok=n_ok, failed=n_failed, output=str(out))
