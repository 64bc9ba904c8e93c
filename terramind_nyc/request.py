"""One point's question, validated: where, which window, which dates, with which settings.

:func:`check_size` is the gate for a request's window side and summary radius;
:class:`Request` carries the validated inputs through :class:`~terramind_nyc.pipeline.Pipeline`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .cache import stable_key
from .errors import InvalidInputError
from .settings import LIMITS, Settings

if TYPE_CHECKING:  # pragma: no cover
    from .grid import ChipGrid
    from .model.runtime import ModelInfo

__all__ = ["MAX_SIZE_M", "Request", "check_size", "window_key"]

#: Largest window one call serves, metres (the ``size_m`` setting's limit).
MAX_SIZE_M = LIMITS["size_m"][1]


# ----------------------------------------------------------------------------------------
def check_size(size_m: float | None, radius_m: float | None, settings: Settings) -> tuple[float, float | None]:
    """The window side and summary radius (metres) of a request, validated.

    ``size_m`` None takes ``settings.size_m``, grown to fit ``radius_m`` when that is larger.
    """
    from .grid import as_metres

    size = settings.size_m if size_m is None else as_metres(size_m, "size_m")
    if size < settings.resolution_m:
        raise InvalidInputError(f"size_m={size} is smaller than one {settings.resolution_m} m pixel")
    if size > MAX_SIZE_M:
        raise InvalidInputError(f"size_m={size} is larger than the {MAX_SIZE_M / 1000:g} km this library serves "
                                "in one call; use fetch_many for many points")
    if radius_m is not None:
        radius_m = as_metres(radius_m, "radius_m")
        if 2 * radius_m > size:
            if size_m is not None:
                raise InvalidInputError(
                    f"radius_m={radius_m} does not fit in a {size} m window; pass size_m >= {2 * radius_m} or omit it"
                )
            size = float(math.ceil(2 * radius_m / settings.resolution_m) * settings.resolution_m)
            if size > MAX_SIZE_M:
                raise InvalidInputError(f"radius_m={radius_m} needs a {size:g} m window, larger than the "
                                        f"{MAX_SIZE_M / 1000:g} km this library serves in one call; "
                                        f"use radius_m <= {MAX_SIZE_M / 2:g}")
        radius_m = float(radius_m)
    return float(size), radius_m


@dataclass(frozen=True)
class Request:
    """One point's question: where, which window, which dates, with which settings."""

    lat: float
    """Latitude (degrees), validated."""
    lon: float
    """Longitude (degrees), validated."""
    radius_m: float | None
    """Radius of the summary circle (metres), or None for the whole grid."""
    grid: ChipGrid
    """The point's own window."""
    start: datetime
    """Start of the searched acquisition window (aware UTC)."""
    end: datetime
    """End of the searched acquisition window (aware UTC)."""
    settings: Settings
    """The settings of the call."""

    def result_key(self, info: ModelInfo) -> str:
        """Result-cache key: the snapped grid, day window, imagery settings, circle and model (weights
        and the config that reads them: the same weights with other statistics answer differently)."""
        return stable_key("result", self.grid.cache_key(), window_key(self.start, self.end),
                          self.settings.key("chip"), self.radius_m,
                          (round(self.lat, 6), round(self.lon, 6)) if self.radius_m else None,
                          info.checkpoint.get("sha256"), info.checkpoint.get("config_sha256"), info.precision)


def window_key(start: datetime, end: datetime) -> tuple[str, str]:
    """Day resolution: "the last 120 days" asked twice on one day is the same question."""
    return (start.date().isoformat(), end.date().isoformat())
