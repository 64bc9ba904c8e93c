"""Artifacts loaded and saved: round trip, overwrite, architecture checks, bad configs in an artifact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from terramind_nyc.errors import CheckpointError, InvalidInputError
from terramind_nyc.model.config import HeadSpec, ModelConfig
from terramind_nyc.model.files import CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE
from terramind_nyc.model.safetensors_io import weights_sha256

torch = pytest.importorskip("torch")
from terramind_nyc.model.artifact import load_artifact, save_artifact
from terramind_nyc.testing.model import make_tiny_network


def _inputs(config: ModelConfig, size: int = 224, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m.name: torch.randn(1, len(m.bands), size, size, generator=g) for m in config.modalities}


def test_save_load_round_trip_gives_identical_outputs(tmp_path: Path):
    net = make_tiny_network(seed=3)
    cfg = net.config.replace(version="1.2.3", metrics={"test": {"mIoU": 0.42}})
    path = save_artifact(net, cfg, tmp_path / "a")
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    art = load_artifact(path)
    assert art.config == cfg
    assert not art.network.training
    assert art.sha256 == hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest() == weights_sha256(
        path / WEIGHTS_FILE)
    assert art.describe()["version"] == "1.2.3" and art.describe()["sha256"] == art.sha256
    x = _inputs(cfg)
    net.prepare_for_inference()  # the loaded network is prepared the same way (layout only)
    with torch.inference_mode():
        a, b = net(x), art.network(x)
    for h in cfg.head_names:
        assert torch.equal(a[h], b[h])
    for (k, v), (k2, v2) in zip(net.state_dict().items(), art.network.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_save_refuses_to_overwrite_and_removes_a_stale_onnx(tmp_path: Path):
    net = make_tiny_network()
    path = save_artifact(net, None, tmp_path / "a")
    (path / ONNX_FILE).write_bytes(b"old export")
    with pytest.raises(InvalidInputError, match="overwrite=True"):
        save_artifact(net, None, path)
    save_artifact(net, None, path, overwrite=True)
    assert not (path / ONNX_FILE).exists()
    assert not [p for p in path.iterdir() if p.name.startswith(".")]


def test_save_rejects_a_config_of_another_architecture(tmp_path: Path):
    net = make_tiny_network()
    other = net.config.replace(heads=net.config.heads[:1])
    with pytest.raises(InvalidInputError, match="another network"):
        save_artifact(net, other, tmp_path / "a")
    # what does not change the weights may change
    ok = net.config.replace(heads=(net.config.heads[0], HeadSpec("buildings", ("bg", "bldg"), ("#000000", "#ffffff"),
                                                                    threshold=0.35)))
    art = load_artifact(save_artifact(net, ok, tmp_path / "b"))
    assert art.config.head("buildings").threshold == 0.35


def test_unknown_schema_version_in_an_artifact(copy_dir: Path):
    d = json.loads((copy_dir / CONFIG_FILE).read_text())
    d["schema_version"] = 3
    (copy_dir / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="schema_version 3.*upgrade terramind-nyc"):
        load_artifact(copy_dir)


def test_config_that_is_not_json(copy_dir: Path):
    (copy_dir / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_artifact(copy_dir)


def test_a_version_1_artifact_still_loads_and_is_saved_as_version_2(tmp_path: Path):
    """Schema 1 named the one neck ``neck.*``; loading maps the names, saving writes the current schema."""
    from safetensors.torch import load_file, save_file

    from terramind_nyc.model.config import SCHEMA_VERSION

    net = make_tiny_network(seed=7)
    new = save_artifact(net, None, tmp_path / "v2")
    old = tmp_path / "v1"
    old.mkdir()
    d = json.loads((new / CONFIG_FILE).read_text())
    d = {k: v for k, v in d.items() if k not in ("encoders", "temporal_repeat")} | {"schema_version": 1}
    (old / CONFIG_FILE).write_text(json.dumps(d))
    tensors = {("neck." + k[len("necks.shared."):] if k.startswith("necks.shared.") else k): v
               for k, v in load_file(str(new / WEIGHTS_FILE)).items()}
    assert any(k.startswith("neck.") for k in tensors)
    save_file(tensors, str(old / WEIGHTS_FILE))
    a, b = load_artifact(new), load_artifact(old)
    assert b.config.schema_version == 1 and b.describe()["kind"] == "shared-encoder"
    x = _inputs(a.config, size=64)
    with torch.inference_mode():
        for h, v in a.network(x).items():
            torch.testing.assert_close(b.network(x)[h], v, rtol=0, atol=0)
    again = save_artifact(b.network, b.config, tmp_path / "again")
    assert json.loads((again / CONFIG_FILE).read_text())["schema_version"] == SCHEMA_VERSION
    # the same tensors (not the same sha256: safetensors writes its metadata in no fixed order)
    saved = load_file(str(again / WEIGHTS_FILE))
    assert all(torch.equal(saved[k], v) for k, v in load_file(str(new / WEIGHTS_FILE)).items())
