"""Checks on values read from ``config.json``, shared by :mod:`.config` and :mod:`.onnx_record`.

Each helper raises :class:`~terramind_nyc.errors.CheckpointError` naming the field (``where``)
and what it should have been; the callers add which file it came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..errors import CheckpointError

#: 64 lower-case hex digits.
SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: A plain file name inside the artifact directory (no folders, no leading dot).
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """``value`` when it is a ``kind`` (a bool is never a number), else CheckpointError."""
    if isinstance(value, bool) and kind is not bool and (kind is int or (isinstance(kind, tuple) and int in kind)):
        raise CheckpointError(f"`{where}` must be a number, got {value!r}")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise CheckpointError(f"`{where}` must be {names}, got {type(value).__name__} {value!r}"[:300])
    return value


def int_tuple(value: Any, where: str) -> tuple[int, ...]:
    return tuple(expect(v, int, f"{where}[{i}]") for i, v in enumerate(expect(value, list, where)))


def str_tuple(value: Any, where: str) -> tuple[str, ...]:
    return tuple(expect(v, str, f"{where}[{i}]") for i, v in enumerate(expect(value, list, where)))


def float_tuple(value: Any, where: str) -> tuple[float, ...]:
    return tuple(float(expect(v, (int, float), f"{where}[{i}]")) for i, v in enumerate(expect(value, list, where)))


def no_unknown(d: Any, known: set[str] | frozenset[str], where: str) -> None:
    """CheckpointError naming the keys of ``d`` outside ``known``."""
    extra = sorted(set(d) - set(known))
    if extra:
        raise CheckpointError(f"{where}: unknown field(s) {extra}")


def require(d: Any, keys: Sequence[str], where: str) -> None:
    """CheckpointError naming the first of ``keys`` missing from ``d``."""
    for key in keys:
        if key not in d:
            raise CheckpointError(f"{where}: missing `{key}`")


def unique(names: Sequence[str], where: str) -> None:
    """CheckpointError naming the duplicates in ``names``."""
    dup = sorted({n for n in names if list(names).count(n) > 1})
    if dup:
        raise CheckpointError(f"`{where}` has duplicates: {dup}")


def jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON (a deep copy), or CheckpointError when it is not JSON-safe."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"`{where}` must be JSON-safe (no NaN, numpy or tensors): {exc}") from None
