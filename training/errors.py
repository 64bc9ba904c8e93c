"""Errors of the training package.

They derive from :class:`terramind_nyc.errors.TerramindNYCError` and from the built-in they
resemble, so callers may catch either. Every one of them is raised before a training step runs.
"""

from __future__ import annotations

from terramind_nyc.errors import TerramindNYCError

__all__ = ["DatasetError", "DatasetFileError", "LabelError", "TrainingConfigError", "TrainingError"]


class TrainingError(TerramindNYCError):
    """Base class of the training package's errors."""


class TrainingConfigError(TrainingError, ValueError):
    """A training configuration is invalid (unknown head, loss, encoder size, bad weights, ...)."""


class DatasetError(TrainingError, ValueError):
    """A dataset on disk is unusable (bad index, unknown schema, empty split, ...)."""


class DatasetFileError(DatasetError, FileNotFoundError):
    """A file the dataset index points at is missing."""


class LabelError(DatasetError):
    """A label mask holds values outside its head's class range."""
