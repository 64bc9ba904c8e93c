"""ONNX export: the files and the record it writes, shared weights, the CLI, failed verification."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner
from onnx_artifacts import copy_artifact, exported_tiny

from terramind_nyc.cli import cli
from terramind_nyc.errors import InvalidInputError
from terramind_nyc.model.artifact import load_artifact, save_artifact
from terramind_nyc.model.export_onnx import export_onnx, resolve_subsets
from terramind_nyc.model.files import CONFIG_FILE, ONNX_DATA_FILE, ONNX_FILE, WEIGHTS_FILE
from terramind_nyc.model.locate import read_config
from terramind_nyc.model.safetensors_io import weights_sha256
from terramind_nyc.testing.model import make_tiny_artifact, tiny_config

SUBSET_FILES = {
    ("S2L2A", "S1RTC", "DEM"): ONNX_FILE,
    ("S2L2A",): "model.S2L2A.onnx",
    ("S2L2A", "S1RTC"): "model.S2L2A-S1RTC.onnx",
    ("S2L2A", "DEM"): "model.S2L2A-DEM.onnx",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny artifact without an export."""
    return make_tiny_artifact(tmp_path_factory.mktemp("plain") / "tiny", seed=3)


def _onnx_names(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if ".onnx" in p.name}


