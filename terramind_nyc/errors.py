"""The library's exceptions and warnings.

Every exception derives from :class:`TerramindNYCError` and also from the built-in it
resembles, so callers may catch either (``except ValueError`` still works for bad input).
Degraded-but-usable results emit a :class:`TerramindNYCWarning` subclass instead.
"""

from __future__ import annotations

import reprlib
from typing import Any, Literal

__all__ = [
    "BackendError",
    "CatalogError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "ChipError",
    "ChipNodataError",
    "DeadlineExceededError",
    "InternalError",
    "InvalidInputError",
    "InvalidLocationError",
    "MapCoverageError",
    "MissingModalityWarning",
    "NoSceneError",
    "OutsideDomainError",
    "PrecisionFallbackWarning",
    "ProviderFallbackWarning",
    "SettingsError",
    "StaleSceneWarning",
    "TerramindNYCError",
    "TerramindNYCWarning",
]  # plus shown(), the library's own helper for values in messages (not part of the public API)


def shown(value: Any) -> str:
    """``value`` as an error message shows it: short (``reprlib``), and never an error itself (a
    5000-digit int, a broken ``__repr__``)."""
    try:
        return reprlib.repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


class TerramindNYCError(Exception):
    """Base class of every error raised by terramind_nyc."""


class SettingsError(TerramindNYCError, ValueError):
    """A setting (argument or ``TERRAMIND_NYC_*`` variable) has an invalid value."""


class InvalidLocationError(TerramindNYCError, ValueError):
    """A coordinate is not a finite number, is out of range, or lies outside the domain."""


class OutsideDomainError(InvalidLocationError):
    """A valid coordinate that lies outside the area the library serves (the NYC domain, or the
    grid CRS's area of use): nothing is wrong with the request except where it points."""


class InvalidInputError(TerramindNYCError, ValueError):
    """An argument other than a location is invalid (dates, arrays, sizes, ...)."""


class CatalogError(TerramindNYCError, OSError):
    """A STAC catalog could not be searched (which step and which service is in the message)."""


#: Why no scene could be used: ``empty`` (the catalog holds no candidate for the window) or
#: ``cloud`` (candidates exist but none is clear enough over the chip).
NoSceneReason = Literal["empty", "cloud"]


class NoSceneError(CatalogError, LookupError):
    """The catalog answered, but no usable scene exists for the request.

    ``reason`` says why: ``"empty"`` (no candidate in the window) or ``"cloud"`` (every
    candidate is too cloudy or has too much nodata over the chip).
    """

    def __init__(self, message: str, *, reason: NoSceneReason = "empty") -> None:
        super().__init__(message)
        self.reason: NoSceneReason = reason

    def __reduce__(self) -> tuple[object, ...]:  # keep ``reason`` through pickling (process pools)
        return (_rebuild, (type(self), self.args, {"reason": self.reason}))


#: What went wrong reading an asset: ``missing`` (404 / no such file), ``denied`` (401 / 403: a
#: missing, wrong or expired signature or token), ``truncated`` (the file or the transfer broke
#: off), ``server`` (429 / 5xx / timeouts after the retries), ``other``.
ChipErrorKind = Literal["missing", "denied", "truncated", "server", "other"]


class ChipError(TerramindNYCError, OSError):
    """Imagery could not be read onto the chip grid.

    ``kind`` classifies the failure (:data:`ChipErrorKind`; ``"other"`` when unknown) and
    ``status`` is the HTTP status when one was seen (else None).
    """

    def __init__(self, message: str, *, kind: ChipErrorKind = "other", status: int | None = None) -> None:
        super().__init__(message)
        self.kind: ChipErrorKind = kind
        self.status: int | None = status

    def __str__(self) -> str:  # OSError formats several args as a tuple; one message is the text
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, {"kind": self.kind, "status": self.status}))


class ChipNodataError(ChipError, ValueError):
    """The chip was read but has too little valid data to be used."""


class DeadlineExceededError(TerramindNYCError, TimeoutError):
    """The overall deadline of a request passed before it completed."""


class MapCoverageError(TerramindNYCError, LookupError):
    """A city map has no answer for a point: outside the map, a window not computed (or failed),
    no valid pixel in the summary area, no date window that fits, or a scene older than
    ``map_max_age_days``. ``fetch(..., map=...)`` then fetches live."""


class CheckpointError(TerramindNYCError, ValueError):
    """A checkpoint artifact is invalid: bad config, wrong weights, unknown schema."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint artifact (or one of its files) could not be found."""


class BackendError(TerramindNYCError, RuntimeError):
    """An inference backend is unavailable or failed (missing package, bad device, non-finite
    output, ...)."""


class InternalError(TerramindNYCError, RuntimeError):
    """An unexpected exception inside the library or a dependency (a bug: please report it).

    Raised where one failure must not end other work, e.g. per point of ``fetch_many``; the
    original exception is the ``__cause__``.
    """


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


def _rebuild(cls: type[BaseException], args: tuple[object, ...], kwargs: dict[str, object]) -> BaseException:
    """Unpickle an error with keyword-only fields (``reason``, ``kind``, ``status``)."""
    return cls(*args, **kwargs)  # type: ignore[call-arg]
