"""Loading once per process (get_runtime), backend and device choice, and what a bad request says."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fakes import raw

from terramind_nyc.errors import BackendError, CheckpointError, CheckpointNotFoundError, SettingsError
from terramind_nyc.model import backends as backends_mod
from terramind_nyc.model.backends import get_runtime, load_runtime
from terramind_nyc.model.files import WEIGHTS_FILE
from terramind_nyc.model.locate import has_onnx_export
from terramind_nyc.model.runtime_torch import TorchRuntime
from terramind_nyc.settings import Settings
from terramind_nyc.testing.model import make_tiny_artifact


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_artifact(tmp_path_factory.mktemp("rt") / "tiny", seed=7)


@pytest.fixture(autouse=True)
def _fresh_runtimes():
    backends_mod.clear_runtimes()
    yield
    backends_mod.clear_runtimes()


def test_get_runtime_loads_once_and_shares_the_model(artifact_dir):
    s = Settings(checkpoint=str(artifact_dir), device="cpu")
    a = get_runtime(s)
    assert get_runtime(s) is a
    b = get_runtime(s.replace(tile_overlap_px=64, tile_batch=2))
    assert b is not a and b.network is a.network and b.tile_overlap == 64
    info = a.model_info()
    assert info.backend == "torch" and info.device == "cpu" and info.lulc_classes[0] == "water"
    assert info.building_threshold == 0.5 and len(info.checkpoint["sha256"]) == 64
    assert info.s2_bands[3] == "B04" and info.modalities == ("S2L2A", "S1RTC", "DEM")
    p = a.predict(raw(224, 224))
    assert set(p.probabilities) == {"lulc", "buildings"}


def test_a_failed_load_caches_nothing(artifact_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(artifact_dir, bad)
    good = (bad / WEIGHTS_FILE).read_bytes()
    (bad / WEIGHTS_FILE).write_bytes(good[:-100])
    s = Settings(checkpoint=str(bad), device="cpu")
    with pytest.raises(CheckpointError, match="truncated"):
        get_runtime(s)
    assert backends_mod.runtime_cache_info() == {"models": 0, "runtimes": 0, "loading": 0}
    (bad / WEIGHTS_FILE).write_bytes(good)
    assert get_runtime(s).model_info().checkpoint["id"] == str(bad)


def test_backend_and_device_errors(artifact_dir):
    with pytest.raises(BackendError, match="unknown backend"):
        load_runtime(str(artifact_dir), backend="tensorflow")
    if importlib.util.find_spec("onnxruntime") is not None:
        with pytest.raises(CheckpointNotFoundError, match="no ONNX export.*terramind-nyc export-onnx"):
            load_runtime(str(artifact_dir), backend="onnx")
    with pytest.raises(BackendError, match="unknown device"):
        load_runtime(str(artifact_dir), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="sees no GPU.*TERRAMIND_NYC_DEVICE=cpu"):
            load_runtime(str(artifact_dir), device="cuda")
    with pytest.raises(SettingsError, match="tile_overlap_px"):
        load_runtime(str(artifact_dir), device="cpu", tile_overlap=224)



# ----------------------------------------------------------------------------------------
# backend=auto with and without an ONNX export, onnxruntime or torch
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from onnx_artifacts import exported_tiny

    return exported_tiny(tmp_path_factory)


def test_auto_uses_torch_without_an_export(tmp_path):
    plain = make_tiny_artifact(tmp_path / "plain")
    assert not has_onnx_export(plain)
    assert isinstance(load_runtime(str(plain), device="cpu"), TorchRuntime)


def test_onnxruntime_missing_with_auto_falls_back_to_torch(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    rt = load_runtime(str(exported), backend="auto", device="cpu", precision="fp32")
    assert isinstance(rt, TorchRuntime) and rt.model_info().backend == "torch"
    with pytest.raises(BackendError, match=r"needs onnxruntime.*terramind-nyc\[onnx\].*never be installed together"):
        load_runtime(str(exported), backend="onnx")
    monkeypatch.setattr(backends_mod, "torch_available", lambda: False)
    monkeypatch.setattr(backends_mod, "openvino_installed", lambda: False)
    with pytest.raises(BackendError, match=r"neither onnxruntime nor openvino is usable, and torch is not installed"
                                           r".*\[onnx\].*\[openvino\]"):
        load_runtime(str(exported), backend="auto")


def test_torch_missing_without_an_export_names_both_ways(tmp_path, monkeypatch):
    plain = make_tiny_artifact(tmp_path / "plain")
    monkeypatch.setattr(backends_mod, "torch_available", lambda: False)
    with pytest.raises(BackendError, match=r"terramind-nyc\[torch\].*export-onnx"):
        load_runtime(str(plain))


# ----------------------------------------------------------------------------------------
# Loads under a deadline, one per checkpoint
# ----------------------------------------------------------------------------------------
@pytest.fixture
def stalled_hub(artifact_dir, loopback_hub, monkeypatch):
    """The loopback hub publishing the tiny artifact, whose model.safetensors download stalls midway."""
    from huggingface_hub import constants

    from terramind_nyc.model import hub

    hub.clear_probes()
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 2)
    loopback_hub.add_repo("nyc/stalls", artifact_dir)
    loopback_hub.faults.truncate("*/model.safetensors", nbytes=4096, stall=True)
    yield loopback_hub
    loopback_hub.faults.clear()
    hub.clear_probes()


def test_a_stalled_hub_download_ends_at_the_deadline_and_blocks_no_other_checkpoint(artifact_dir, stalled_hub,
                                                                                      tmp_path, monkeypatch):
    import threading
    import time

    from terramind_nyc.deadline import Deadline
    from terramind_nyc.errors import DeadlineExceededError

    loads: list[str] = []
    real = backends_mod.load_runtime

    def counting(checkpoint, **kw):
        loads.append(checkpoint)
        return real(checkpoint, **kw)

    monkeypatch.setattr(backends_mod, "load_runtime", counting)
    stalled = Settings(checkpoint="nyc/stalls", device="cpu")
    local = Settings(checkpoint=str(artifact_dir), device="cpu")
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="loading checkpoint 'nyc/stalls'.*raise `deadline_s`"):
        get_runtime(stalled, deadline=Deadline(2.0))
    assert time.monotonic() - t0 < 3.5
    # the stalled load is still in flight: another checkpoint loads meanwhile, not behind it
    done = threading.Event()
    threading.Thread(target=lambda: (get_runtime(local), done.set()), daemon=True).start()
    assert done.wait(30), "a local checkpoint waited behind the stalled hub download"
    # a second caller of the stalled checkpoint waits on the same load (single flight), to its own deadline
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        get_runtime(stalled, deadline=Deadline(1.0))
    assert time.monotonic() - t0 < 2.5
    assert loads.count("nyc/stalls") == 1, "the second caller started a second load"
    stalled_hub.faults.clear()  # the stall ends: the hub closes the connection, the load fails
    deadline = time.monotonic() + 60
    while backends_mod.runtime_cache_info()["loading"] and time.monotonic() < deadline:
        time.sleep(0.1)
    # nothing half-downloaded is served as the file: no complete weights in the cache's snapshots
    snaps = list((tmp_path / "hub-cache").rglob("snapshots/*/model.safetensors"))
    assert snaps == [] or all(p.stat().st_size == (artifact_dir / WEIGHTS_FILE).stat().st_size for p in snaps)
    # and the next load, with the hub healthy, succeeds and is the same model
    rt = get_runtime(stalled, deadline=Deadline(60.0))
    assert rt.model_info().checkpoint["sha256"] == get_runtime(local).model_info().checkpoint["sha256"]
