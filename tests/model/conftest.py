"""Fixtures shared by the model tests: a tiny random-weight artifact, a copy of it to damage, a loopback hub."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def loopback_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """huggingface_hub pointed at a HubServer on 127.0.0.1 with an empty cache."""
    from huggingface_hub import constants

    from terramind_nyc.testing import HubServer

    with HubServer() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server
