"""Resumable batch runs over a points file: ``terramind-nyc batch IN OUT``.

Input: a CSV with ``lat`` and ``lon`` columns or a GeoJSON FeatureCollection of Point
features, read whole by :func:`~terramind_nyc.points.read_points` (a defective file is one
InvalidInputError before anything runs).

Output, by extension: ``.jsonl`` (one JSON object per point: ``index``, ``id``, ``lat``,
``lon``, ``ok``, then ``result`` (or the Riprap dict with ``riprap=True``) or ``error``) or
``.csv`` (one flat row per point). Points are processed in chunks of spatial neighbours so
:func:`~terramind_nyc.fetch_many` can share windows; every finished chunk is appended and
flushed, so an interrupted run loses at most one chunk. Rerunning with the same IN and OUT
skips every point already in OUT (``retry_failed=True`` reruns those that failed). Lines in
OUT follow processing order; ``index`` is the point's position in IN.

Resuming never loses a complete row: a last line torn by a kill (mid-row, or mid-header when
nothing else was written) is cut off the file and its point runs again. An OUT this module did
not write (other columns, lines that are not its rows) or one damaged before its last line is
refused with an InvalidInputError and left untouched. ``retry_failed`` rewrites OUT through
:mod:`terramind_nyc.atomic` (whole or not at all).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_path, destination
from .errors import InvalidInputError
from .points import BatchPoint, read_points
from .settings import Settings

__all__ = ["BatchPoint", "BatchSummary", "read_points", "run_batch"]

log = logging.getLogger(__name__)

#: The columns every batch CSV starts with (the figures follow).
_CSV_BASE = ("index", "id", "lat", "lon", "ok", "error")
#: Longest error text a CSV row carries (csv readers refuse fields over 131072 characters).
_MAX_ERROR = 20_000


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
    """A number as float, other text as it is (for comparing the coordinates an output holds)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return v
    return v


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, abs_tol=1e-9)
    return str(a) == str(b)


