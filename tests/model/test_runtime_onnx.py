"""The ONNX Runtime backend: parity with torch, providers, threads, backend choice, bad exports,
and torch-free serving (tests/onnx_only run in a fresh process)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from fakes import assert_threads_agree, raw
from onnx_artifacts import copy_artifact, exported_tiny, reference_runtime

from terramind_nyc.errors import BackendError, CheckpointError, CheckpointNotFoundError, ProviderFallbackWarning
from terramind_nyc.model import backends as backends_mod
from terramind_nyc.model import runtime_onnx
from terramind_nyc.model.backends import get_runtime, load_runtime
from terramind_nyc.model.files import CONFIG_FILE, ONNX_DATA_FILE, ONNX_FILE
from terramind_nyc.model.locate import has_onnx_export, locate_onnx
from terramind_nyc.model.runtime_onnx import OnnxRuntime
from terramind_nyc.model.runtime_torch import TorchRuntime
from terramind_nyc.model.safetensors_io import weights_sha256
from terramind_nyc.settings import Settings
from terramind_nyc.testing.model import make_tiny_artifact

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def ort_rt(exported: Path) -> OnnxRuntime:
    rt = load_runtime(str(exported), backend="onnx")
    assert isinstance(rt, OnnxRuntime)
    return rt


@pytest.fixture(scope="module")
def torch_rt(exported: Path) -> TorchRuntime:
    return reference_runtime(exported)


@pytest.fixture(autouse=True)
def _fresh():
    backends_mod.clear_runtimes()
    runtime_onnx.reset_warnings()
    yield
    backends_mod.clear_runtimes()


def _damaged(exported: Path, tmp_path: Path) -> Path:
    return copy_artifact(exported, tmp_path / "damaged")


def _set_record(path: Path, **changes) -> None:
    """Rewrite config.json's export record (to make a damaged file look recorded)."""
    d = json.loads((path / CONFIG_FILE).read_text())
    d["onnx"].update(changes)
    (path / CONFIG_FILE).write_text(json.dumps(d))


# ----------------------------------------------------------------------------------------
# parity with torch
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("h", "w", "modalities"),
    [
        (224, 224, ("S2L2A", "S1RTC", "DEM")),
        (300, 300, ("S2L2A", "S1RTC", "DEM")),
        (100, 100, ("S2L2A", "S1RTC", "DEM")),
        (240, 230, ("S2L2A",)),
        (224, 250, ("S2L2A", "DEM")),
        (64, 300, ("S2L2A", "S1RTC")),
    ],
)
def test_onnx_runtime_matches_torch(ort_rt, torch_rt, h, w, modalities):
    x = {m: a for m, a in raw(h, w, seed=h + w).items() if m in modalities}
    mask = np.ones((h, w), bool)
    mask[: h // 5, : w // 7] = False
    a = ort_rt.predict(x, {"S2L2A": mask})
    b = torch_rt.predict(x, {"S2L2A": mask})
    assert a.modalities == b.modalities == modalities and a.n_tiles == b.n_tiles
    for head in b.probabilities:
        pa, pb = a.probabilities[head], b.probabilities[head]
        assert pa.shape == pb.shape == (len(torch_rt.config.head(head).classes), h, w) and pa.dtype == np.float32
        np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-4)
        assert (pa.argmax(0) == pb.argmax(0)).mean() >= 0.999


def test_model_info_reports_backend_provider_and_the_same_checkpoint(ort_rt, torch_rt, exported):
    info, tinfo = ort_rt.model_info(), torch_rt.model_info()
    assert info.backend == "onnx" and info.device == "CPUExecutionProvider" == info.provider
    assert info.providers[0] == "CPUExecutionProvider"
    for key in ("lulc_classes", "lulc_colors", "building_threshold", "s2_bands", "modalities", "tile_size"):
        assert getattr(info, key) == getattr(tinfo, key)
    ck = info.checkpoint
    assert ck["sha256"] == tinfo.checkpoint["sha256"] == weights_sha256(exported / "model.safetensors")
    assert {k: ck[k] for k in ("id", "name", "version")} == {k: tinfo.checkpoint[k] for k in ("id", "name", "version")}
    assert ck["onnx"]["opset"] == 20 and ck["onnx"]["sha256"] == weights_sha256(exported / ONNX_FILE)
    assert sorted(info.onnx_subsets) == sorted(locate_onnx(exported).graphs)
    assert tinfo.onnx_subsets == () and tinfo.provider is None and info.to_dict()["onnx_subsets"][0] == list(
        info.onnx_subsets[0])


