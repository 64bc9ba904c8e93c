"""Fixtures shared by the model tests: a tiny random-weight artifact and a copy of it to damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny two-head artifact (config.json + model.safetensors), never modified: damage :func:`copy_dir`."""
    pytest.importorskip("torch")
    from terramind_nyc.testing.model import make_tiny_artifact

    return make_tiny_artifact(tmp_path_factory.mktemp("artifact") / "tiny")


@pytest.fixture
def copy_dir(tiny_dir: Path, tmp_path: Path) -> Path:
    """A fresh copy of :func:`tiny_dir` for one test."""
    out = tmp_path / "copy"
    shutil.copytree(tiny_dir, out)
    return out


#: A made-up sha256 for records whose files are not checked.
SHA = "ab" * 32


@pytest.fixture
def onnx_record() -> dict:
    """A valid ``onnx`` record for the tiny config: the full graph and the S2L2A graph (hashes made up)."""
    return {
        "graphs": [{"modalities": ["S2L2A", "S1RTC", "DEM"], "file": "model.onnx", "sha256": SHA},
                   {"modalities": ["S2L2A"], "file": "model.S2L2A.onnx", "sha256": SHA}],
        "data_sha256": SHA, "source_sha256": SHA, "opset": 20, "exporter": "torch.onnx torchscript",
        "max_abs_diff": 1e-5,
    }
