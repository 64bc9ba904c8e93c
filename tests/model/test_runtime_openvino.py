"""The OpenVINO backend: parity with torch fp32, bf16 where the CPU has it, shared compiled graphs,
threads, the auto order, and how bad requests end."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the reference and the export need the torch extra
ov = pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

from fakes import assert_threads_agree, raw
from onnx_artifacts import exported_tiny, reference_runtime

from terramind_nyc.errors import BackendError, CheckpointNotFoundError, PrecisionFallbackWarning
from terramind_nyc.model import backends as rt_mod
from terramind_nyc.model import precision as precision_mod
from terramind_nyc.model import runtime_openvino as ov_mod
from terramind_nyc.model.backends import get_runtime, load_runtime
from terramind_nyc.model.runtime_onnx import OnnxRuntime
from terramind_nyc.model.runtime_openvino import OpenVinoRuntime
from terramind_nyc.model.runtime_torch import TorchRuntime
from terramind_nyc.settings import Settings
from terramind_nyc.testing.model import make_tiny_artifact

CPU_HAS_BF16 = "BF16" in [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def torch_fp32(exported: Path) -> TorchRuntime:
    return reference_runtime(exported)


@pytest.fixture(autouse=True)
def _fresh():
    rt_mod.clear_runtimes()
    precision_mod.reset_warnings()
    yield
    rt_mod.clear_runtimes()
    precision_mod.reset_warnings()


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(0) == b.argmax(0)).mean())


@pytest.mark.parametrize(("h", "w", "modalities"), [
    (224, 224, ("S2L2A", "S1RTC", "DEM")),
    (300, 410, ("S2L2A", "S1RTC", "DEM")),
    (97, 300, ("S2L2A",)),
    (230, 230, ("S2L2A", "DEM")),
])
def test_fp32_matches_torch_fp32(exported, torch_fp32, h, w, modalities):
    rt = load_runtime(str(exported), backend="openvino", device="cpu", precision="fp32", threads=2)
    assert isinstance(rt, OpenVinoRuntime) and rt.precision.used == "fp32"
    x = {m: a for m, a in raw(h, w, seed=h + w).items() if m in modalities}
    a, b = rt.predict(x), torch_fp32.predict(x)
    assert a.modalities == b.modalities == modalities and a.n_tiles == b.n_tiles
    for head, p in b.probabilities.items():
        q = a.probabilities[head]
        assert q.shape == p.shape and q.dtype == np.float32
        np.testing.assert_allclose(q, p, rtol=0, atol=1e-4)
        assert _agreement(q, p) >= 0.999


def test_bf16_agrees_with_torch_fp32_where_the_cpu_has_it(exported, torch_fp32):
    x = raw(300, 300, seed=9)
    if not CPU_HAS_BF16:
        with pytest.warns(PrecisionFallbackWarning, match=r"OpenVINO CPU has no bf16 support"):
            rt = load_runtime(str(exported), backend="openvino", device="cpu", precision="bf16")
        assert rt.model_info().precision == "fp32"
        return
    rt = load_runtime(str(exported), backend="openvino", device="cpu", precision="bf16")
    info = rt.model_info()
    assert (info.backend, info.device, info.precision) == ("openvino", "CPU", "bf16")
    a, b = rt.predict(x), torch_fp32.predict(x)
    for head, p in b.probabilities.items():
        assert _agreement(a.probabilities[head], p) >= 0.99, head
        assert float(np.abs(a.probabilities[head] - p).max()) < 0.1


def test_auto_precision_follows_the_device_capabilities(exported):
    rt = load_runtime(str(exported), backend="openvino", device="cpu", precision="auto")
    assert rt.precision.used == ("bf16" if CPU_HAS_BF16 else "fp32")


def test_compiled_graphs_are_shared_between_runtimes_and_threads(exported):
    s = Settings(checkpoint=str(exported), backend="openvino", precision="fp32", threads=1)
    a = get_runtime(s)
    b = get_runtime(s.replace(tile_overlap_px=64, tile_batch=2))
    assert isinstance(a, OpenVinoRuntime) and b is not a
    full = ("S2L2A", "S1RTC", "DEM")
    assert a.graph(full) is b.graph(full)
    other = OpenVinoRuntime.from_checkpoint(str(exported), device="cpu", precision="fp32", threads=1)
    assert other.graph(full) is a.graph(full)  # compiled once per process
    assert int(a.graph(full).get_property("INFERENCE_NUM_THREADS")) == 1
    assert str(a.graph(full).get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")
    assert_threads_agree(a, raw(230, 250, seed=4))


def test_the_model_info(exported):
    info = load_runtime(str(exported), backend="openvino", device="cpu", precision="fp32").model_info()
    assert info.backend == "openvino" and info.device == "CPU" and info.precision == "fp32"
    assert info.onnx_subsets[0] == ("S2L2A", "S1RTC", "DEM") and info.openvino_version
    assert len(info.checkpoint["sha256"]) == 64 and info.provider is None


# ----------------------------------------------------------------------------------------
# the auto order
# ----------------------------------------------------------------------------------------
def test_auto_takes_openvino_on_a_bf16_cpu_else_onnx_runtime(exported, monkeypatch):
    monkeypatch.setattr(ov_mod, "openvino_cpu_has_bf16", lambda: True)  # OpenVINO sees bf16 units
    assert isinstance(load_runtime(str(exported), backend="auto", device="cpu"), OpenVinoRuntime)
    assert isinstance(load_runtime(str(exported), backend="auto", device="cpu", precision="bf16"), OpenVinoRuntime)
    assert isinstance(load_runtime(str(exported), backend="auto", device="cpu", precision="fp32"), OnnxRuntime)
    monkeypatch.setattr(ov_mod, "openvino_cpu_has_bf16", lambda: False)  # a CPU without them
    assert isinstance(load_runtime(str(exported), backend="auto", device="cpu"), OnnxRuntime)


def test_without_openvino_auto_sees_no_bf16_through_it(monkeypatch):
    ov_mod.reset_core()  # the next Core must be made by importing openvino, which fails here
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert ov_mod.openvino_cpu_has_bf16() is False  # and no error: auto then takes ONNX Runtime


def test_auto_without_onnxruntime_or_torch_serves_through_openvino(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(rt_mod, "torch_available", lambda: False)
    monkeypatch.setattr(ov_mod, "openvino_cpu_has_bf16", lambda: False)
    rt = load_runtime(str(exported), backend="auto", device="cpu")
    assert isinstance(rt, OpenVinoRuntime)  # the last resort; its precision follows OpenVINO's own device check
    assert rt.precision.used == ("bf16" if CPU_HAS_BF16 else "fp32")


# ----------------------------------------------------------------------------------------
# bad requests
# ----------------------------------------------------------------------------------------
def test_without_the_extra_the_error_names_it(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    with pytest.raises(BackendError, match=r"pip install 'terramind-nyc\[openvino\]'"):
        load_runtime(str(exported), backend="openvino")


def test_an_artifact_without_onnx_graphs_names_export_onnx(tmp_path):
    plain = make_tiny_artifact(tmp_path / "plain", seed=2)
    with pytest.raises(CheckpointNotFoundError, match="export-onnx"):
        load_runtime(str(plain), backend="openvino")


def test_a_cuda_device_is_refused(exported):
    with pytest.raises(BackendError, match="not on CUDA devices"):
        load_runtime(str(exported), backend="openvino", device="cuda")


def test_a_subset_without_a_graph_names_the_export(tmp_path):
    from terramind_nyc.model.export_onnx import export_onnx

    path = make_tiny_artifact(tmp_path / "full-only", seed=3)
    export_onnx(path, subsets="full")
    rt = load_runtime(str(path), backend="openvino", device="cpu", precision="fp32")
    with pytest.raises(BackendError, match=r"no graph for the modalities S2L2A .*export-onnx .* --subsets all"):
        rt.predict({"S2L2A": raw(64, 64)["S2L2A"]})


def test_openvino_device_mapping():
    assert ov_mod.openvino_device("cpu", ["CPU", "GPU"]) == "CPU"
    assert ov_mod.openvino_device("auto", ["CPU", "GPU"]) == "GPU"
    assert ov_mod.openvino_device("auto", ["CPU"]) == "CPU"
    with pytest.raises(BackendError, match="unknown device"):
        ov_mod.openvino_device("tpu", ["CPU"])
