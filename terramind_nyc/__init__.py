"""terramind_nyc: building density and land-cover fractions for a New York City point.

    from terramind_nyc import fetch
    r = fetch(40.7484, -73.9857)
    r.building_density, r.lulc_fractions, r.provenance

Importing the package is cheap: torch, terratorch and ONNX Runtime load only when a model is
first needed. Public names resolve lazily through a module-level ``__getattr__``.
"""

from __future__ import annotations

import importlib
import logging as _logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    BackendError,
    CatalogError,
    CheckpointError,
    CheckpointNotFoundError,
    ChipError,
    ChipNodataError,
    DeadlineExceededError,
    InternalError,
    InvalidInputError,
    InvalidLocationError,
    MapCoverageError,
    MissingModalityWarning,
    NoSceneError,
    OutsideDomainError,
    PrecisionFallbackWarning,
    ProviderFallbackWarning,
    SettingsError,
    StaleSceneWarning,
    TerramindNYCError,
    TerramindNYCWarning,
)
from .settings import Settings

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

#: Public names that live in modules loaded on first use.
_LAZY = {
    "fetch": "terramind_nyc.api",
    "fetch_many": "terramind_nyc.api",
    "fetch_riprap": "terramind_nyc.api",
    "Result": "terramind_nyc.result",
    "map_area": "terramind_nyc.maps",
    "CityMap": "terramind_nyc.maps",
}

__all__ = [
    "__version__",
    "fetch",
    "fetch_many",
    "fetch_riprap",
    "map_area",
    "CityMap",
    "Result",
    "Settings",
    "TerramindNYCError",
    "SettingsError",
    "InvalidLocationError",
    "OutsideDomainError",
    "InvalidInputError",
    "CatalogError",
    "NoSceneError",
    "ChipError",
    "ChipNodataError",
    "DeadlineExceededError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "BackendError",
    "InternalError",
    "MapCoverageError",
    "TerramindNYCWarning",
    "MissingModalityWarning",
    "StaleSceneWarning",
    "ProviderFallbackWarning",
    "PrecisionFallbackWarning",
]

if TYPE_CHECKING:  # pragma: no cover
    from .api import Result, fetch, fetch_many, fetch_riprap  # noqa: F401
    from .maps import CityMap, map_area  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'terramind_nyc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
