"""The publication checks of a checkpoint artifact (training/checks.py): finite weights, the
bit-exact round trip, and torch / ONNX Runtime / OpenVINO agreement on a tiny random artifact."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from terramind_nyc.errors import InvalidInputError
from terramind_nyc.model import backends as backends_mod
from training import checks
from training.checks import backend_agreement, check_finite, check_round_trip, passes

TILE = 64  # the tiny artifact's tile (the default, 224, makes the export and every pass slower)
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from terramind_nyc.testing.model import make_tiny_artifact, tiny_config

    cfg = tiny_config(tile_size=TILE, decoder_channels=(32, 16, 16, 8))
    return make_tiny_artifact(tmp_path_factory.mktemp("checks") / "tiny", config=cfg, seed=5)


def _raw(h: int, w: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"S2L2A": rng.integers(0, 6000, (12, h, w)).astype(np.uint16),
            "S1RTC": rng.normal(-14, 4, (2, h, w)).astype(np.float32),
            "DEM": rng.normal(30, 20, (1, h, w)).astype(np.float32)}


def _samples() -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]]:
    holes = np.ones((TILE, TILE), bool)
    holes[:10] = False  # S1 missing on the top rows: S2 still covers them
    return [(_raw(TILE, TILE, 1), None), (_raw(TILE, TILE, 2), {"S1RTC": holes}), (_raw(40, 56, 3), None)]


def _corrupt(src: Path, dest: Path) -> str:
    """A copy of ``src`` with one NaN and two infs in one tensor; returns that tensor's name."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(src, dest)
    with safe_open(str(src / "model.safetensors"), framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118 - not a dict
    name = next(k for k, t in sorted(tensors.items()) if t.is_floating_point() and t.numel() >= 3)
    flat = tensors[name].reshape(-1)
    flat[0], flat[1], flat[2] = math.nan, math.inf, -math.inf
    save_file(tensors, str(dest / "model.safetensors"), metadata=meta)
    return name


def test_finite_weights_pass(artifact: Path) -> None:
    got = check_finite(artifact)
    assert got.ok and got.bad == ()
    assert got.tensors > 10 and got.parameters > got.tensors
    assert json.loads(json.dumps(got.to_dict()))["ok"] is True


def test_a_nan_and_infs_are_reported_with_the_tensor_name(artifact: Path, tmp_path: Path) -> None:
    name = _corrupt(artifact, tmp_path / "bad")
    got = check_finite(tmp_path / "bad")
    assert not got.ok and got.bad == ((name, 1, 2),)
    assert got.to_dict()["bad"] == [[name, 1, 2]]


def test_round_trip_is_bit_exact(artifact: Path, tmp_path: Path) -> None:
    got = check_round_trip(artifact, tmp_path / "rt")
    assert got.identical, got
    assert got.tensors == check_finite(artifact).tensors
    assert (got.mismatched, got.network_mismatched, got.missing, got.unexpected) == ((), (), (), ())
    assert got.metadata_equal and isinstance(got.file_sha256_equal, bool)
    assert (tmp_path / "rt" / "model.safetensors").is_file()
    assert got.to_dict()["identical"] is True


def test_same_compares_bits_dtype_and_shape() -> None:
    import torch

    a = torch.tensor([1.0, math.nan, 0.0])
    assert checks._same(a, a.clone())  # the same NaN bits are equal
    assert not checks._same(a, torch.tensor([1.0, math.nan, -0.0]))  # -0.0 has other bits
    assert not checks._same(a, a.double()) and not checks._same(a, a.reshape(1, 3))


@pytest.fixture(scope="module")
def report(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[checks.BackendReport, Path]:
    work = tmp_path_factory.mktemp("agreement")
    got = backend_agreement(artifact, _samples(), workdir=work, backends=("torch", "onnx", "openvino", "bogus"),
                            threads=2)
    return got, work


@pytest.mark.slow
def test_onnx_and_openvino_agree_with_torch(report: tuple[checks.BackendReport, Path], artifact: Path) -> None:
    got, work = report
    assert list(got.backends) == ["torch", "onnx", "openvino", "bogus"] and got.samples == 3
    ran = ["torch", "onnx"] + (["openvino"] if HAS_OPENVINO else [])
    for name in ran:
        row = got.backends[name]
        assert row.skipped is None and row.precision == "fp32"
        assert set(row.agreement) == set(row.max_abs_diff) == {"lulc", "buildings"}
        assert min(row.agreement.values()) >= 0.999 and max(row.max_abs_diff.values()) < 1e-3
        assert row.seconds_per_chip > 0 and row.megapixels_per_s > 0
    assert got.backends["torch"].agreement == {"lulc": 1.0, "buildings": 1.0}
    assert got.min_agreement >= 0.999 and passes(got) and not passes(got, target=1.01)
    assert (work / "onnx" / "model.onnx").is_file() and not (artifact / "model.onnx").exists()
    assert isinstance(got.cpu, str) and isinstance(got.cpu_flags, tuple)
    out = json.loads(json.dumps(got.to_dict()))
    assert out["backends"]["bogus"]["seconds_per_chip"] is None and out["min_agreement"] >= 0.999


@pytest.mark.slow
def test_an_unknown_backend_is_skipped(report: tuple[checks.BackendReport, Path]) -> None:
    row = report[0].backends["bogus"]
    assert row.skipped is not None and "unknown backend 'bogus'" in row.skipped
    assert row.precision is None and row.agreement == {} and math.isnan(row.seconds_per_chip)


@pytest.mark.slow
def test_a_backend_that_fails_to_load_is_skipped(report: tuple[checks.BackendReport, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real = backends_mod.load_runtime

    def load(checkpoint: str, **kwargs: Any) -> Any:
        if kwargs.get("backend") == "onnx":
            raise ImportError("No module named 'onnxruntime'")
        return real(checkpoint, **kwargs)

    monkeypatch.setattr(backends_mod, "load_runtime", load)
    exported = report[1] / "onnx"  # has its graphs already: nothing is exported again
    got = backend_agreement(exported, _samples()[:1], workdir=tmp_path, backends=("torch", "onnx", "openvino"))
    assert got.backends["onnx"].skipped == "ImportError: No module named 'onnxruntime'"
    assert not (tmp_path / "onnx").exists()
    if HAS_OPENVINO:
        assert got.backends["openvino"].skipped is None and passes(got)


def test_a_missing_package_is_skipped_and_nothing_passes(artifact: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    got = backend_agreement(artifact, _samples()[2:], workdir=tmp_path, backends=("onnx",))
    assert list(got.backends) == ["torch", "onnx"]  # torch runs anyway: it is the reference
    assert got.backends["onnx"].skipped is not None and "onnxruntime is not installed" in got.backends["onnx"].skipped
    assert math.isnan(got.min_agreement) and not passes(got)
    assert got.to_dict()["min_agreement"] is None and not (tmp_path / "onnx").exists()


def test_bad_samples_raise(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="at least one"):
        backend_agreement(artifact, [], workdir=tmp_path)
    with pytest.raises(InvalidInputError, match="repeats"):
        backend_agreement(artifact, _samples(), workdir=tmp_path, repeats=0)
    with pytest.raises(InvalidInputError, match="unknown modality"):  # the torch reference refuses them
        backend_agreement(artifact, [({"S3": np.zeros((1, 8, 8), np.float32)}, None)], workdir=tmp_path)
