"""The config schema (config.json): defaults, JSON round trip, and every way a field can be bad (no torch)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from terramind_nyc import sensors
from terramind_nyc.errors import CheckpointError
from terramind_nyc.model import config as config_mod
from terramind_nyc.model.config import DEFAULT_HEADS, SCHEMA_VERSION, ModelConfig
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
        (lambda d: d["heads"][0]["labels"].pop(), "one non-empty display label per class"),
        (lambda d: d["heads"][1].update(labels=["Background", " "]), "one non-empty display label per class"),
        (lambda d: d["heads"][1].update(labels=["Same", "Same"]), "labels` has duplicates"),
        (lambda d: d["heads"][1].update(labels="Building"), "labels: expected list|must be list"),
    ],
)
def test_invalid_fields_are_named(mutate, message):
    d = tiny_config().to_dict()
    mutate(d)
    with pytest.raises(CheckpointError, match=message):
        ModelConfig.from_dict(d)


# ----------------------------------------------------------------------------------------
# config.json from text: every defect a CheckpointError that names the file and what to do
# ----------------------------------------------------------------------------------------
FIX = "fix config.json or re-export the checkpoint"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[" * 100_000 + "]" * 100_000, "nests JSON too deeply", id="nested-100000-deep"),
        pytest.param("[" * 40 + "]" * 40, "expected a JSON object, got list", id="nested-list"),
        pytest.param('{"a": ' * 40 + "1" + "}" * 40, "deeper than 32 levels", id="nested-40-deep"),
        pytest.param("not json", "is not valid JSON", id="not-json"),
        pytest.param(b"\xff\xfe\x00", "is not valid JSON", id="not-utf8-bytes"),
        pytest.param("[1, 2]", "expected a JSON object, got list", id="a-list"),
        pytest.param("3.5", "expected a JSON object, got float", id="a-number"),
        pytest.param('"config"', "expected a JSON object, got str", id="a-string"),
        pytest.param("null", "expected a JSON object, got NoneType", id="null"),
        pytest.param("{}", "has no schema_version", id="empty-object"),
        pytest.param('{"schema_version": true}', "has schema_version True", id="version-true"),
        pytest.param('{"schema_version": 1.0}', "has schema_version 1.0", id="version-float"),
        pytest.param('{"schema_version": ' + "9" * 4000 + "}", "has schema_version 999", id="version-huge-int"),
        pytest.param('{"schema_version": ' + "9" * 5000 + "}", "is not valid JSON", id="int-too-long-to-read"),
    ],
)
def test_from_json_refuses_every_kind_of_bad_text(text, message):
    with pytest.raises(CheckpointError, match=re.escape(message)) as e:
        ModelConfig.from_json(text, source="ckpt/config.json")
    assert str(e.value).startswith("ckpt/config.json") and len(str(e.value)) < 700


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modalities": [{"name": "S2L2A", "bands": ["B02"], "mean": [10**400], "std": [1.0]}]}, "out of range"),
        ({"heads": [{"name": "a", "classes": ["x", "y"], "colors": ["#000000"] * 2, "threshold": 10**400}]},
         "out of range"),
        ({"s2_offset": {"clip_min": 10**400}}, "out of range"),
        ({"metrics": json.loads('{"a": ' * 40 + "1" + "}" * 40)}, "deeper than 32 levels"),
        ({"training": json.loads("[" * 31 + "]" * 31)}, "`training` must be dict"),
        ({"timesteps": 10**30}, "`timesteps` must be an integer in 1..64"),
        ({"tile_size": 2**20}, "multiple of 32 in 64..2048"),
        ({"decoder_channels": [10**9, 256, 128, 64]}, "integers in 1..4096"),
        ({"encoder": ["terramind_v1_tiny"]}, "`encoder` must be str"),
        ({"name": ""}, "`name` must be a non-empty string"),
        ({"modalities": "S2L2A"}, "`modalities` must be list"),
    ],
)
def test_values_no_check_foresaw_are_checkpoint_errors(change, message):
    d = tiny_config().to_dict()
    d.update(change)
    with pytest.raises(CheckpointError, match=re.escape(message)) as e:
        ModelConfig.from_json(json.dumps(d), source="config.json")
    assert FIX in str(e.value)


def test_the_constructor_refuses_junk_with_checkpoint_errors():
    for kw in ({"modalities": "S2L2A"}, {"modalities": ()}, {"heads": [DEFAULT_HEADS[0]]}, {"encoder": ["x"]},
               {"metrics": json.loads('{"a": ' * 40 + "1" + "}" * 40)}, {"timesteps": True}):
        with pytest.raises(CheckpointError):
            ModelConfig(**kw)


def test_from_json_round_trips():
    c = tiny_config(metrics={"test": {"mIoU": 0.5}})
    assert ModelConfig.from_json(c.to_json()) == c
    assert ModelConfig.from_json(c.to_json().encode()) == c


# ----------------------------------------------------------------------------------------
# schema version 2: encoder variants, temporal_repeat, modality transforms; version 1 still read
# ----------------------------------------------------------------------------------------
def _two_variants(**changes):
    from terramind_nyc.model.config import EncoderSpec, LoraSpec

    heads = tuple(dataclasses.replace(h, encoder=h.name) for h in DEFAULT_HEADS)
    base = dict(heads=heads, encoders=(EncoderSpec("lulc", LoraSpec(16, 32.0)), EncoderSpec("buildings", LoraSpec(8, 8))),
                timesteps=4, temporal_pooling="concat", temporal_repeat=True)
    return ModelConfig(**(base | changes))


def test_a_config_with_per_head_encoders_round_trips():
    c = _two_variants()
    assert c.kind == "per-head-encoders"
    assert c.checkpoint_kind() == {"kind": "per-head-encoders", "encoder_passes": 2, "config_sha256": c.fingerprint()}
    assert c.input_timesteps == 1 and c.timesteps == 4
    assert c.heads_of("lulc") == ("lulc",) and c.encoder_spec("buildings").lora.scale == 1.0
    assert ModelConfig.from_json(c.to_json()) == c
    assert ModelConfig().kind == "shared-encoder" and ModelConfig().checkpoint_kind()["encoder_passes"] == 1


def test_a_version_1_config_still_reads_and_keeps_its_version():
    d = ModelConfig().to_dict()
    for key in ("encoders", "temporal_repeat"):
        d.pop(key)
    d["schema_version"] = 1
    c = ModelConfig.from_dict(d)
    assert c.schema_version == 1 and c.kind == "shared-encoder" and c.encoder_names == ("shared",)
    out = c.to_dict()
    assert out["schema_version"] == 1 and "encoders" not in out and "temporal_repeat" not in out
    with pytest.raises(CheckpointError, match="unknown field.*encoders.*schema version 1"):
        ModelConfig.from_dict(d | {"encoders": [{"name": "shared"}]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"encoders": ()}, "at least one encoder variant", id="no-encoders"),
        pytest.param({"temporal_repeat": True, "timesteps": 1}, "needs `timesteps` > 1", id="repeat-without-T"),
        pytest.param({"temporal_repeat": 1}, "true or false", id="repeat-not-bool"),
    ],
)
def test_invalid_encoder_settings_are_named(change, message):
    with pytest.raises(CheckpointError, match=re.escape(message)):
        _two_variants(**change)


def test_encoder_variants_are_checked():
    from terramind_nyc.model.config import EncoderSpec, LoraSpec

    with pytest.raises(CheckpointError, match="names encoder 'nope'"):
        ModelConfig(heads=(dataclasses.replace(DEFAULT_HEADS[0], encoder="nope"), DEFAULT_HEADS[1]))
    with pytest.raises(CheckpointError, match=r"\['spare'\] feed no head"):
        ModelConfig(encoders=(EncoderSpec(), EncoderSpec("spare")))
    with pytest.raises(CheckpointError, match="duplicates"):
        _two_variants(encoders=(EncoderSpec("lulc"), EncoderSpec("lulc")))
    for lora, message in ((LoraSpec(0, 1.0), "lora.rank"), (LoraSpec(4, -1.0), "lora.alpha"),
                          (LoraSpec(4, 8.0, ("mlp.fc1",)), "lora.targets"), (LoraSpec(4, 8.0, ()), "lora.targets")):
        with pytest.raises(CheckpointError, match=re.escape(message)):
            _two_variants(encoders=(EncoderSpec("lulc", lora), EncoderSpec("buildings")))
    with pytest.raises(CheckpointError, match="schema_version 1 has one shared encoder"):
        _two_variants(schema_version=1)


def test_bad_encoder_fields_in_json_are_named():
    d = _two_variants().to_dict()
    d["encoders"][0]["lora"]["rank"] = "16"
    with pytest.raises(CheckpointError, match=r"encoders\[0\]\.lora\.rank"):
        ModelConfig.from_dict(d)
    d = _two_variants().to_dict()
    d["encoders"][1]["extra"] = 1
    with pytest.raises(CheckpointError, match="unknown field"):
        ModelConfig.from_dict(d)
    d = _two_variants().to_dict()
    d["modalities"][1]["transform"] = "log"
    with pytest.raises(CheckpointError, match="`transform` must be one of"):
        ModelConfig.from_dict(d)


def test_the_fingerprint_follows_what_changes_the_answers_only():
    c = ModelConfig()
    s1 = dataclasses.replace(c.modality("S1RTC"), transform="db_to_linear")
    assert c.replace(name="other", version="9", training={"x": 1}).fingerprint() == c.fingerprint()
    assert c.replace(tile_size=256).fingerprint() != c.fingerprint()
    assert c.replace(modalities=(c.modalities[0], s1, c.modalities[2])).fingerprint() != c.fingerprint()


def test_display_labels_are_part_of_the_config_and_optional():
    c = ModelConfig()
    assert c.head("lulc").labels == ("Water", "Built-up / developed", "Trees / forest", "Grass / crop", "Bare / other")
    assert c.head("buildings").display_labels == ("Background", "Building footprint")
    d = c.to_dict()
    assert d["heads"][0]["labels"][2] == "Trees / forest"
    assert ModelConfig.from_dict(json.loads(json.dumps(d))) == c
    for h in d["heads"]:
        del h["labels"]  # a config written before the field existed
    old = ModelConfig.from_dict(d)
    assert old.head("lulc").labels == () and old.head("lulc").display_labels == old.head("lulc").classes
    assert old.fingerprint() != c.fingerprint()  # labels change what a cached answer says
