"""One JSON rule for the whole library (terramind_nyc.jsonsafe)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from terramind_nyc.jsonsafe import json_safe


@dataclass(frozen=True)
class _Point:
    x: float
    tags: tuple[str, ...]


class _WithToDict:
    def to_dict(self):
        return {"a": np.float32(1.5)}


def test_json_safe_turns_library_values_into_json():
    value = {
        1: np.int64(3), "f": np.float32(0.25), "nan": float("nan"), "inf": np.float64("inf"), "ok": np.bool_(True),
        "arr": np.arange(3, dtype=np.uint8), "nested": [(1, 2), {"t": datetime(2024, 7, 1, 15, 30, tzinfo=UTC)}],
        "day": date(2024, 7, 1), "path": Path("a") / "b", "set": {"b", "a"}, "dc": _Point(float("nan"), ("x",)),
        "obj": _WithToDict(), "none": None, "other": complex(1, 2),
    }
    out = json_safe(value)
    assert out == {
        "1": 3, "f": 0.25, "nan": None, "inf": None, "ok": True, "arr": [0, 1, 2],
        "nested": [[1, 2], {"t": "2024-07-01T15:30:00+00:00"}], "day": "2024-07-01", "path": str(Path("a") / "b"),
        "set": ["a", "b"], "dc": {"x": None, "tags": ["x"]}, "obj": {"a": 1.5}, "none": None, "other": "(1+2j)",
    }
    assert type(out["1"]) is int and type(out["ok"]) is bool
    json.dumps(out, allow_nan=False)
