"""The public calls: :func:`fetch`, :func:`fetch_many` and :func:`fetch_riprap`.

:func:`fetch_riprap` lives with the other client views in :mod:`terramind_nyc.riprap` and is
re-exported here. Thin: each call validates its arguments and runs the stages of
:class:`~terramind_nyc.pipeline.Pipeline` (grid -> imagery -> model -> summary -> Result).
:class:`~terramind_nyc.result.Result`, :class:`~terramind_nyc.result.Provenance` and
:class:`~terramind_nyc.result.BatchItem` are re-exported here for ``from terramind_nyc.api import ...``.
"""

from __future__ import annotations

import os

import logging
import numbers
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .errors import (
    InternalError,
    InvalidInputError,
    InvalidLocationError,
    TerramindNYCError,
)
from .pipeline import current_pipeline
from .request import check_size
from .result import BatchItem, Provenance, Result
from .riprap import fetch_riprap
from .settings import Settings
from .shared_windows import MAX_WINDOW_M, group_windows, run_shared_window

if TYPE_CHECKING:  # pragma: no cover
    from .grid import ChipGrid

__all__ = ["BatchItem", "Provenance", "Result", "fetch", "fetch_many", "fetch_riprap"]

log = logging.getLogger(__name__)


def fetch(
    lat: float,
    lon: float,
    *,
    when: Any = None,
    size_m: float | None = None,
    radius_m: float | None = None,
    settings: Settings | None = None,
    map: str | os.PathLike[str] | None = None,  # noqa: A002 - the name users know from the CLI
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
        map: a city map folder (:func:`~terramind_nyc.maps.map_area`): answer from it in
            milliseconds where it can, else fetch live (outside it, no valid data, or a scene
            older than ``settings.map_max_age_days``).

    Raises the library's errors: InvalidLocationError (OutsideDomainError for a valid point
    outside NYC), InvalidInputError, NoSceneError, CatalogError, ChipError,
    DeadlineExceededError, CheckpointError, BackendError.
    """
    if map is not None:
        from .maps.citymap import fetch_or_map

        return fetch_or_map(lat, lon, map=map, when=when, size_m=size_m, radius_m=radius_m, settings=settings)
    return current_pipeline().fetch(lat, lon, when=when, size_m=size_m, radius_m=radius_m, settings=settings)


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
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def _given_point(p: Any) -> tuple[float, float]:
    """The coordinates of a bad point as far as they can be read (NaN where not)."""
    try:
        la, lo = _as_point(p)
    except Exception:
        return float("nan"), float("nan")
    return _float_or_nan(la), _float_or_nan(lo)


def _unexpected(exc: Exception, where: str) -> InternalError:
    """An unexpected exception of one point, logged and wrapped so the rest of the batch goes on."""
    log.error("unexpected %s in %s (a bug: please report it)", type(exc).__name__, where, exc_info=exc)
    err = InternalError(f"unexpected {type(exc).__name__} in {where}: {exc} (a bug in terramind_nyc or a "
                        "dependency: please report it; the other points are unaffected)")
    err.__cause__ = exc
    return err


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
    from .grid import as_metres, chip_grid
    from .location import validate_location

    settings = Settings.resolve(settings)
    if workers is None:
        n_workers = min(4, settings.io_threads)
    elif isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise InvalidInputError(f"workers must be a positive integer or None (the default), got {workers!r}")
    else:
        n_workers = int(workers)
    if max_window_m is not None:
        max_window_m = as_metres(max_window_m, "max_window_m")
    pipeline = current_pipeline()
    if isinstance(points, (str, bytes, Mapping)) or not isinstance(points, Iterable):
        raise InvalidInputError(f"points must be a sequence of (lat, lon) pairs or {{'lat', 'lon'}} mappings, "
                                f"got {type(points).__name__}")
    pts = list(points)
    items: list[BatchItem | None] = [None] * len(pts)
    size, radius = check_size(size_m, radius_m, settings)
    valid_points: list[tuple[int, float, float, ChipGrid]] = []
    for i, p in enumerate(pts):
        try:
            lat, lon = _as_point(p)
            lat, lon = validate_location(lat, lon, settings)
            valid_points.append((i, lat, lon, chip_grid(lat, lon, size_m=size, settings=settings)))
        except TerramindNYCError as exc:
            items[i] = BatchItem(i, *_given_point(p), None, exc)
        except Exception as exc:
            items[i] = BatchItem(i, *_given_point(p), None, _unexpected(exc, f"validating point {i}"))
    max_px = int(round((max_window_m or max(2 * size, MAX_WINDOW_M)) / settings.resolution_m))
    groups = group_windows([(i, g) for i, _, _, g in valid_points], max_px, settings.tile_overlap_px)
    coords = {i: (lat, lon) for i, lat, lon, _ in valid_points}

    def run_group(members: list[tuple[int, ChipGrid]]) -> list[BatchItem]:
        if len(members) == 1:
            i, _ = members[0]
            lat, lon = coords[i]
            try:
                return [BatchItem(i, lat, lon, pipeline.fetch(lat, lon, when=when, size_m=size,
                                                              radius_m=radius, settings=settings))]
            except TerramindNYCError as exc:
                return [BatchItem(i, lat, lon, None, exc)]
            except Exception as exc:
                return [BatchItem(i, lat, lon, None, _unexpected(exc, f"fetching point {i}"))]
        try:
            return run_shared_window(pipeline, members, coords, when, radius, settings)
        except Exception as exc:
            err = _unexpected(exc, f"the shared window of points {[i for i, _ in members]}")
            return [BatchItem(i, *coords[i], None, err) for i, _ in members]

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
