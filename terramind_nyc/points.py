"""The points file of a batch run: :func:`read_points` reads a CSV or GeoJSON into :class:`BatchPoint` values.

A CSV has ``lat`` and ``lon`` columns (``latitude``/``y`` and ``lng``/``long``/``longitude``/``x``
also work; an ``id`` column, when present, is carried through; a file without a header is read
as ``lat,lon`` per line). A GeoJSON is a FeatureCollection of Point features
(``properties.id``, or the feature's ``id``, carried through). Text is UTF-8 (a byte-order mark
is fine; UTF-16 with one too).

A file is read whole or refused: every defect is one InvalidInputError that names the file, the
line or feature (the first few of them, and how many more) and what to fix, before any point is
processed. A coordinate must be a finite number; whether it lies in the area served is decided
per point by :func:`~terramind_nyc.fetch_many` (a point outside NYC fails on its own, in the output).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInputError

__all__ = ["BatchPoint", "read_points"]

_LAT_NAMES = ("lat", "latitude", "y")
_LON_NAMES = ("lon", "lng", "long", "longitude", "x")
#: How many bad lines or features one error lists.
_LISTED = 5


@dataclass(frozen=True)
class BatchPoint:
    """One input point."""

    index: int
    """Position in the input (0-based, data rows only)."""
    id: str | None
    """The input's ``id`` value, when it has one."""
    lat: float
    """Latitude in degrees, as read (finite)."""
    lon: float
    """Longitude in degrees, as read (finite)."""


