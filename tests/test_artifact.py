"""Checkpoint artifacts: config schema, save/load round trip, and every way a checkpoint can be bad."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from terramind_nyc.model.artifact import (
    CONFIG_FILE,
    ONNX_FILE,
    SCHEMA_VERSION,
    WEIGHTS_FILE,
    HeadSpec,
    ModelConfig,
    has_onnx_export,
    load_artifact,
    locate_artifact,
    locate_onnx,
    read_config,
    save_artifact,
    weights_sha256,
)
from terramind_nyc.errors import CheckpointError, CheckpointNotFoundError, InvalidInputError

torch = pytest.importorskip("torch")
from terramind_nyc.testing.model import make_tiny_artifact, make_tiny_network, tiny_config


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_artifact(tmp_path_factory.mktemp("artifact") / "tiny")


@pytest.fixture
def copy_dir(tiny_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(tiny_dir, out)
    return out


def _inputs(config: ModelConfig, size: int = 224, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m.name: torch.randn(1, len(m.bands), size, size, generator=g) for m in config.modalities}


# ----------------------------------------------------------------------------------------
# config schema
# ----------------------------------------------------------------------------------------
def test_default_config_is_the_two_head_base_model():
    c = ModelConfig()
    assert c.encoder == "terramind_v1_base" and c.schema_version == SCHEMA_VERSION
    assert c.head_names == ("lulc", "buildings")
    assert c.head("lulc").classes == ("water", "developed", "forest", "herbaceous", "other")
    assert c.head("buildings").threshold == 0.5
    assert c.modality_names == ("S2L2A", "S1RTC", "DEM") and len(c.modality("S2L2A").bands) == 12
    assert c.resolved_neck_indices == (2, 5, 8, 11)
    assert ModelConfig(encoder="terramind_v1_large").resolved_neck_indices == (5, 11, 17, 23)


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


_SHA = "ab" * 32


def _onnx_record() -> dict:
    return {
        "graphs": [{"modalities": ["S2L2A", "S1RTC", "DEM"], "file": "model.onnx", "sha256": _SHA},
                   {"modalities": ["S2L2A"], "file": "model.S2L2A.onnx", "sha256": _SHA}],
        "data_sha256": _SHA, "source_sha256": _SHA, "opset": 20, "exporter": "torch.onnx torchscript",
        "max_abs_diff": 1e-5,
    }


def test_onnx_record_round_trips_through_json():
    d = tiny_config().to_dict()
    d["onnx"] = _onnx_record()
    c = ModelConfig.from_dict(d)
    assert c.onnx is not None and c.onnx.subsets == (("S2L2A", "S1RTC", "DEM"), ("S2L2A",))
    assert c.onnx.graph_for(["DEM", "S1RTC", "S2L2A"]).file == "model.onnx" and c.onnx.graph_for(["DEM"]) is None
    assert c.onnx.tolerance == 1e-4 and c.onnx.precision == "float32" and c.onnx.data_file == "model.onnx.data"
    assert ModelConfig.from_dict(json.loads(c.to_json())) == c
    assert c.architecture() == tiny_config().architecture()


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
def test_invalid_onnx_records_are_named(mutate, message):
    d = tiny_config().to_dict()
    d["onnx"] = _onnx_record()
    mutate(d["onnx"])
    with pytest.raises(CheckpointError, match=message):
        ModelConfig.from_dict(d)


def test_locate_onnx_fetches_only_the_config_and_the_onnx_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub

    repo = tmp_path / "repo"
    repo.mkdir()
    d = tiny_config().to_dict()
    d["onnx"] = _onnx_record()
    for name, content in (("model.onnx", b"a"), ("model.S2L2A.onnx", b"b"), ("model.onnx.data", b"c")):
        (repo / name).write_bytes(content)
    for i, name in enumerate(("model.onnx", "model.S2L2A.onnx")):
        d["onnx"]["graphs"][i]["sha256"] = weights_sha256(repo / name)
    d["onnx"]["data_sha256"] = weights_sha256(repo / "model.onnx.data")
    (repo / CONFIG_FILE).write_text(json.dumps(d))
    calls = []

    def fake_download(repo_id, filename, *, revision=None, **kw):
        calls.append(filename)
        return str(repo / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    files = locate_onnx("someone/tiny-onnx", revision="v2")
    assert sorted(calls) == sorted([CONFIG_FILE, "model.onnx", "model.S2L2A.onnx", "model.onnx.data"])
    assert files.graphs[("S2L2A",)] == repo / "model.S2L2A.onnx" and files.revision == "v2"
    assert files.describe()["sha256"] == _SHA and has_onnx_export("someone/tiny-onnx")
    (repo / "model.onnx.data").write_bytes(b"changed")
    with pytest.raises(CheckpointError, match="model.onnx.data is corrupt or truncated"):
        locate_onnx("someone/tiny-onnx")


def test_reading_a_config_does_not_import_torch(tiny_dir: Path):
    code = (f"import sys; from terramind_nyc.model.artifact import read_config; c = read_config({str(tiny_dir)!r}); "
            "print(c.encoder, 'torch' in sys.modules, 'terratorch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["terramind_v1_tiny", "False", "False"]


# ----------------------------------------------------------------------------------------
# round trip
# ----------------------------------------------------------------------------------------
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


def test_onnx_file_is_found_when_present(copy_dir: Path):
    (copy_dir / ONNX_FILE).write_bytes(b"x")
    assert locate_artifact(copy_dir).onnx == copy_dir / ONNX_FILE


# ----------------------------------------------------------------------------------------
# bad checkpoints
# ----------------------------------------------------------------------------------------
def test_truncated_weights_raise_checkpoint_error(copy_dir: Path):
    w = copy_dir / WEIGHTS_FILE
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors.*truncated"):
        load_artifact(copy_dir)
    w.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        load_artifact(copy_dir)


def test_class_count_disagreeing_with_the_weights_is_named(copy_dir: Path):
    d = json.loads((copy_dir / CONFIG_FILE).read_text())
    d["heads"][0]["classes"].append("glacier")
    d["heads"][0]["colors"].append("#ffffff")
    (copy_dir / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(CheckpointError) as e:
        load_artifact(copy_dir)
    msg = str(e.value)
    assert "head 'lulc' has 5 classes in the weights but 6 in config.json" in msg
    assert "heads.lulc." in msg and "expected [6" in msg


def test_weights_of_another_encoder_are_named(copy_dir: Path):
    d = json.loads((copy_dir / CONFIG_FILE).read_text())
    d["encoder"] = "terramind_v1_small"
    (copy_dir / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="another shape"):
        load_artifact(copy_dir)


def test_missing_and_unexpected_weights_are_named(copy_dir: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(copy_dir / WEIGHTS_FILE))
    sd.pop("heads.buildings.head.2.bias")
    sd["extra.weight"] = torch.zeros(3)
    save_file(sd, str(copy_dir / WEIGHTS_FILE))
    with pytest.raises(CheckpointError) as e:
        load_artifact(copy_dir)
    assert "heads.buildings.head.2.bias" in str(e.value) and "extra.weight" in str(e.value)


def test_weights_of_another_dtype_are_named(copy_dir: Path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(copy_dir / WEIGHTS_FILE))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, str(copy_dir / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="another dtype.*F16 \\(expected F32\\)"):
        load_artifact(copy_dir)


def test_unknown_schema_version_in_an_artifact(copy_dir: Path):
    d = json.loads((copy_dir / CONFIG_FILE).read_text())
    d["schema_version"] = 2
    (copy_dir / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="schema_version 2.*upgrade terramind-nyc"):
        load_artifact(copy_dir)


def test_config_that_is_not_json(copy_dir: Path):
    (copy_dir / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_artifact(copy_dir)


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE])
def test_missing_file_raises_not_found_naming_it(copy_dir: Path, name: str):
    (copy_dir / name).unlink()
    with pytest.raises(CheckpointNotFoundError, match=f"has no {name}.*python -m training") as e:
        load_artifact(copy_dir)
    assert isinstance(e.value, FileNotFoundError)


def test_missing_directory_raises_not_found(tmp_path: Path):
    with pytest.raises(CheckpointNotFoundError, match="no such directory.*TERRAMIND_NYC_CHECKPOINT"):
        load_artifact(tmp_path / "nowhere")


def test_a_pickle_is_never_unpickled(copy_dir: Path, monkeypatch: pytest.MonkeyPatch):
    class Boom:
        def __reduce__(self):
            return (print, ("unpickled!",))

    (copy_dir / WEIGHTS_FILE).write_bytes(pickle.dumps({"w": Boom()}) + b"\0" * 64)
    calls = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file|corrupt header"):
        load_artifact(copy_dir)
    assert calls == []


def test_corrupt_header_is_reported(copy_dir: Path):
    w = copy_dir / WEIGHTS_FILE
    data = bytearray(w.read_bytes())
    data[8:20] = b"#" * 12
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt header"):
        load_artifact(copy_dir)


# ----------------------------------------------------------------------------------------
# Hugging Face repo ids
# ----------------------------------------------------------------------------------------
def test_repo_id_is_downloaded_through_the_hub_cache(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, *, revision=None, **kw):
        calls.append((repo_id, filename, revision))
        if not (tiny_dir / filename).exists():
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(f"{filename} not in repo")
        return str(tiny_dir / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    art = load_artifact("someone/tiny-model", revision="v1.0")
    assert ("someone/tiny-model", CONFIG_FILE, "v1.0") in calls and ("someone/tiny-model", WEIGHTS_FILE, "v1.0") in calls
    assert art.describe()["id"] == "someone/tiny-model" and art.describe()["revision"] == "v1.0"
    assert locate_artifact("someone/tiny-model", onnx=True).onnx is None
    assert read_config("someone/tiny-model").encoder == "terramind_v1_tiny"


def test_unreachable_repo_id_says_how_to_point_at_a_local_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointNotFoundError, match="local artifact directory.*python -m training") as info:
        load_artifact("terramind-nyc/does-not-exist")
    # offline is reported as offline, not as "the repo has no config.json"
    assert "could not be reached" in str(info.value) and "has no" not in str(info.value)


def test_unreachable_hub_fails_fast_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A hub that gives no answer (here: a closed loopback port) costs one request, not
    huggingface_hub's ~25 s of retries per file, and the error says the hub could not be reached."""
    import socket

    from huggingface_hub import constants

    from terramind_nyc.model import artifact as artifact_mod

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        f"http://127.0.0.1:{port}/{{repo_id}}/resolve/{{revision}}/{{filename}}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(artifact_mod, "_probes", {})
    from huggingface_hub.utils import _http

    waits: list[float] = []  # huggingface_hub's retry back-off sleeps through its module's `time`
    monkeypatch.setattr(_http.time, "sleep", waits.append)
    with pytest.raises(CheckpointNotFoundError, match="could not be reached") as info:
        load_artifact("terramind-nyc/not-cached")
    assert waits == [], "the hub's retries were not skipped"
    assert "has no" not in str(info.value)


