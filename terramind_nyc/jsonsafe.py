"""One rule for turning library values into JSON: :func:`json_safe`.

Used by every JSON the library writes (results, provenance, batch rows, configs, training
records), so a value means the same thing in all of them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["json_safe"]


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types, recursively.

    - mappings become dicts with string keys; lists, tuples, sets and numpy arrays become lists
      (sets sorted, so output is stable);
    - numpy scalars become Python numbers; NaN and +-inf become ``None`` (JSON has neither);
    - ``datetime``/``date`` become ISO 8601 strings; paths become strings;
    - objects with ``to_dict()`` and dataclass instances become their dicts;
    - ``str``, ``int``, ``bool`` and ``None`` pass through; anything else becomes ``str(value)``.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v) for v in value), key=repr)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return json_safe(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value))
    return str(value)