def test_a_subset_without_a_graph_is_named(ort_rt):
    with pytest.raises(BackendError, match=r"no graph for the modalities S1RTC\+DEM .*export-onnx .*--subsets all"):
        ort_rt.predict({k: v for k, v in raw(64, 64).items() if k != "S2L2A"})


# ----------------------------------------------------------------------------------------
# sessions, threads, backend choice
# ----------------------------------------------------------------------------------------
def test_get_runtime_auto_prefers_onnx_and_shares_sessions(exported):
    s = Settings(checkpoint=str(exported), threads=1, precision="fp32")  # fp32: OpenVINO is only auto's bf16 pick
    a = get_runtime(s)
    assert isinstance(a, OnnxRuntime) and get_runtime(s) is a
    b = get_runtime(s.replace(tile_overlap_px=64, tile_batch=2))
    assert b is not a and b.tile_overlap == 64
    assert b.compiled_subsets() == a.compiled_subsets() == [("S2L2A", "S1RTC", "DEM")]
    a.predict({"S2L2A": raw(64, 64)["S2L2A"]})  # a second session, shared as well
    assert ("S2L2A",) in b.compiled_subsets() and b.graph(("S2L2A",)) is a.graph(("S2L2A",))
    sess = a.graph(("S2L2A", "S1RTC", "DEM"))
    assert sess.get_session_options().intra_op_num_threads == 1 and a.model_info().threads == 1


def test_threads_share_one_session_and_agree(ort_rt):
    assert_threads_agree(ort_rt, raw(224, 300, seed=9))


def test_backend_onnx_without_an_export_names_export_onnx(tmp_path):
    plain = make_tiny_artifact(tmp_path / "plain")
    with pytest.raises(CheckpointNotFoundError, match="has no ONNX export.*terramind-nyc export-onnx") as e:
        load_runtime(str(plain), backend="onnx")
    assert isinstance(e.value, FileNotFoundError)
    (plain / ONNX_FILE).write_bytes(b"from elsewhere")
    with pytest.raises(CheckpointNotFoundError, match="holds a model.onnx, but from another tool"):
        load_runtime(str(plain), backend="onnx")


# ----------------------------------------------------------------------------------------
# execution providers
# ----------------------------------------------------------------------------------------
def test_a_provider_not_installed_falls_back_and_warns_once(exported):
    asked = ("MIGraphXExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = load_runtime(str(exported), backend="onnx", providers=asked)
        b = load_runtime(str(exported), backend="onnx", providers=asked)
    fallbacks = [w for w in caught if issubclass(w.category, ProviderFallbackWarning)]
    assert len(fallbacks) == 1
    assert "MIGraphXExecutionProvider, CUDAExecutionProvider not offered" in str(fallbacks[0].message)
    assert "running on CPUExecutionProvider" in str(fallbacks[0].message)
    assert a.model_info().device == b.model_info().provider == "CPUExecutionProvider"


def test_default_providers_fall_back_quietly(exported):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rt = get_runtime(Settings(checkpoint=str(exported), backend="onnx"))
    assert not [w for w in caught if issubclass(w.category, ProviderFallbackWarning)]
    assert rt.model_info().device == "CPUExecutionProvider"


def test_only_missing_providers_is_an_error_naming_the_extra(exported):
    with pytest.raises(BackendError, match=r"CUDAExecutionProvider.*\[gpu\] extra"):
        load_runtime(str(exported), backend="onnx", providers=("CUDAExecutionProvider",))
    with pytest.raises(BackendError, match=r"ROCMExecutionProvider.*\[rocm\]"):
        load_runtime(str(exported), backend="onnx", device="cuda")  # GPU providers only


def test_device_cpu_uses_the_cpu_provider_only(exported):
    rt = load_runtime(str(exported), backend="onnx", device="cpu", providers=("CUDAExecutionProvider",))
    assert rt.model_info().providers == ("CPUExecutionProvider",)


# ----------------------------------------------------------------------------------------
# damaged exports
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [ONNX_FILE, "model.S2L2A.onnx", ONNX_DATA_FILE])
def test_truncated_files_are_refused(exported, tmp_path, name):
    bad = _damaged(exported, tmp_path)
    data = (bad / name).read_bytes()
    (bad / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{name} is corrupt or truncated.*export-onnx"):
        load_runtime(str(bad), backend="onnx")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):  # auto does not hide it
        load_runtime(str(bad))