@pytest.fixture
def loopback_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """huggingface_hub pointed at a HubServer on 127.0.0.1 with an empty cache."""
    from huggingface_hub import constants

    from terramind_nyc.model import artifact as artifact_mod
    from terramind_nyc.testing import HubServer

    with HubServer() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(artifact_mod, "_probes", {})
        yield hub


def test_repo_id_downloads_from_a_loopback_hub_then_loads_offline(tiny_dir: Path, loopback_hub,
                                                                  monkeypatch: pytest.MonkeyPatch):
    """The real huggingface_hub download path (HEAD, GET, cache, revision pin) against a
    loopback hub; afterwards the same checkpoint loads with the hub gone."""
    from huggingface_hub import constants

    hub = loopback_hub
    commit = hub.add_repo("nyc/tiny", tiny_dir)
    art = load_artifact("nyc/tiny")
    local = load_artifact(str(tiny_dir))
    assert art.sha256 == local.sha256 and art.describe()["id"] == "nyc/tiny"
    gets = [r.path for r in hub.requests if r.method == "GET"]
    assert any(p.endswith("/config.json") for p in gets) and any(p.endswith("/model.safetensors") for p in gets)
    assert load_artifact("nyc/tiny", revision=commit).sha256 == art.sha256
    with pytest.raises(CheckpointNotFoundError, match="no such revision"):
        load_artifact("nyc/tiny", revision="v9")
    with pytest.raises(CheckpointNotFoundError, match="no such repository"):
        load_artifact("nyc/absent")
    # the hub goes away: the cached files still load, without waiting for retries
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert load_artifact("nyc/tiny").sha256 == art.sha256


def test_a_hub_file_missing_from_the_repo_is_named(tiny_dir: Path, loopback_hub, tmp_path: Path):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_dir / CONFIG_FILE, partial / CONFIG_FILE)
    loopback_hub.add_repo("nyc/partial", partial)
    with pytest.raises(CheckpointNotFoundError, match=f"hub has no {WEIGHTS_FILE}"):
        load_artifact("nyc/partial")