def _is_index(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


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
        """Rows already in OUT. A torn last line (an interrupted write) is cut off the file: that
        point runs again; every complete row is kept. A file this writer did not write, or one
        damaged before its end, is refused (InvalidInputError) and left as it is."""
        if not self.path.exists():
            return []
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"output {str(self.path)!r} could not be read ({exc.strerror or exc})") from None
        rows, good = self._parse_csv(raw) if self.csv else self._parse_jsonl(raw)
        if good < len(raw):
            log.warning("%s: cutting off %d bytes of a line torn by an interrupted run (that point runs again)",
                        self.path, len(raw) - good)
            os.truncate(self.path, good)  # one step, nothing complete is lost, works on a full disk
        return rows

    def _refused(self, why: str) -> InvalidInputError:
        return InvalidInputError(
            f"cannot resume into {str(self.path)!r}: {why}. The file is left as it is: if an earlier batch wrote it, "
            "fix or delete the damaged line; if it is another file, choose a new output file")

    def _torn_start(self, tail: bytes, start: bytes) -> bool:
        """Whether ``tail`` can be the torn beginning of what this writer writes first."""
        t = tail.strip(b"\x00").decode("utf-8", "replace")
        s = start.decode()
        return not t.strip() or s.startswith(t) or t.startswith(s)

    def _parse_jsonl(self, raw: bytes) -> tuple[list[dict[str, Any]], int]:
        end = raw.rfind(b"\n") + 1  # bytes after the last newline are a torn line
        rows = []
        for no, line in enumerate(raw[:end].split(b"\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except (ValueError, RecursionError):
                raise self._refused(f"line {no} is not JSON") from None
            if not (isinstance(d, dict) and {"index", "lat", "lon", "ok"} <= d.keys() and _is_index(d["index"])
                    and isinstance(d["ok"], bool)):
                raise self._refused(f"line {no} is not a row of a terramind-nyc batch output "
                                    "(index, id, lat, lon, ok, ...)")
            rows.append(d)
        if not rows and not self._torn_start(raw[end:], b'{"index": '):
            raise self._refused("it holds no complete line and does not start like a batch output")
        return rows, end

    def _parse_csv(self, raw: bytes) -> tuple[list[dict[str, Any]], int]:
        end = raw.rfind(b"\n") + 1
        at = {"pos": 0, "line": 0}

        def lines() -> Iterator[str]:
            while at["pos"] < end:
                nl = raw.index(b"\n", at["pos"]) + 1
                at["line"] += 1
                try:
                    text = raw[at["pos"]:nl].decode("utf-8-sig" if at["pos"] == 0 else "utf-8")
                except UnicodeDecodeError:
                    raise self._refused(f"line {at['line']} is not UTF-8 text") from None
                at["pos"] = nl
                yield text

        header: list[str] | None = None
        rows: list[dict[str, Any]] = []
        good = 0
        reader = csv.reader(lines(), strict=True)
        try:
            for rec in reader:
                if not any(rec):  # a blank line
                    good = at["pos"]
                elif header is None:
                    if not set(_CSV_BASE) <= set(rec):
                        raise self._refused(f"its header {','.join(rec)[:60]!r} lacks the columns "
                                            f"{', '.join(c for c in _CSV_BASE if c not in rec)}")
                    header, good = rec, at["pos"]
                elif len(rec) != len(header):
                    raise self._refused(f"line {reader.line_num} has {len(rec)} fields, the header {len(header)}")
                else:
                    r = dict(zip(header, rec))
                    if not (r["index"].isascii() and r["index"].isdigit() and r["ok"] in ("true", "false")):
                        raise self._refused(f"line {reader.line_num} is not a row of a terramind-nyc batch output")
                    rows.append({"index": int(r["index"]), "lat": _num(r["lat"]), "lon": _num(r["lon"]),
                                 "ok": r["ok"] == "true", "_row": r})
                    good = at["pos"]
        except csv.Error as exc:
            if at["pos"] < end:  # broken before the end: not a torn last row
                raise self._refused(f"line {reader.line_num} is not CSV ({exc})") from None
        if header is None and not self._torn_start(raw[good:], ",".join(_CSV_BASE).encode() + b","):
            raise self._refused("it holds no complete header line and does not start like a batch output")
        self.columns = header  # None after a torn header: the next append writes a whole one
        return rows, good

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace OUT by ``rows`` (as loaded), atomically."""
        with atomic_path(self.path) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
            if self.csv:
                w = csv.DictWriter(fh, fieldnames=self.columns or self._csv_columns())
                w.writeheader()
                for r in rows:
                    w.writerow(r["_row"])
            else:
                for r in rows:
                    fh.write(json.dumps(r, allow_nan=False) + "\n")

    # -- appending -----------------------------------------------------------------------
    def _csv_columns(self) -> list[str]:
        if self.columns is None:
            self.columns = [*_CSV_BASE, "building_density",
                            "building_probability_mean", "n_building_components", "dominant_class", "confidence",
                            "nodata_fraction"] + [f"lulc_{c}" for c in self._class_names()] + [
                "s2_item_ids", "s2_datetime", "modalities_missing", "checkpoint_sha256"]
        return self.columns

    def _csv_row(self, pt: BatchPoint, item: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"index": pt.index, "id": pt.id or "", "lat": pt.lat, "lon": pt.lon,
                               "ok": "true" if item.ok else "false",
                               "error": "" if item.ok else str(item.error)[:_MAX_ERROR]}
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
    ``out_path`` written from a different input, or not a batch output at all, raises
    InvalidInputError rather than mixing the two (see the module docstring for torn lines).
    ``progress`` shows a tqdm bar (default: when stderr is a terminal).
    """
    from .api import fetch_many
    from .pipeline import current_pipeline

    if not isinstance(chunk, int) or chunk < 1:
        raise InvalidInputError(f"chunk must be a positive integer, got {chunk!r}")
    settings = Settings.resolve(settings)
    points = read_points(points_path)
    out = destination(out_path)  # InvalidInputError for a folder, or a path under a file
    if not out.parent.exists():
        raise InvalidInputError(f"output folder {str(out.parent)!r} does not exist")
    if out.exists() and out.samefile(points_path):
        raise InvalidInputError(f"the output {str(out)!r} is the points file itself: choose another output file")

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