def _coord(v: Any) -> float | None:
    """``v`` as finite decimal degrees, else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    try:
        x = float(v.strip() if isinstance(v, str) else v)
    except (ValueError, OverflowError):
        return None
    return x if math.isfinite(x) else None


def _is_number(text: str) -> bool:
    """Whether ``text`` reads as a float (NaN too: a headerless file's first row may be bad)."""
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


def _show(v: Any) -> str:
    text = "missing" if v is None else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _refuse(name: str, problems: list[str], fix: str) -> InvalidInputError:
    more = f" (and {len(problems) - _LISTED} more)" if len(problems) > _LISTED else ""
    return InvalidInputError(f"{name}: {'; '.join(problems[:_LISTED])}{more}. {fix}")


def read_points(path: str | os.PathLike[str]) -> list[BatchPoint]:
    """Read points from a CSV or GeoJSON file (see the module docstring).

    Every defect of the file is an InvalidInputError that names the file, the line (CSV) or
    feature (GeoJSON) and what to fix: a missing file or a folder, an unreadable or empty file,
    text that is not UTF-8 (or UTF-16 with a byte-order mark), broken CSV or JSON, no
    ``lat``/``lon`` columns, a feature that is not a Point, a coordinate that is missing, not
    a number, NaN or infinite. Nothing else is raised.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"the points file must be a path, got {type(path).__name__}")
    p = Path(os.fspath(path)).expanduser()
    name = str(p)
    try:
        data = None if p.is_dir() else p.read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"points file {name!r} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise InvalidInputError(f"points file {name[:200]!r} could not be read ({getattr(exc, 'strerror', None) or exc}); "
                                "check the name and that it is a readable file") from None
    if data is None:
        raise InvalidInputError(f"points file {name!r} is a directory: give the CSV or GeoJSON file in it")
    text = _decode(data, name)
    if not text.strip():
        raise InvalidInputError(f"points file {name!r} is empty: give a CSV with a 'lat,lon' header and one point "
                                "per line, or a GeoJSON FeatureCollection of Point features")
    if p.suffix.lower() in (".geojson", ".json") or text.lstrip()[:1] in ("{", "["):
        return _read_geojson(text, name)
    return _read_csv(text, name)


def _decode(data: bytes, name: str) -> str:
    utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
    try:
        return data.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{name} line {line} is not {'UTF-16' if utf16 else 'UTF-8'} text (byte {data[exc.start:exc.start + 1]!r}); "
            "it was probably saved in a Windows or Latin-1 encoding: save it again as UTF-8 "
            "(in Excel: 'CSV UTF-8 (Comma delimited)')") from None


def _read_geojson(text: str, name: str) -> list[BatchPoint]:
    what = "a GeoJSON FeatureCollection of Point features"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
                                f"fix it, or export the points again as {what}") from None
    except RecursionError:
        raise InvalidInputError(f"{name} is JSON nested too deeply to be {what}") from None
    except ValueError as exc:  # e.g. an integer too long to convert
        raise InvalidInputError(f"{name} is not usable JSON ({exc}); it must be {what}") from None
    feats = doc.get("features") if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else None
    if not isinstance(feats, list):
        got = f"type {doc.get('type')!r}" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise InvalidInputError(f"{name} must be {what} (an object with \"type\": \"FeatureCollection\" and a "
                                f"\"features\" list), got {got}")
    out, problems = [], []
    for i, f in enumerate(feats):
        geom = f.get("geometry") if isinstance(f, dict) else None
        props = f.get("properties") if isinstance(f, dict) else None
        coords = geom.get("coordinates") if isinstance(geom, dict) and geom.get("type") == "Point" else None
        if not isinstance(f, dict):
            problems.append(f"feature {i} is a JSON {type(f).__name__}, not a Feature object")
        elif props is not None and not isinstance(props, dict):
            problems.append(f"feature {i} has properties that are not an object")
        elif not isinstance(geom, dict) or geom.get("type") != "Point":
            problems.append(f"feature {i} has " + (f"a {_show(geom.get('type'))} geometry" if isinstance(geom, dict)
                                                   else "no geometry") + ", not a Point")
        elif not isinstance(coords, list) or len(coords) < 2:
            problems.append(f"feature {i} has Point coordinates {_show(coords)}, not [lon, lat]")
        else:
            lon, lat = _coord(coords[0]), _coord(coords[1])
            if lat is None or lon is None:
                problems.append(f"feature {i} has lon {_show(coords[0])}, lat {_show(coords[1])}")
                continue
            fid = (props or {}).get("id", f.get("id"))
            out.append(BatchPoint(i, None if fid is None else str(fid), lat, lon))
    if problems:
        raise _refuse(name, problems, "Every feature must be a Point with finite [lon, lat] in degrees: fix or "
                                      "remove those features")
    return out


def _read_csv(text: str, name: str) -> list[BatchPoint]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    last = 0
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, cells))
            last = reader.line_num
    except csv.Error as exc:
        hint = " (a field that long is usually an unclosed quote \" running to the end of the file)" \
            if "field larger" in str(exc) else ""
        raise InvalidInputError(f"{name} line {last + 1} cannot be read as CSV: {exc}{hint}; fix that line") from None
    if not rows:
        raise InvalidInputError(f"points file {name!r} holds only blank lines: give a 'lat,lon' header and one "
                                "point per line")
    first = rows[0][1]
    head = [c.strip().lower() for c in first]
    lat_i = next((head.index(n) for n in _LAT_NAMES if n in head), None)
    lon_i = next((head.index(n) for n in _LON_NAMES if n in head), None)
    id_i = head.index("id") if "id" in head else None
    data = rows[1:]
    if lat_i is None or lon_i is None:
        if not (len(first) >= 2 and all(_is_number(c) for c in first[:2])):
            sep = next((f" (it looks separated by {d!r}: save it comma-separated)" for d in (";", "\t", "|")
                        if d in first[0]), "")
            raise InvalidInputError(f"{name}: the header needs 'lat' and 'lon' columns ('latitude'/'y' and "
                                    f"'lng'/'long'/'longitude'/'x' also work), got {first!r}{sep}")
        lat_i, lon_i, id_i, data = 0, 1, None, rows  # no header: lat,lon per line
    out, problems = [], []
    for i, (line, r) in enumerate(data):
        lat_s = r[lat_i] if lat_i < len(r) else None
        lon_s = r[lon_i] if lon_i < len(r) else None
        lat, lon = _coord(lat_s), _coord(lon_s)
        if lat is None or lon is None:
            problems.append(f"line {line} has lat {_show(lat_s)}, lon {_show(lon_s)}")
            continue
        out.append(BatchPoint(i, r[id_i] if id_i is not None and id_i < len(r) else None, lat, lon))
    if problems:
        raise _refuse(name, problems, "Every row needs finite decimal degrees in its lat and lon columns: fix or "
                                      "remove those rows")
    return out
