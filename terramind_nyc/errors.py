"""The library's exceptions and warnings.

Every exception derives from :class:`TerramindNYCError` and also from the built-in it
resembles, so callers may catch either (``except ValueError`` still works for bad input).
Degraded-but-usable results emit a :class:`TerramindNYCWarning` subclass instead.
"""

from __future__ import annotations

__all__ = [
    "TerramindNYCError",
    "SettingsError",
    "InvalidLocationError",
    "InvalidInputError",
    "CatalogError",
    "NoSceneError",
    "ChipError",
    "ChipNodataError",
    "DeadlineExceededError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "BackendError",
    "TerramindNYCWarning",
    "MissingModalityWarning",
    "StaleSceneWarning",
    "ProviderFallbackWarning",
    "PrecisionFallbackWarning",
]


class TerramindNYCError(Exception):
    """Base class of every error raised by terramind_nyc."""


class SettingsError(TerramindNYCError, ValueError):
    """A setting (argument or ``TERRAMIND_NYC_*`` variable) has an invalid value."""


class InvalidLocationError(TerramindNYCError, ValueError):
    """A coordinate is not a finite number, is out of range, or lies outside the domain."""


class InvalidInputError(TerramindNYCError, ValueError):
    """An argument other than a location is invalid (dates, arrays, sizes, ...)."""


class CatalogError(TerramindNYCError, OSError):
    """A STAC catalog could not be searched (which step and which service is in the message)."""


class NoSceneError(CatalogError, LookupError):
    """The catalog answered, but no usable scene exists for the request."""


class ChipError(TerramindNYCError, OSError):
    """Imagery could not be read onto the chip grid."""


class ChipNodataError(ChipError, ValueError):
    """The chip was read but has too little valid data to be used."""


class DeadlineExceededError(TerramindNYCError, TimeoutError):
    """The overall deadline of a request passed before it completed."""


class CheckpointError(TerramindNYCError, ValueError):
    """A checkpoint artifact is invalid: bad config, wrong weights, unknown schema."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint artifact (or one of its files) could not be found."""


class BackendError(TerramindNYCError, RuntimeError):
    """An inference backend is unavailable or failed (missing package, bad device, ...)."""


class TerramindNYCWarning(UserWarning):
    """Base class of the library's warnings: the result is usable but degraded."""


class MissingModalityWarning(TerramindNYCWarning):
    """A modality (S1RTC or DEM) was unavailable; the model ran on the others."""


class StaleSceneWarning(TerramindNYCWarning):
    """The chosen scene is older than one would like for the request."""


class ProviderFallbackWarning(TerramindNYCWarning):
    """An ONNX Runtime execution provider asked for is not installed or did not start; a later
    one of the ``onnx_providers`` list runs the model (results are the same, speed is not)."""


class PrecisionFallbackWarning(TerramindNYCWarning):
    """``precision=bf16`` was asked for where the hardware or the backend has no bf16 mode;
    fp32 runs instead (the result's provenance records the precision that ran)."""