# ----------------------------------------------------------------------------------------
def test_export_writes_one_graph_per_subset_and_records_them(exported: Path):
    rec = read_config(exported).onnx
    assert rec is not None
    assert {g.modalities: g.file for g in rec.graphs} == SUBSET_FILES
    assert _onnx_names(exported) == set(SUBSET_FILES.values()) | {ONNX_DATA_FILE}
    for g in rec.graphs:
        assert g.sha256 == weights_sha256(exported / g.file)
    assert rec.data_sha256 == weights_sha256(exported / ONNX_DATA_FILE)
    assert rec.source_sha256 == weights_sha256(exported / WEIGHTS_FILE)
    assert rec.opset == 20 and rec.exporter.startswith("torch.onnx torchscript (torch ")
    assert 0 <= rec.max_abs_diff <= 1e-4 and rec.tolerance == 1e-4
    assert rec.argmax_agreement >= 0.999 and rec.precision == "float32"
    assert rec.created.endswith("Z")
    assert not [p for p in exported.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_weights_are_stored_once(exported: Path):
    data = (exported / ONNX_DATA_FILE).stat().st_size
    weights = (exported / WEIGHTS_FILE).stat().st_size
    assert data < 1.05 * weights  # four graphs, one copy of the weights
    for name in SUBSET_FILES.values():
        assert (exported / name).stat().st_size < 2 << 20
        model = onnx.load(str(exported / name), load_external_data=False)
        locations = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
        assert locations == {ONNX_DATA_FILE}


def test_graph_inputs_and_outputs(exported: Path):
    cfg = read_config(exported)
    for subset, name in SUBSET_FILES.items():
        g = onnx.load(str(exported / name), load_external_data=False).graph

        def dims(v):
            return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

        assert [i.name for i in g.input] == list(subset)
        for i in g.input:
            assert dims(i) == ["batch", len(cfg.modality(i.name).bands), 224, 224]
        assert [o.name for o in g.output] == ["lulc", "buildings"]
        assert [dims(o) for o in g.output] == [["batch", 5, 224, 224], ["batch", 2, 224, 224]]


def test_exported_config_round_trips_and_still_loads_with_torch(exported: Path):
    text = (exported / CONFIG_FILE).read_text()
    cfg = read_config(exported)
    assert json.loads(text)["onnx"] == cfg.onnx.to_dict()
    art = load_artifact(exported)  # the torch path ignores the export
    assert art.config == cfg and art.sha256 == cfg.onnx.source_sha256


def test_save_artifact_drops_a_stale_export(exported: Path, tmp_path: Path):
    copy = copy_artifact(exported, tmp_path / "copy")
    art = load_artifact(copy)
    assert art.network.config.onnx is not None
    save_artifact(art.network, None, copy, overwrite=True)
    assert _onnx_names(copy) == set() and read_config(copy).onnx is None


# ----------------------------------------------------------------------------------------
def test_failed_verification_names_the_figure_and_writes_nothing(plain: Path):
    before = (plain / CONFIG_FILE).read_text()
    res = CliRunner().invoke(cli, ["export-onnx", str(plain), "--subsets", "full", "--tolerance", "0"])
    assert res.exit_code != 0
    assert re.search(r"BackendError: export verification failed: .* differ from torch's \(IEEE float32\) by up to [0-9.e-]+ "
                     r"\(tolerance 0\); nothing was written", res.output), res.output
    assert (plain / CONFIG_FILE).read_text() == before
    assert _onnx_names(plain) == set() and not [p for p in plain.iterdir() if p.name.startswith(".")]


def test_cli_reports_a_failed_export(tmp_path: Path):
    res = CliRunner().invoke(cli, ["export-onnx", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "not a local artifact directory" in res.output


def test_float16_export_into_another_folder_holds_argmax_parity(plain: Path, tmp_path: Path):
    before = (plain / CONFIG_FILE).read_text()
    out = tmp_path / "fp16"
    res = CliRunner().invoke(cli, ["export-onnx", str(plain), "--out", str(out), "--subsets", "full", "--fp16",
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert "verified model.onnx: max abs diff" in res.stderr
    rec = read_config(out).onnx
    assert rec.to_dict() == json.loads(res.stdout)
    assert (plain / CONFIG_FILE).read_text() == before and _onnx_names(plain) == set()
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_FILE, ONNX_FILE, ONNX_DATA_FILE, WEIGHTS_FILE]
    assert [g.file for g in rec.graphs] == [ONNX_FILE]
    assert rec.precision == "float16" and rec.tolerance == 1e-2
    assert rec.argmax_agreement >= 0.99 and rec.max_abs_diff <= 1e-2
    assert (tmp_path / "fp16" / ONNX_DATA_FILE).stat().st_size < 0.6 * (plain / WEIGHTS_FILE).stat().st_size
    from terramind_nyc.model.backends import load_runtime

    rng = np.random.default_rng(0)
    x = {"S2L2A": rng.integers(0, 6000, (12, 224, 224)).astype(np.uint16),
         "S1RTC": rng.normal(-14, 4, (2, 224, 224)).astype(np.float32),
         "DEM": rng.normal(30, 20, (1, 224, 224)).astype(np.float32)}
    a = load_runtime(str(tmp_path / "fp16"), backend="onnx").predict(x).probabilities
    b = load_runtime(str(plain), backend="torch", precision="fp32").predict(x).probabilities
    for h in a:
        assert a[h].dtype == np.float32
        assert (a[h].argmax(0) == b[h].argmax(0)).mean() >= 0.99


# ----------------------------------------------------------------------------------------
def test_resolve_subsets():
    cfg = tiny_config()
    full = ("S2L2A", "S1RTC", "DEM")
    assert resolve_subsets(cfg) == list(SUBSET_FILES)
    assert resolve_subsets(cfg, "full") == [full]
    assert len(resolve_subsets(cfg, "all")) == 7 and resolve_subsets(cfg, "all")[0] == full
    assert resolve_subsets(cfg, "DEM+S2L2A, S1RTC") == [full, ("S2L2A", "DEM"), ("S1RTC",)]
    assert resolve_subsets(cfg, [["DEM"], "S2L2A+S1RTC"]) == [full, ("DEM",), ("S2L2A", "S1RTC")]
    with pytest.raises(InvalidInputError, match="S2L1C"):
        resolve_subsets(cfg, "S2L1C")


def test_bad_arguments_are_refused(plain: Path):
    with pytest.raises(InvalidInputError, match="exporter"):
        export_onnx(plain, exporter="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="tolerance"):
        export_onnx(plain, tolerance=-1)
    with pytest.raises(InvalidInputError, match="not a local artifact directory; pass `out`"):
        export_onnx("someone/model")


def test_out_holding_another_artifact_is_refused(plain: Path, exported: Path, tmp_path: Path):
    other = copy_artifact(exported, tmp_path / "other")
    with pytest.raises(InvalidInputError, match="holds another artifact"):
        export_onnx(plain, other)
    assert read_config(other).onnx is not None


def test_an_adapters_artifact_exports_one_graph_holding_both_encoders(tmp_path: Path):
    """Per-head encoders: one graph runs both variants; the merged LoRA weights are initializers in
    the shared data file (not constants inlined into the graph), and every backend agrees."""
    from terramind_nyc.model.convert_adapters import import_adapters
    from terramind_nyc.model.backends import load_runtime
    from terramind_nyc.testing.adapters import write_synthetic_adapters

    base, adapters = write_synthetic_adapters(tmp_path / "repos", decoder_channels=(32, 16, 8, 4))
    art = import_adapters(tmp_path / "art", adapters=str(adapters), base=str(base))
    record = export_onnx(art, subsets="full")
    assert record.argmax_agreement >= 0.999 and record.max_abs_diff < 1e-4
    assert (art / ONNX_FILE).stat().st_size < 2 << 20  # weights live in model.onnx.data
    g = np.random.default_rng(0)
    raw = {"S2L2A": g.uniform(0, 4000, (12, 80, 90)).astype("f4"), "S1RTC": g.uniform(-25, 0, (2, 80, 90)).astype("f4"),
           "DEM": g.uniform(0, 50, (1, 80, 90)).astype("f4")}
    want = load_runtime(str(art), backend="torch", precision="fp32").predict(raw).probabilities
    rt = load_runtime(str(art), backend="onnx", precision="fp32")
    assert rt.model_info().checkpoint["kind"] == "per-head-encoders"
    for h, p in rt.predict(raw).probabilities.items():
        np.testing.assert_allclose(p, want[h], atol=1e-4)
