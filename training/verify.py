"""``python -m training verify ARTIFACT --data DIR``: the battery an artifact passes before publication.

As the reference TerraMind-Flood reproduction did before its upload, in this order:

1. **weights**: no NaN or Inf in any tensor of ``model.safetensors``; a safetensors round trip gives
   the same tensors bit for bit, and ``terramind_nyc`` loads the artifact (:mod:`training.checks`);
2. **backends**: torch, ONNX Runtime and OpenVINO (IEEE fp32) give the same argmax on at least
   99.9 % of the test pixels; their throughput on this machine, with its CPU and bf16 flags;
3. **held-out metrics and calibration**: the test split scored through the runtime
   (:func:`training.scoring.evaluate_artifact`), expected calibration error per head and a reliability
   diagram (``reliability.png``);
4. **the gate** against the teachers, when ``--teachers`` is given (:mod:`training.distill`);
5. **qualitative panels**: the ten sniff areas (:mod:`terramind_nyc.sniff`) fetched with the artifact,
   one PNG each (``sniff/``), online (the configured catalog) or offline (generated imagery);
6. ``report.md`` (every figure) and ``README.md`` (the model card: data, metrics, gate, calibration,
   energy of training and of this verification) written into the artifact, with ``verify.json``.

Exit status 0 when every check holds (finite weights, identical round trip, backend agreement of at
least 99.9 % where a backend ran), 1 otherwise.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terramind_nyc.jsonsafe import json_safe

from .layout import DatasetIndex, write_json_atomic

__all__ = ["AGREEMENT_TARGET", "SAMPLE_CHIPS", "VerifyReport", "verify_artifact"]

log = logging.getLogger(__name__)

#: Share of pixels on which every backend must give torch's argmax.
AGREEMENT_TARGET = 0.999
#: Test chips the backends are compared (and timed) on.
SAMPLE_CHIPS = 8
VERIFY_DIR = "verify"


@dataclass(frozen=True)
class VerifyReport:
    """Everything the battery found; written as ``verify.json``, ``report.md`` and ``README.md``."""

    artifact: str
    """The artifact verified."""
    finite: Any
    """:class:`training.checks.FiniteCheck`."""
    round_trip: Any
    """:class:`training.checks.RoundTrip`."""
    backends: Any
    """:class:`training.checks.BackendReport` (agreement with torch, throughput)."""
    test: Any
    """:class:`training.scoring.ArtifactEvaluation` on the test split (metrics, calibration, agreement)."""
    gate: Any = None
    """:class:`training.gate.GateResult` against the teachers (None without ``--teachers``)."""
    sniff: Any = None
    """:class:`terramind_nyc.sniff.SniffReport` with one panel per area (None when skipped)."""
    energy: dict[str, Any] = field(default_factory=dict)
    """``training`` (the stages recorded at fit / distill) and ``verify`` (this run) estimates."""
    files: dict[str, str] = field(default_factory=dict)
    """Name -> path of what was written (report, model card, diagram, panels folder)."""

    @property
    def backends_ok(self) -> bool:
        m = float(self.backends.min_agreement)
        return math.isnan(m) or m >= AGREEMENT_TARGET

    @property
    def ok(self) -> bool:
        return bool(self.finite.ok and self.round_trip.identical and self.backends_ok)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json_safe({
            "artifact": self.artifact, "ok": self.ok, "finite": self.finite.to_dict(),
            "round_trip": self.round_trip.to_dict(), "backends": self.backends.to_dict(),
            "test": self.test.to_dict(), "gate": None if self.gate is None else self.gate.to_dict(),
            "sniff": None if self.sniff is None else self.sniff.to_dict(), "energy": self.energy, "files": self.files,
        })
        return out

    def lines(self) -> list[str]:
        from .modelcard import summary_lines

        return summary_lines(self)


def _samples(data: Path, modalities: Sequence[str], n: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    import numpy as np

    from .data import ChipDataset

    index = DatasetIndex.load(data)
    bands = {m: len(b) for m, b in dict(index.meta.get("modalities") or {}).items() if m in modalities}
    ds = ChipDataset(data, index.ok("test")[:n], bands=bands, heads=[], standardise=lambda a, v: a)
    out = []
    for i in range(len(ds)):
        arrays, _ = ds.read(i)
        out.append((arrays, {m: np.isfinite(a).all(axis=0) for m, a in arrays.items()}))
    return out


def verify_artifact(artifact: str | os.PathLike[str], *, data: str | os.PathLike[str],
                    teachers: Sequence[str] | None = None, sniff: str = "online",
                    backends: Sequence[str] = ("torch", "onnx", "openvino"), settings: Any = None,
                    progress: bool | None = None) -> VerifyReport:
    """Run the battery (module docstring) on ``artifact``; write its files into the artifact; return the report."""
    from terramind_nyc.model.backends import load_runtime
    from terramind_nyc.settings import Settings

    from .calibration import reliability_diagram
    from .checks import backend_agreement, check_finite, check_round_trip
    from .energy import EnergyMeter
    from .errors import TrainingConfigError
    from .modelcard import write_card
    from .scoring import evaluate_artifact

    if sniff not in ("online", "offline", "skip"):
        raise TrainingConfigError(f"sniff must be online, offline or skip, got {sniff!r}")
    path, root = Path(artifact), Path(data)
    if not (path / "config.json").is_file():
        raise TrainingConfigError(f"{path} is not an artifact directory (no config.json)")
    out = path / VERIFY_DIR
    out.mkdir(parents=True, exist_ok=True)
    s = Settings.resolve(settings)
    with EnergyMeter("verify", device="cpu", settings=s) as meter:
        finite = check_finite(path)
        with tempfile.TemporaryDirectory(prefix="terramind-nyc-verify-") as tmp:
            trip = check_round_trip(path, Path(tmp) / "round-trip")
            rt = load_runtime(str(path), backend="torch", device="cpu", precision="fp32")
            samples = _samples(root, rt.model_info().modalities, SAMPLE_CHIPS)
            bk = backend_agreement(path, samples, workdir=Path(tmp) / "backends", backends=tuple(backends))
        cache = None
        gate = None
        if teachers:
            from .distill import gate_against_teachers
            from .teachers import cache_teacher_outputs, load_teachers

            teach = load_teachers(teachers)
            cache = cache_teacher_outputs(teach, root, splits=("test",), progress=progress)
        test = evaluate_artifact(rt, root, "test", cache=cache, progress=progress)
        if teachers:
            gate, _ = gate_against_teachers(path, teach, data=root, out=out, progress=progress, student_eval=test)
        diagram = reliability_diagram(test.calibration, out / "reliability.png",
                                      title=f"{rt.model_info().checkpoint.get('name')}: test split")
        sn = None
        if sniff != "skip":
            from terramind_nyc.sniff import sniff as run_sniff

            sn = run_sniff(s, checkpoint=path, offline=sniff == "offline", workdir=out / "sniff-harness",
                           panels=out / "sniff", progress=progress)
    energy = {"training": dict((rt.config.training or {}).get("energy") or {}), "verify": {**meter.result.to_dict(), "line": meter.result.line()}}
    files = {"report": str(path / "report.md"), "model_card": str(path / "README.md"), "reliability": str(diagram),
             "json": str(path / "verify.json")}
    if sn is not None:
        files["sniff_panels"] = str(out / "sniff")
    report = VerifyReport(artifact=str(path), finite=finite, round_trip=trip, backends=bk, test=test, gate=gate,
                          sniff=sn, energy=energy, files=files)
    write_json_atomic(path / "verify.json", report.to_dict())
    write_card(report, rt.config, DatasetIndex.load(root))
    return report

