"""Fakes for the imagery reader and the model runtime, shared by the API, batch and CLI tests."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import terramind_nyc.api as api
from terramind_nyc.cache import clear_caches
from terramind_nyc.imagery.reader import Chip
from terramind_nyc.errors import MissingModalityWarning

CLASSES = ("water", "developed", "forest", "herbaceous", "other")
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
ESB = (40.7484, -73.9857)


@dataclass(frozen=True)
class FakeProv:
    item_ids: list[str]
    datetimes: list[str]
    cloud_fraction: float = 0.01
    provider: str = "fake"

    def to_dict(self) -> dict[str, Any]:
        return {"item_ids": self.item_ids, "datetimes": self.datetimes, "cloud_fraction": self.cloud_fraction,
                "nodata_fraction": 0.0, "provider": self.provider}


def _world_field(grid) -> np.ndarray:
    """A smooth field of world coordinates, so any window crops consistently."""
    minx, _, _, maxy = grid.bounds
    xs = minx + (np.arange(grid.width) + 0.5) * grid.resolution
    ys = maxy - (np.arange(grid.height) + 0.5) * grid.resolution
    return np.sin(xs[None, :] / 170.0) * np.cos(ys[:, None] / 230.0)


class FakeReader:
    def __init__(self, missing=(), fail: Exception | None = None):
        self.calls = 0
        self.missing = tuple(missing)
        self.fail = fail
        self.s2_datetime = "2026-11-01T15:40:00+00:00"
        self.corner_invalid = True  # 2x2 invalid pixels in the chip's corner (window-relative)
        self.lock = threading.Lock()

    def __call__(self, grid, start, end, settings, deadline):
        with self.lock:
            self.calls += 1
        if self.fail is not None:
            raise self.fail
        f = _world_field(grid).astype(np.float32)
        arrays = {"S2L2A": np.stack([1000 + 500 * f] * 12), "S1RTC": np.stack([f - 12, f - 18]),
                  "DEM": (10 + f)[None]}
        for m in self.missing:
            arrays.pop(m)
            # like the real reader (terramind_nyc.imagery.reader.read_chip)
            warnings.warn(f"{m} unavailable for this chip: fake", MissingModalityWarning, stacklevel=2)
        valid = np.ones(grid.shape, bool)
        if self.corner_invalid:
            valid[:2, :2] = False
        masks = {m: valid for m in arrays}
        prov = {"S2L2A": FakeProv(["S2A_FAKE"], [self.s2_datetime])}
        return Chip(grid=grid, arrays=arrays, masks=masks, scl=None, provenance=prov, missing=self.missing)


@dataclass
class FakePrediction:
    probabilities: dict[str, np.ndarray]


@dataclass
class FakeRuntime:
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def model_info(self) -> dict[str, Any]:
        return {"lulc_classes": CLASSES, "lulc_colors": ("#1f78b4", "#e31a1c", "#33a02c", "#b2df8a", "#bdbdbd"),
                "building_threshold": 0.5, "s2_bands": BANDS, "modalities": ("S2L2A", "S1RTC", "DEM"),
                "checkpoint": {"id": "fake", "name": "fake-two-head", "version": "0", "sha256": "ab" * 32},
                "backend": "fake", "device": "cpu", "precision": "fp32"}

    def predict(self, arrays, masks=None):
        with self.lock:
            self.calls += 1
        f = (arrays["S2L2A"][0] - 1000) / 500.0
        logits = np.stack([f * k for k in (1.0, -1.0, 0.5, -0.5, 0.1)])
        e = np.exp(logits - logits.max(0))
        p_b = 1 / (1 + np.exp(-4 * f))
        return FakePrediction({"lulc": (e / e.sum(0)).astype(np.float32),
                               "buildings": np.stack([1 - p_b, p_b]).astype(np.float32)})


@pytest.fixture
def fakes(monkeypatch):
    clear_caches()
    reader, runtime = FakeReader(), FakeRuntime()
    monkeypatch.setattr(api, "_read_chip", reader)
    monkeypatch.setattr(api, "_runtime", lambda settings: runtime)
    yield reader, runtime
    clear_caches()


def assert_threads_agree(runtime: Any, x: dict[str, np.ndarray], n: int = 4) -> None:
    """``n`` threads predicting ``x`` at once through one runtime all get its serial answer."""
    expected = runtime.predict(x).probabilities
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = runtime.predict(x).probabilities
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for r in results:
        for h in expected:
            np.testing.assert_array_equal(r[h], expected[h])


def raw(h: int, w: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random raw model inputs in their units: S2 uint16 DN, S1 dB, DEM metres."""
    rng = np.random.default_rng(seed)
    return {
        "S2L2A": rng.integers(0, 6000, (12, h, w)).astype(np.uint16),
        "S1RTC": rng.normal(-14, 4, (2, h, w)).astype(np.float32),
        "DEM": rng.normal(30, 20, (1, h, w)).astype(np.float32),
    }
