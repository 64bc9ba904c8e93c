"""Torch-free serving: fetch and selfcheck through ONNX Runtime and through OpenVINO with neither
torch, torchvision nor terratorch imported (and, in .ci/run's second environment, not even installed).

.ci/run builds a tiny artifact and exports it to ONNX in the full environment, then runs this
file in ``.venv-onnx`` (only ``pip install '.[onnx,openvino]'`` plus the test tools) with
``TERRAMIND_NYC_ONNX_ARTIFACT`` pointing at it. Without that variable the tests skip; the main
suite runs them in a fresh process with an artifact it exported
(tests/model/test_runtime_onnx.py::test_the_torch_free_suite_passes_here).
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import warnings
from pathlib import Path

import pytest

ARTIFACT = os.environ.get("TERRAMIND_NYC_ONNX_ARTIFACT")
HEAVY = ("torch", "torchvision", "terratorch")

pytestmark = pytest.mark.skipif(
    not ARTIFACT, reason="set TERRAMIND_NYC_ONNX_ARTIFACT to an artifact with an ONNX export (see .ci/run)"
)


#: The torch-free backends and the device each reports in provenance.
BACKENDS = {"onnx": "CPUExecutionProvider", "openvino": "CPU"}


def _heavy() -> list[str]:
    return [m for m in HEAVY if m in sys.modules]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    module = {"onnx": "onnxruntime", "openvino": "openvino"}[request.param]
    if importlib.util.find_spec(module) is None:  # .ci/run installs both; a partial env says which is missing
        pytest.fail(f"{module} is not installed in this torch-free environment: pip install '.[onnx,openvino]'")
    return str(request.param)


def test_fetch_without_torch(tmp_path: Path, backend: str):
    assert not _heavy(), "imported before the test started"
    import terramind_nyc
    from terramind_nyc.errors import MissingModalityWarning
    from terramind_nyc.testing import CogServer, build_fixture_catalog

    assert ARTIFACT is not None
    with CogServer(tmp_path) as cogs:
        cat = build_fixture_catalog(tmp_path / "fixture", f"{cogs.url}/fixture", scenarios=("clear", "no_s1"))
        settings = cat.settings(checkpoint=ARTIFACT, backend=backend, cache_enabled=False, threads=2, precision="fp32")
        lat, lon = cat.points["clear"]
        r = terramind_nyc.fetch(lat, lon, when=cat.when("clear"), settings=settings)
        lat, lon = cat.points["no_s1"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r2 = terramind_nyc.fetch(lat, lon, when=cat.when("no_s1"), settings=settings)
    assert r.provenance.backend == backend and r.provenance.device == BACKENDS[backend]
    assert r.provenance.precision == "fp32"
    assert r.provenance.modalities_used == ("S2L2A", "S1RTC", "DEM")
    assert math.isclose(sum(r.lulc_fractions.values()), 1.0, abs_tol=1e-6) and 0 <= r.building_density <= 1
    assert len(r.provenance.checkpoint["sha256"]) == 64
    # a chip without S1 runs on the S2L2A+DEM graph
    assert r2.provenance.modalities_missing == ("S1RTC",) and r2.provenance.modalities_used == ("S2L2A", "DEM")
    assert any(issubclass(w.category, MissingModalityWarning) for w in caught)
    assert r.to_riprap()["ok"] is True
    assert not _heavy(), f"the {backend} path imported {_heavy()}"


def test_selfcheck_without_torch(tmp_path: Path, backend: str):
    from terramind_nyc.selfcheck import run_selfcheck

    rep = run_selfcheck(checkpoint=ARTIFACT, backend=backend, workdir=tmp_path)
    assert rep.ok, [f"{c.name}: {c.detail}" for c in rep.failed]
    assert rep.result is not None and rep.result.provenance.backend == backend
    assert not _heavy(), f"the {backend} path imported {_heavy()}"


def test_auto_backend_follows_the_cpu_without_torch():
    """auto: OpenVINO in bf16 where it sees bf16 units on this CPU, else ONNX Runtime in fp32."""
    from terramind_nyc.model.backends import get_runtime
    from terramind_nyc.model.runtime_openvino import openvino_cpu_has_bf16
    from terramind_nyc.settings import Settings

    assert ARTIFACT is not None
    info = get_runtime(Settings(checkpoint=ARTIFACT, backend="auto", threads=2)).model_info()
    if openvino_cpu_has_bf16():
        assert (info.backend, info.precision) == ("openvino", "bf16"), info
    else:
        assert (info.backend, info.precision) == ("onnx", "fp32"), info
    fp32 = get_runtime(Settings(checkpoint=ARTIFACT, backend="auto", precision="fp32", threads=2)).model_info()
    assert (fp32.backend, fp32.precision) == ("onnx", "fp32")
    assert not _heavy(), f"the auto path imported {_heavy()}"
