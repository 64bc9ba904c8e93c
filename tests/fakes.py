"""Fakes for the imagery reader and the model runtime, shared by the API, batch and CLI tests."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from terramind_nyc.cache import clear_caches
from terramind_nyc.errors import MissingModalityWarning
from terramind_nyc.imagery.chip import Chip, ModalityProvenance
from terramind_nyc.model.config import DEFAULT_HEADS
from terramind_nyc.model.runtime import ModelInfo
from terramind_nyc.pipeline import Pipeline, use_pipeline
from terramind_nyc.sensors import S2_BANDS, UNITS

CLASSES = ("water", "developed", "forest", "herbaceous", "other")
BANDS = S2_BANDS
ESB = (40.7484, -73.9857)


def fake_provenance(datetime_iso: str) -> ModalityProvenance:
    """The S2 provenance of a fake chip: one item ``S2A_FAKE`` acquired at ``datetime_iso``."""
    return ModalityProvenance(
        modality="S2L2A", collection="sentinel-2-l2a", provider="local", catalog="fake", item_ids=("S2A_FAKE",),
        datetimes=(datetime_iso,), bands=S2_BANDS, units=UNITS["S2L2A"], source_crs=("EPSG:32618",),
        resampling="bilinear", nodata_fraction=0.0, cloud_fraction=0.01)


def _world_field(grid) -> np.ndarray:
    """A smooth field of world coordinates, so any window crops consistently."""
    minx, _, _, maxy = grid.bounds
    xs = minx + (np.arange(grid.width) + 0.5) * grid.resolution
    ys = maxy - (np.arange(grid.height) + 0.5) * grid.resolution
    return np.sin(xs[None, :] / 170.0) * np.cos(ys[:, None] / 230.0)


class FakeReader:
    """A :class:`terramind_nyc.pipeline.ChipReader`: a smooth synthetic chip on any grid, no I/O."""

    def __init__(self, missing=(), fail: Exception | None = None, transient: bool = False):
        self.calls = 0
        self.missing = tuple(missing)
        self.transient = transient  # the missing modalities were lost to a failed read
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
        prov = {"S2L2A": fake_provenance(self.s2_datetime)}
        return Chip(grid=grid, arrays=arrays, masks=masks, scl=None, provenance=prov, missing=self.missing,
                    transient=self.missing if self.transient else ())


@dataclass
class FakePrediction:
    probabilities: dict[str, np.ndarray]


FAKE_INFO = ModelInfo(
    checkpoint={"id": "fake", "name": "fake-two-head", "version": "0", "sha256": "ab" * 32},
    backend="fake", device="cpu", precision="fp32", precision_requested="fp32", precision_reason="fake runtime",
    modalities=("S2L2A", "S1RTC", "DEM"),
    heads={h.name: {"classes": h.classes, "labels": h.display_labels, "colors": h.colors, "threshold": h.threshold,
                    "encoder": h.encoder} for h in DEFAULT_HEADS},
    lulc_classes=CLASSES, lulc_colors=("#1f78b4", "#e31a1c", "#33a02c", "#b2df8a", "#bdbdbd"),
    building_threshold=0.5, s2_bands=S2_BANDS, tile_size=224, timesteps=1,
)


@dataclass
class FakeRuntime:
    """A :class:`terramind_nyc.pipeline.ModelRuntime`: probabilities from a formula over S2 band 1."""

    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def model_info(self) -> ModelInfo:
        return FAKE_INFO

    def predict(self, arrays, masks=None):
        with self.lock:
            self.calls += 1
        f = (arrays["S2L2A"][0] - 1000) / 500.0
        logits = np.stack([f * k for k in (1.0, -1.0, 0.5, -0.5, 0.1)])
        e = np.exp(logits - logits.max(0))
        p_b = 1 / (1 + np.exp(-4 * f))
        return FakePrediction({"lulc": (e / e.sum(0)).astype(np.float32),
                               "buildings": np.stack([1 - p_b, p_b]).astype(np.float32)})


class SwitchableReader:
    """A chip reader that delegates to ``current`` (tests swap it mid-test with :meth:`Fakes.swap_reader`)."""

    def __init__(self, current: Any) -> None:
        self.current = current

    def __call__(self, grid, start, end, settings, deadline):
        return self.current(grid, start, end, settings, deadline)


@dataclass
class Fakes:
    """What the ``fakes`` fixture gives: the fake reader and runtime behind the installed pipeline.

    Unpacks as ``reader, runtime = fakes``.
    """

    reader: FakeReader
    runtime: FakeRuntime
    switch: SwitchableReader

    def __iter__(self):
        return iter((self.reader, self.runtime))

    def __getitem__(self, i: int):
        return (self.reader, self.runtime)[i]

    def swap_reader(self, reader: Any) -> None:
        """Serve chips from ``reader`` from now on (the runtime stays)."""
        self.switch.current = reader


@pytest.fixture
def fakes():
    """``fetch`` & co. run through a real :class:`Pipeline` whose reader and runtime are fakes."""
    clear_caches()
    reader, runtime = FakeReader(), FakeRuntime()
    switch = SwitchableReader(reader)
    with use_pipeline(Pipeline(reader=switch, runtimes=lambda settings, deadline=None: runtime)):
        yield Fakes(reader, runtime, switch)
    clear_caches()


def assert_threads_agree(runtime: Any, x: dict[str, np.ndarray], n: int = 4) -> None:
    """``n`` threads predicting ``x`` at once through one runtime all get its serial answer."""
    expected = runtime.predict(x).probabilities
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = runtime.predict(x).probabilities
        except Exception as exc:
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
