"""Torch-free serving: fetch and selfcheck through ONNX Runtime with neither torch, torchvision
nor terratorch imported (and, in .ci/run's second environment, not even installed).

.ci/run builds a tiny artifact and exports it to ONNX in the full environment, then runs this
file in ``.venv-onnx`` (only ``pip install '.[onnx]'`` plus the test tools) with
``TERRAMIND_NYC_ONNX_ARTIFACT`` pointing at it. Without that variable the tests skip; the main
suite runs them in a fresh process with an artifact it exported
(tests/test_onnx_runtime.py::test_the_torch_free_suite_passes_here).
"""

from __future__ import annotations

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


def _heavy() -> list[str]:
    return [m for m in HEAVY if m in sys.modules]


def test_fetch_through_onnx_runtime_without_torch(tmp_path: Path):
    assert not _heavy(), "imported before the test started"
    import terramind_nyc
    from terramind_nyc.errors import MissingModalityWarning
    from terramind_nyc.testing import CogServer, build_fixture_catalog

    assert ARTIFACT is not None
    with CogServer(tmp_path) as cogs:
        cat = build_fixture_catalog(tmp_path / "fixture", f"{cogs.url}/fixture", scenarios=("clear", "no_s1"))
        settings = cat.settings(checkpoint=ARTIFACT, backend="onnx", cache_enabled=False, threads=2)
        lat, lon = cat.points["clear"]
        r = terramind_nyc.fetch(lat, lon, when=cat.when("clear"), settings=settings)
        lat, lon = cat.points["no_s1"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r2 = terramind_nyc.fetch(lat, lon, when=cat.when("no_s1"), settings=settings)
    assert r.provenance.backend == "onnx" and r.provenance.device == "CPUExecutionProvider"
    assert r.provenance.modalities_used == ("S2L2A", "S1RTC", "DEM")
    assert math.isclose(sum(r.lulc_fractions.values()), 1.0, abs_tol=1e-6) and 0 <= r.building_density <= 1
    assert len(r.provenance.checkpoint["sha256"]) == 64
    # a chip without S1 runs on the S2L2A+DEM graph
    assert r2.provenance.modalities_missing == ("S1RTC",) and r2.provenance.modalities_used == ("S2L2A", "DEM")
    assert any(issubclass(w.category, MissingModalityWarning) for w in caught)
    assert r.to_riprap()["ok"] is True
    assert not _heavy(), f"the ONNX path imported {_heavy()}"


def test_selfcheck_through_onnx_runtime_without_torch(tmp_path: Path):
    from terramind_nyc.selfcheck import run_selfcheck

    rep = run_selfcheck(checkpoint=ARTIFACT, backend="onnx", workdir=tmp_path)
    assert rep.ok, [f"{c.name}: {c.detail}" for c in rep.failed]
    assert rep.result is not None and rep.result.provenance.backend == "onnx"
    assert not _heavy(), f"the ONNX path imported {_heavy()}"
