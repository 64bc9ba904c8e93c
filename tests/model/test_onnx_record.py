"""The ONNX export record in config.json: graph file names, round trip, and every way it can be bad."""

from __future__ import annotations

import json

import pytest

from terramind_nyc.errors import CheckpointError
from terramind_nyc.model.config import ModelConfig
from terramind_nyc.model.onnx_record import OnnxExport, onnx_graph_file
from terramind_nyc.testing.model import tiny_config


def test_graph_file_names_follow_the_model_order():
    full = ("S2L2A", "S1RTC", "DEM")
    assert onnx_graph_file(full, full) == "model.onnx" == onnx_graph_file(("DEM", "S2L2A", "S1RTC"), full)
    assert onnx_graph_file(("DEM", "S2L2A"), full) == "model.S2L2A-DEM.onnx"


def test_onnx_record_round_trips_through_json(onnx_record):
    d = tiny_config().to_dict()
    d["onnx"] = onnx_record
    c = ModelConfig.from_dict(d)
    assert c.onnx is not None and [g.modalities for g in c.onnx.graphs] == [("S2L2A", "S1RTC", "DEM"), ("S2L2A",)]
    assert c.onnx.graph_for(["DEM", "S1RTC", "S2L2A"]).file == "model.onnx" and c.onnx.graph_for(["DEM"]) is None
    assert c.onnx.tolerance == 1e-4 and c.onnx.precision == "float32" and c.onnx.data_file == "model.onnx.data"
    assert ModelConfig.from_dict(json.loads(c.to_json())) == c
    assert c.architecture() == tiny_config().architecture()
    assert OnnxExport.from_dict(c.onnx.to_dict()) == c.onnx


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o["graphs"][1].update(modalities=["S2L1C"]), "non-empty subset"),
        (lambda o: o["graphs"][1].update(modalities=["DEM", "S2L2A"]), "model order"),
        (lambda o: o["graphs"][1].update(file="../evil.onnx"), "plain"),
        (lambda o: o["graphs"][1].update(file="model.onnx"), "duplicates"),
        (lambda o: o["graphs"][1].update(modalities=["S2L2A", "S1RTC", "DEM"]), "subset twice"),
        (lambda o: o["graphs"][0].update(sha256="XYZ"), "hex"),
        (lambda o: o.update(data_file="model.onnx"), "data_file"),
        (lambda o: o.update(opset="20"), "opset"),
        (lambda o: o.update(precision="int8"), "precision"),
        (lambda o: o.update(argmax_agreement=1.5), "argmax_agreement"),
        (lambda o: o.update(surprise=1), "unknown field"),
        (lambda o: o.pop("data_sha256"), "missing `data_sha256`"),
        (lambda o: o.update(graphs=[]), "at least one graph"),
    ],
)
def test_invalid_onnx_records_are_named(onnx_record, mutate, message):
    d = tiny_config().to_dict()
    d["onnx"] = onnx_record
    mutate(d["onnx"])
    with pytest.raises(CheckpointError, match=message):
        ModelConfig.from_dict(d)