def test_corrupt_graph_that_matches_its_record_is_a_checkpoint_error(exported, tmp_path):
    bad = _damaged(exported, tmp_path)
    (bad / ONNX_FILE).write_bytes(b"\x08\x07garbage" * 100)
    graphs = json.loads((bad / CONFIG_FILE).read_text())["onnx"]["graphs"]
    graphs[0]["sha256"] = weights_sha256(bad / ONNX_FILE)
    _set_record(bad, graphs=graphs)
    with pytest.raises(CheckpointError, match="ONNX Runtime cannot load model.onnx.*export-onnx"):
        load_runtime(str(bad), backend="onnx")


def test_missing_recorded_file(exported, tmp_path):
    bad = _damaged(exported, tmp_path)
    (bad / ONNX_DATA_FILE).unlink()
    with pytest.raises(CheckpointNotFoundError, match="model.onnx.data is missing although config.json records it"):
        load_runtime(str(bad), backend="onnx")
    with pytest.raises(CheckpointNotFoundError, match="no such directory"):
        has_onnx_export(tmp_path / "nowhere")  # no artifact at all: said once, not asked again by torch


def test_graph_inputs_that_disagree_with_the_config(exported, tmp_path):
    bad = _damaged(exported, tmp_path)
    # the file recorded for every modality is in fact the S2-only graph
    (bad / ONNX_FILE).write_bytes((bad / "model.S2L2A.onnx").read_bytes())
    graphs = json.loads((bad / CONFIG_FILE).read_text())["onnx"]["graphs"]
    graphs[0]["sha256"] = weights_sha256(bad / ONNX_FILE)
    _set_record(bad, graphs=graphs)
    with pytest.raises(CheckpointError, match=r"model.onnx takes inputs \['S2L2A'\].*\['S2L2A', 'S1RTC', 'DEM'\]"):
        load_runtime(str(bad), backend="onnx")


def test_config_bands_that_disagree_with_the_graphs(exported, tmp_path):
    bad = _damaged(exported, tmp_path)
    d = json.loads((bad / CONFIG_FILE).read_text())
    s1 = next(m for m in d["modalities"] if m["name"] == "S1RTC")
    s1.update(bands=["vv", "vh", "ratio"], mean=s1["mean"] + [0.0], std=s1["std"] + [1.0])
    (bad / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match=r"input S1RTC is tensor\(float\) \['batch', 2, 224, 224\].*3 bands"):
        load_runtime(str(bad), backend="onnx")


def test_config_classes_that_disagree_with_the_graphs(exported, tmp_path):
    bad = _damaged(exported, tmp_path)
    d = json.loads((bad / CONFIG_FILE).read_text())
    d["heads"][0]["classes"] = d["heads"][0]["classes"][:4]
    d["heads"][0]["colors"] = d["heads"][0]["colors"][:4]
    d["heads"][0]["labels"] = d["heads"][0]["labels"][:4]
    (bad / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match=r"output lulc is \['batch', 5, 224, 224\].*4 classes"):
        load_runtime(str(bad), backend="onnx")


# ----------------------------------------------------------------------------------------
# torch-free serving
# ----------------------------------------------------------------------------------------
def test_onnx_serving_never_imports_torch(exported):
    code = (
        "import sys, numpy as np\n"
        "from terramind_nyc.model.backends import get_runtime\n"
        "from terramind_nyc.settings import Settings\n"
        f"rt = get_runtime(Settings(checkpoint={str(exported)!r}, precision='fp32'))\n"
        "p = rt.predict({'S2L2A': np.full((12, 230, 230), 1500, np.uint16)})\n"
        "assert p.probabilities['lulc'].shape == (5, 230, 230)\n"
        "print(rt.model_info().backend, [m for m in ('torch', 'torchvision', 'terratorch') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["onnx", "[]"]


def test_the_torch_free_suite_passes_here(exported):
    """tests/onnx_only (what .ci/run runs in an environment without torch) in a fresh process."""
    env = dict(os.environ, TERRAMIND_NYC_ONNX_ARTIFACT=str(exported))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/onnx_only"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout


def test_describe_of_the_export_record(exported):
    files = locate_onnx(exported, verify=False)
    assert files.export == dataclasses.replace(files.config.onnx)
    assert files.describe()["onnx"]["data_sha256"] == files.export.data_sha256
