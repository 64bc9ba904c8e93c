"""The backend-independent Runtime and its ModelInfo, on a numpy stand-in backend (no torch)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import numpy as np
import pytest
from fakes import raw

from terramind_nyc.errors import SettingsError
from terramind_nyc.model.runtime import ModelInfo, Prediction, Runtime
from terramind_nyc.testing.model import tiny_config


class MeanBackend(Runtime):
    """Logits from the mean of each tile's inputs: enough to run the tiling and blending."""

    backend = "stand-in"

    def _forward(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        x = sum(a.mean(axis=1) for a in batch.values())  # (k, tile, tile)
        return {h.name: np.stack([x * (i + 1) for i in range(len(h.classes))], axis=1).astype(np.float32)
                for h in self.config.heads}


@pytest.fixture
def runtime() -> MeanBackend:
    return MeanBackend(tiny_config(), {"id": "stand-in", "sha256": "0" * 64}, tile_batch=2)


def test_model_info_is_typed_frozen_and_json_safe(runtime):
    info = runtime.model_info()
    assert isinstance(info, ModelInfo)
    assert info.backend == "stand-in" and info.device == "cpu" and info.precision == "fp32"
    assert info.lulc_classes == runtime.config.head("lulc").classes and info.building_threshold == 0.5
    assert info.heads["buildings"]["classes"] == ("background", "building") and info.s2_bands[3] == "B04"
    assert (info.tile_size, info.timesteps, info.modalities) == (224, 1, ("S2L2A", "S1RTC", "DEM"))
    assert (info.threads, info.provider, info.providers, info.onnx_subsets, info.openvino_version) == (
        None, None, (), (), None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.backend = "other"  # type: ignore[misc]
    d = info.to_dict()
    assert json.loads(json.dumps(d)) == d and d["lulc_classes"] == list(info.lulc_classes)
    assert set(d) == {f.name for f in dataclasses.fields(ModelInfo)}
    assert dataclasses.replace(info, threads=2).threads == 2 and info.threads is None


def test_model_info_without_the_default_heads(runtime):
    flood = dataclasses.replace(runtime.config.head("buildings"), name="flood")
    info = MeanBackend(tiny_config(heads=(flood,)), {"id": "x"}).model_info()
    assert info.lulc_classes == () and info.lulc_colors == () and info.building_threshold is None
    assert list(info.heads) == ["flood"]


def test_predict_tiles_blends_and_returns_probabilities(runtime):
    p = runtime.predict(raw(300, 250))
    assert isinstance(p, Prediction) and p.modalities == ("S2L2A", "S1RTC", "DEM") and p.n_tiles == 4
    assert p.probabilities["lulc"].shape == (5, 300, 250) and p.probabilities["lulc"].dtype == np.float32
    np.testing.assert_allclose(p.probabilities["buildings"].sum(0), 1.0, atol=1e-5)


def test_with_tiling_shares_the_config_and_checks_the_settings(runtime):
    other = runtime.with_tiling(tile_overlap=64, tile_batch=1)
    assert other.config is runtime.config and other.tile_overlap == 64 and runtime.tile_overlap == 32
    assert other.model_info() == dataclasses.replace(runtime.model_info())
    with pytest.raises(SettingsError, match="tile_overlap_px"):
        runtime.with_tiling(tile_overlap=224, tile_batch=1)
    with pytest.raises(SettingsError, match="tile_batch"):
        runtime.with_tiling(tile_overlap=0, tile_batch=0)
