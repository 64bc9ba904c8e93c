"""The config schema (config.json): defaults, JSON round trip, and every way a field can be bad (no torch)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from terramind_nyc import sensors
from terramind_nyc.errors import CheckpointError
from terramind_nyc.model import config as config_mod
from terramind_nyc.model.config import SCHEMA_VERSION, ModelConfig
from terramind_nyc.testing.model import tiny_config


def test_default_config_is_the_two_head_base_model():
    c = ModelConfig()
    assert c.encoder == "terramind_v1_base" and c.schema_version == SCHEMA_VERSION
    assert c.head_names == ("lulc", "buildings")
    assert c.head("lulc").classes == ("water", "developed", "forest", "herbaceous", "other")
    assert c.head("buildings").threshold == 0.5
    assert c.modality_names == ("S2L2A", "S1RTC", "DEM") and len(c.modality("S2L2A").bands) == 12
    assert c.resolved_neck_indices == (2, 5, 8, 11)
    assert ModelConfig(encoder="terramind_v1_large").resolved_neck_indices == (5, 11, 17, 23)


def test_bands_and_the_offset_rule_come_from_sensors():
    """One place for each fact: the default band orders and the S2 offset rule are sensors.py's."""
    c = ModelConfig()
    assert c.modality("S2L2A").bands == sensors.S2_BANDS and c.modality("S1RTC").bands == sensors.S1_BANDS
    assert c.modality("DEM").bands == sensors.DEM_BANDS
    assert config_mod.S2OffsetRule is sensors.S2OffsetRule
    assert c.s2_offset == sensors.READER_S2_OFFSET and c.s2_offset.same_as(sensors.READER_S2_OFFSET)
    assert c.to_dict()["s2_offset"] == dataclasses.asdict(sensors.READER_S2_OFFSET)


def test_config_round_trips_through_json():
    c = tiny_config(training={"run": "x", "epochs": 3}, metrics={"test": {"mIoU": 0.5}})
    again = ModelConfig.from_dict(json.loads(c.to_json()))
    assert again == c


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 99}, "schema_version 99"),
        ({"schema_version": None}, "no schema_version"),
        ({"encoder": "terramind_v1_huge"}, "unknown encoder"),
        ({"surprise": 1}, "unknown field"),
        ({"tile_size": 100}, "tile_size"),
        ({"timesteps": 0}, "timesteps"),
        ({"heads": []}, "at least one head"),
        ({"decoder_channels": [512, 256]}, "decoder_channels"),
        ({"neck_indices": [2, 5, 8, 40]}, "neck_indices"),
        ({"s2_offset": {"offset_dn": 1000, "surprise": 1}}, "s2_offset: unknown field"),
    ],
)
def test_invalid_configs_name_the_problem(change, message):
    d = tiny_config().to_dict()
    d.update(change)
    with pytest.raises(CheckpointError, match=message):
        ModelConfig.from_dict(d, source="config.json")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["modalities"][0]["mean"].pop(), "3 .*values for 12 bands|11 `mean` values for 12 bands"),
        (lambda d: d["modalities"][1].update(std=[1.0, 0.0]), "std"),
        (lambda d: d["modalities"][0].update(name="S3"), "unknown modality"),
        (lambda d: d["heads"][0].update(threshold=0.5), "two-class heads"),
        (lambda d: d["heads"][0]["colors"].pop(), "colour"),
        (lambda d: d["heads"][1].update(name="lulc"), "duplicates"),
        (lambda d: d["heads"][1].update(name="Bad.Name"), "identifier"),
        (lambda d: d["heads"][1].update(classes=["only"], colors=["#000000"]), "at least two"),
        (lambda d: d["heads"][0].update(classes="water"), "must be list"),
    ],
)
def test_invalid_fields_are_named(mutate, message):
    d = tiny_config().to_dict()
    mutate(d)
    with pytest.raises(CheckpointError, match=message):
        ModelConfig.from_dict(d)
