"""``python -m training distill`` and ``gate --student``: one two-head student from the teachers, judged against them.

Distillation::

    python -m training distill --teachers artifacts/nyc-adapters \\
        --config training/configs/distill_base.yaml [--labels] [--out artifacts/student] [--data.root=...]

1. the teachers (:mod:`training.teachers`) run once over every chip of the dataset (train, val and
   test), each with its own preprocessing, and their probabilities are cached as safetensors;
2. the student (the config's ``model``: TerraMind encoder from TerraMind-1.0-base, frozen or trained,
   one shared encoder and both heads) is fitted through LightningCLI on the cached probabilities
   (``model.distill``: temperature, weight), mixed with the labels when ``--labels`` is given;
3. the best checkpoint (lowest ``val/loss``) is exported as a ``terramind_nyc`` artifact carrying the
   buildings threshold (chosen on the validation labels when the dataset has them, as ``export`` does,
   else the buildings teacher's), the teachers' identities, the distillation options and the energy
   estimate of the fit.

The gate (:func:`gate_against_teachers`) scores the student artifact and every teacher on the
held-out test split with :func:`training.scoring.evaluate_artifact` and applies the seed's rules
(:mod:`training.gate`), the student in the role of the two-head model and each teacher as the
single-task baseline of its head; the report adds the student's agreement with each teacher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TrainingConfigError
from .gate import GateResult, compare, write_report

__all__ = ["DistillSummary", "gate_against_teachers", "run_distill"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillSummary:
    """What one distillation produced."""

    run: str
    """The run directory (``config.yaml``, ``metrics.csv``, ``checkpoints/best.ckpt``, ``energy.json``)."""
    cache: str
    """The teacher cache folder."""
    artifact: str
    """The exported student artifact."""
    teachers: dict[str, dict[str, Any]]
    """Head -> the teacher's identity (source, name, version, sha256, classes, threshold)."""
    threshold: float | None
    """Buildings threshold the student decides at (chosen on the validation labels, else its teacher's)."""
    labels: bool
    """Whether the labels were mixed in."""
    test: dict[str, float | None] = field(default_factory=dict)
    """The student's test metrics (labels), as recorded in the artifact."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage (teachers, fit, export)."""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def run_distill(teachers: Sequence[str], lightning_args: Sequence[str], *, labels: bool = False,
                out: str | Path | None = None, device: str = "cpu", progress: bool | None = None) -> DistillSummary:
    """Distill (module docstring). ``lightning_args``: LightningCLI options (``--config X``, ``--key=value``)."""
    from .export import export_run
    from .lightning_cli import run_lightning_cli
    from .task import FP16_PRECISIONS
    from .teachers import cache_teacher_outputs, load_teachers

    seconds: dict[str, float] = {}
    cli = run_lightning_cli(list(lightning_args), run=False)
    task, dm, trainer = cli.model, cli.datamodule, cli.trainer
    if str(trainer.precision) in FP16_PRECISIONS:
        raise TrainingConfigError(f"trainer.precision {trainer.precision!r}: fp16 diverged in an earlier run; "
                                  "use bf16-mixed or 32-true")
    t = time.perf_counter()
    teach = load_teachers(teachers, task.head_names, device=device)
    cache = cache_teacher_outputs(teach, dm.root, progress=progress)
    seconds["teachers"] = time.perf_counter() - t
    dm.soft_targets, dm.labels = str(cache), bool(labels)
    t = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    seconds["fit"] = time.perf_counter() - t
    run_dir = Path(trainer.log_dir or trainer.default_root_dir)
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
    if not best:
        raise TrainingConfigError(f"the distillation in {run_dir} wrote no checkpoint (is validation disabled?)")
    # the buildings threshold: chosen on the validation labels where there are some (as export does), else
    # the teacher's (a softer student may want another one: the gate then shows it)
    threshold = None if _labelled(dm.root, "val") else (
        teach.threshold("buildings") if "buildings" in teach.sources else None)
    info = {h: teach.info(h) for h in teach.sources}
    extra = {"distillation": {"teachers": info, "cache": str(cache), "labels": bool(labels),
                              "options": dict(task.distill)}}
    t = time.perf_counter()
    summary = export_run(best, Path(out) if out else run_dir / "artifact", data=dm.root, device=device,
                         threshold=threshold, extra_provenance=extra)
    seconds["export"] = time.perf_counter() - t
    return DistillSummary(run=str(run_dir), cache=str(cache), artifact=str(summary["artifact"]), teachers=info,
                          threshold=threshold, labels=bool(labels), test=dict(summary["test"]),
                          seconds={k: round(v, 2) for k, v in seconds.items()})


def _labelled(root: str | Path, split: str) -> bool:
    from .layout import DatasetIndex

    chips = DatasetIndex.load(root).ok(split)
    return bool(chips) and all("buildings" in c.files for c in chips)


def gate_against_teachers(student: str | Path, teachers: Sequence[str] | Any, *, data: str | Path,
                          out: str | Path | None = None, device: str = "cpu", progress: bool | None = None,
                          student_eval: Any = None) -> tuple[GateResult, tuple[Path, Path]]:
    """Score the student artifact and its teachers on the test split; the seed's verdict (module docstring).

    ``teachers``: artifact specs (``PATH`` or ``HEAD=PATH``) or loaded :class:`training.teachers.Teachers`.
    ``student_eval``: the student's :class:`training.scoring.ArtifactEvaluation` on the test split with
    these teachers' cache, when the caller has it already (``verify``), so it is not scored twice.
    """
    from terramind_nyc.model.backends import load_runtime

    from .scoring import evaluate_artifact
    from .teachers import Teachers, cache_teacher_outputs, load_teachers

    teach = teachers if isinstance(teachers, Teachers) else load_teachers(teachers, device=device)
    cache = cache_teacher_outputs(teach, data, splits=("test",), progress=progress)
    rt = load_runtime(str(student), backend="torch", device=device, precision="fp32")
    missing = [h for h in teach.sources if h not in rt.model_info().heads]
    if missing:
        raise TrainingConfigError(f"the student {student} lacks head(s) {missing} that the teachers have")
    ev = student_eval if student_eval is not None else evaluate_artifact(
        rt, data, "test", heads=list(teach.sources), cache=cache, progress=progress)
    singles: dict[str, dict[str, float]] = {}
    scored: dict[int, Any] = {}
    for h, trt in teach.runtimes.items():
        if id(trt) not in scored:  # one artifact teaching both heads is scored once
            scored[id(trt)] = evaluate_artifact(trt, data, "test", heads=[k for k, v in teach.runtimes.items()
                                                                         if v is trt], progress=progress)
        singles[h] = scored[id(trt)].metrics
    classes = {h: teach.classes(h) for h in teach.sources}
    runs = {"student": {"artifact": str(student), "sha256": rt.model_info().checkpoint.get("sha256"),
                        "thresholds": ev.thresholds},
            "teachers": {h: teach.info(h) for h in teach.sources},
            "agreement_with_teacher": ev.agreement,
            "data": {"root": str(data), "split": "test", "chips": ev.chips}}
    result = compare(ev.metrics, singles, classes, runs)
    paths = write_report(result, Path(out) if out else Path(student) / "gate")
    return result, paths
