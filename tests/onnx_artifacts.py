"""A tiny random-weight two-head artifact with an ONNX export, built once per test session.

The export (four graphs: every subset that holds S2L2A) is the slow part of the ONNX tests
(about half a minute on two cores), so tests/model/test_export_onnx.py and tests/model/test_runtime_onnx.py
(and the other ONNX tests) share one. Tests that damage an artifact work on a copy (:func:`copy_artifact`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

_built: dict[str, Path] = {}


def exported_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny artifact (seed 7) with its default ONNX export."""
    if "tiny" not in _built:
        from terramind_nyc.model.export_onnx import export_onnx
        from terramind_nyc.testing.model import make_tiny_artifact

        path = make_tiny_artifact(tmp_path_factory.mktemp("onnx") / "tiny", seed=7)
        export_onnx(path)
        _built["tiny"] = path
    return _built["tiny"]


def reference_runtime(path: Path):  # -> TorchRuntime (torch is imported only when called)
    """torch on the CPU in IEEE fp32 over ``path``: the reference of every backend parity test."""
    from terramind_nyc.model.backends import load_runtime
    from terramind_nyc.model.runtime_torch import TorchRuntime

    rt = load_runtime(str(path), backend="torch", device="cpu", precision="fp32")
    assert isinstance(rt, TorchRuntime) and rt.precision.used == "fp32"
    return rt


def copy_artifact(src: Path, dest: Path) -> Path:
    """A copy of an artifact directory (to damage without touching the shared one)."""
    shutil.copytree(src, dest)
    return dest
