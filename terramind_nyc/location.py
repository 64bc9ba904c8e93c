"""User coordinates in, checked: :func:`validate_location` is the one gate for a WGS84 point.

Non-numbers, NaN, infinities and out-of-range values raise
:class:`~terramind_nyc.errors.InvalidLocationError`; a valid point outside the NYC domain
(unless ``Settings.domain_check`` is off) raises its subclass
:class:`~terramind_nyc.errors.OutsideDomainError`, so callers can tell "bad input" from
"out of scope" by type.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import InvalidLocationError, OutsideDomainError, shown
from .settings import Settings

__all__ = ["as_coordinate", "validate_location"]


def as_coordinate(value: Any, name: str) -> float:
    """``value`` as a finite float, or InvalidLocationError naming what is wrong with it.

    Any real number is accepted (int, float, numpy scalars); a string, None, a bool or a
    container is not, nor NaN, infinity or an integer too large for a float.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        hint = "; convert it with float() first" if isinstance(value, (str, bytes)) else ""
        raise InvalidLocationError(
            f"{name} must be a number in decimal degrees, got {type(value).__name__} {shown(value)}{hint}"
        )
    try:
        v = float(value)
    except OverflowError:
        raise InvalidLocationError(
            f"{name} {shown(value)} is far outside the range of decimal degrees; pass a {name} in decimal degrees"
        ) from None
    except (TypeError, ValueError) as exc:  # a Real subclass whose float() fails
        raise InvalidLocationError(f"{name} {shown(value)} is not a usable number ({exc}); pass a float") from None
    if math.isnan(v):
        raise InvalidLocationError(f"{name} is NaN; pass a finite number in decimal degrees")
    if math.isinf(v):
        raise InvalidLocationError(f"{name} is infinite; pass a finite number in decimal degrees")
    return v


def validate_location(lat: Any, lon: Any, settings: Settings | None = None) -> tuple[float, float]:
    """Check a WGS84 point and return it as ``(lat, lon)`` floats.

    Args:
        lat: latitude in decimal degrees (-90..90).
        lon: longitude in decimal degrees (-180..180).
        settings: the NYC domain (``domain_lat``, ``domain_lon``) and whether to enforce it
            (``domain_check``; False accepts any valid point on Earth). Default ``Settings.resolve(None)``
            (the environment's settings).

    Raises:
        InvalidLocationError: a coordinate is not a real number (str, None, bool, ...), is NaN,
            infinite or too large for a float, or lies outside -90..90 / -180..180.
        OutsideDomainError: a valid point outside the domain (an InvalidLocationError too).
    """
    s = Settings.resolve(settings)
    la = as_coordinate(lat, "latitude")
    lo = as_coordinate(lon, "longitude")
    if not -90.0 <= la <= 90.0:
        raise InvalidLocationError(f"latitude {la!r} is not in -90..90 degrees; did you swap lat and lon?")
    if not -180.0 <= lo <= 180.0:
        raise InvalidLocationError(f"longitude {lo!r} is not in -180..180 degrees")
    if s.domain_check:
        (la0, la1), (lo0, lo1) = s.domain_lat, s.domain_lon
        if not (la0 <= la <= la1 and lo0 <= lo <= lo1):
            hint = " (lat and lon look swapped)" if (la0 <= lo <= la1 and lo0 <= la <= lo1) else ""
            raise OutsideDomainError(
                f"point ({la}, {lo}) lies outside the NYC domain (lat {la0}..{la1}, lon {lo0}..{lo1}){hint}; "
                "pass a point in New York City, or Settings(domain_check=False) to accept any point"
            )
    return la, lo
