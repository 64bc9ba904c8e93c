"""``python -m training selfcheck``: the whole training path on a synthetic task, on this machine.

1. A synthetic dataset in the real layout (:mod:`training.synthetic`: land cover readable from
   S2 band ratios, buildings from S1 backscatter), split spatially like a real build.
2. ``fit`` through the real LightningCLI entry point (``python -m training fit --config ...``):
   the tiny two-head model, then the two single-task baselines (same code, ``heads: [lulc]`` /
   ``heads: [buildings]``, same budget), bounded steps, 32-bit on CPU. The three fits run as
   separate processes side by side, each with ``max(1, cores // 3)`` intra-op threads: on a
   2-core machine that is 1 thread each, which is both faster than one 2-thread fit after the
   other and immune to the slow-down OpenMP's spinning threads suffer when another process holds
   a core (measured here: a 2-thread step went from 0.3 s to 5 s under load, a 1-thread step
   stayed at 0.4 s). ``jobs=1`` runs them one after the other in this process instead.
3. ``gate`` on the held-out test split (report in markdown + JSON).
4. ``export`` of the two-head run to a terramind_nyc artifact; the artifact is loaded by
   ``terramind_nyc``'s runtime and its per-pixel decisions are compared with the Lightning
   module's on every test chip.
5. Distillation (``python -m training distill``'s code): the two single-task runs are exported as
   the *teacher* artifacts, a fresh tiny two-head student learns from their cached probabilities
   alone (no labels), is exported, and is judged against them (``gate --student``): argmax
   agreement with each teacher on the test split, and the seed's verdict.

``--json`` prints one object on one line with ``lulc_iou``, ``buildings_iou`` (two-head model,
test split: land-cover mIoU, building-class IoU), ``single_lulc_iou``, ``single_buildings_iou``,
``gate`` (the two-head run against the baselines: Strong / Acceptable / Negative, or the rule
that failed), ``runtime_agreement`` (share of test pixels where runtime and module agree on both
heads), ``distill_lulc_agreement`` and ``distill_buildings_agreement`` (student vs teacher, test
split, target >= 0.95 each) and ``distill_gate`` (the student against its teachers).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_STEPS", "SelfcheckResult", "run_selfcheck", "selfcheck_config"]

log = logging.getLogger(__name__)

DEFAULT_STEPS = 100
RUNS: tuple[tuple[str, tuple[str, ...]], ...] = (("multi", ("lulc", "buildings")), ("lulc", ("lulc",)),
                                                 ("buildings", ("buildings",)))
TARGET_IOU = 0.9
TARGET_AGREEMENT = 0.999
TARGET_DISTILL = 0.95
CHIP = 64


@dataclass(frozen=True)
class SelfcheckResult:
    """Figures of one self-check."""

    lulc_iou: float
    """Two-head model, test split: land-cover mIoU (0..1)."""
    buildings_iou: float
    """Two-head model, test split: IoU of the building class (0..1)."""
    single_lulc_iou: float
    """Land-cover-only baseline, test split: mIoU (0..1)."""
    single_buildings_iou: float
    """Buildings-only baseline, test split: building IoU (0..1)."""
    gate: str
    """Gate outcome of the two-head run against the baselines: Strong / Acceptable / Negative, or the rule that failed."""
    runtime_agreement: float
    """Share of test pixels where the exported artifact run by terramind_nyc's runtime agrees with the
    Lightning module on both heads (land-cover argmax and building decision), 0..1."""
    threshold: float
    """Buildings threshold chosen on the validation split at export."""
    distill_lulc_agreement: float = float("nan")
    """Distilled student vs its land-cover teacher: share of valid test pixels with the same argmax, 0..1."""
    distill_buildings_agreement: float = float("nan")
    """Distilled student vs its buildings teacher: share of valid test pixels with the same argmax, 0..1."""
    distill_gate: str = ""
    """The student against its teachers: Strong / Acceptable / Negative, or the rule that failed."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage."""
    workdir: str | None = None
    """Where the dataset, runs, report and artifact were written (None: removed)."""
    jobs: int = 1
    """Fits run side by side (processes)."""
    threads: int = 1
    """Intra-op threads per fit."""
    steps: int = DEFAULT_STEPS
    """Training steps per fit."""

    @property
    def ok(self) -> bool:
        return (self.lulc_iou >= TARGET_IOU and self.buildings_iou >= TARGET_IOU
                and self.runtime_agreement >= TARGET_AGREEMENT and self.distill_lulc_agreement >= TARGET_DISTILL
                and self.distill_buildings_agreement >= TARGET_DISTILL)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def lines(self) -> list[str]:
        return [
            f"two-head   lulc mIoU {self.lulc_iou:.4f}   buildings IoU {self.buildings_iou:.4f}",
            f"single     lulc mIoU {self.single_lulc_iou:.4f}   buildings IoU {self.single_buildings_iou:.4f}",
            f"gate       {self.gate}",
            f"export     buildings threshold {self.threshold:.2f}; runtime agreement {100 * self.runtime_agreement:.3f} %",
            (f"distill    student vs teachers: lulc {100 * self.distill_lulc_agreement:.2f} %, buildings "
             f"{100 * self.distill_buildings_agreement:.2f} % argmax agreement; gate {self.distill_gate}"),
            (f"fits       {self.steps} steps each, {self.jobs} side by side, {self.threads} thread(s) each, "
             "CPU precision 32-true (IEEE fp32 matmuls)"),
            "seconds    " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()),
            (f"result     {'PASS' if self.ok else 'FAIL'} (targets: IoU >= {TARGET_IOU}, runtime agreement >= "
             f"{100 * TARGET_AGREEMENT:.1f} %, student agreement >= {100 * TARGET_DISTILL:.0f} %)"),
        ]


def distill_config(data_root: Path, run_dir: Path, steps: int) -> dict[str, Any]:
    """The LightningCLI config of the self-check's student: the two-head tiny config, learning from teachers."""
    cfg = selfcheck_config(data_root, run_dir, ["lulc", "buildings"], steps)
    cfg["model"]["distill"] = {"temperature": 1.0, "weight": 1.0, "label_weight": 0.0}
    return cfg


def selfcheck_config(data_root: Path, run_dir: Path, heads: list[str], steps: int) -> dict[str, Any]:
    """The LightningCLI config of one self-check run (the tiny config, bounded and on CPU)."""
    losses = {"lulc": {"name": "ce"}, "buildings": {"name": "weighted_ce", "weights": "auto"}}
    return {
        "seed_everything": 42,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "precision": "32-true", "max_steps": steps, "max_epochs": -1,
            "check_val_every_n_epoch": 1, "log_every_n_steps": 8, "enable_progress_bar": False,
            "enable_model_summary": False, "num_sanity_val_steps": 0,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(run_dir.parent), "name": run_dir.name, "version": ""}},
        },
        "model": {
            "encoder": "terramind_v1_tiny", "heads": heads, "pretrained": False,
            "losses": {h: losses[h] for h in heads}, "loss_weights": {h: 1.0 for h in heads},
            "lr_encoder": 5e-4, "lr_heads": 2e-3, "weight_decay": 0.01, "early_stopping_patience": None,
            "decoder_channels": [64, 32, 16, 16], "tile_size": CHIP,
        },
        "data": {"root": str(data_root), "batch_size": 8, "num_workers": 0, "augment": True, "cache": True},
    }


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _write_config(config: Mapping[str, Any], path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


def _fit_in_process(configs: Mapping[str, Path], threads: int) -> dict[str, float]:
    """One fit after the other through :func:`run_lightning_cli` in this process."""
    import torch

    from .lightning_cli import run_lightning_cli

    seconds: dict[str, float] = {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, path in configs.items():
            t = time.perf_counter()
            run_lightning_cli(["fit", "--config", str(path)])
            seconds[f"fit_{name}"] = time.perf_counter() - t
    finally:
        torch.set_num_threads(before)
    return seconds


def _fit_processes(configs: Mapping[str, Path], *, jobs: int, threads: int, logs: Path) -> dict[str, float]:
    """``python -m training fit --config X`` for every config, ``jobs`` at a time, ``threads`` each."""
    from .errors import TrainingError

    root = Path(__file__).resolve().parents[1]  # the checkout that holds this ``training`` package
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "PYTHONPATH": os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)})
    pending = list(configs.items())
    running: dict[str, tuple[subprocess.Popen[bytes], float, Path, Any]] = {}
    seconds: dict[str, float] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name, path = pending.pop(0)
                log_path = logs / f"{name}.log"
                fh = log_path.open("wb")
                proc = subprocess.Popen([sys.executable, "-m", "training", "fit", "--config", str(path)],
                                        cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT)
                running[name] = (proc, time.perf_counter(), log_path, fh)
            time.sleep(0.2)
            for name, (proc, t0, log_path, fh) in list(running.items()):
                if proc.poll() is None:
                    continue
                fh.close()
                del running[name]
                seconds[f"fit_{name}"] = time.perf_counter() - t0
                if proc.returncode != 0:
                    tail = log_path.read_text(errors="replace").splitlines()[-25:]
                    raise TrainingError(f"selfcheck fit {name!r} exited with {proc.returncode} (log {log_path}):\n"
                                        + "\n".join(tail))
    finally:
        for proc, _, _, fh in running.values():
            proc.terminate()
            proc.wait()
            fh.close()
    return seconds


def _runtime_agreement(artifact: Path, task: Any, dm: Any, threshold: float) -> float:
    """Share of test pixels where terramind_nyc's runtime and the Lightning module agree on both heads."""
    import torch

    from . import modelconfig

    runtime = modelconfig.load_runtime(artifact)
    ds = dm.dataset("test")
    agree = total = 0
    task.eval()
    for i in range(len(ds)):
        arrays, _ = ds.read(i)
        valid = {m: np.isfinite(a).all(axis=0) for m, a in arrays.items()}
        raw = {m: np.where(np.isfinite(a), a, 0.0).astype(np.float32) for m, a in arrays.items()}
        probs = modelconfig.runtime_probabilities(runtime, raw, valid)
        x = {m: torch.from_numpy(a)[None] for m, a in ds.inputs(arrays).items()}
        with torch.inference_mode():
            ref = {h: v[0].float().softmax(0).numpy() for h, v in task(x).items()}
        same = np.argmax(probs["lulc"], 0) == np.argmax(ref["lulc"], 0)
        same &= (probs["buildings"][1] >= threshold) == (ref["buildings"][1] >= threshold)
        agree += int(same.sum())
        total += same.size
    return agree / total


def _distill(work: Path, data: Path, runs: Path, steps: int, seconds: dict[str, float]) -> Any:
    """Teachers from the single-task runs, the student distilled from them and gated against them."""
    from .distill import gate_against_teachers, run_distill
    from .export import export_run

    t = time.perf_counter()
    teachers = [f"{h}={export_run(runs / h, work / 'teachers' / h, data=data, device='cpu')['artifact']}"
                for h in ("lulc", "buildings")]
    seconds["teachers_export"] = time.perf_counter() - t
    t = time.perf_counter()
    config = _write_config(distill_config(data, runs / "student", steps), work / "student.yaml")
    summary = run_distill(teachers, ["--config", str(config)], labels=False, out=work / "student", progress=False)
    seconds["distill"] = time.perf_counter() - t
    t = time.perf_counter()
    gate, _ = gate_against_teachers(summary.artifact, teachers, data=data, out=work / "student-gate", progress=False)
    seconds["distill_gate"] = time.perf_counter() - t
    return gate


def run_selfcheck(*, workdir: str | Path | None = None, steps: int | None = None, n_chips: int = 96,
                  jobs: int | None = None, threads: int | None = None) -> SelfcheckResult:
    """Run the self-check; figures in the result (it raises only when a stage breaks).

    ``jobs``: fits run side by side as processes (default 3 when the machine has 2 or more
    cores; 1 = one after the other in this process). ``threads``: intra-op threads per fit and
    for the evaluation here (default ``max(1, cores // jobs)``).
    """
    import shutil

    import torch

    from . import modelconfig
    from .errors import TrainingConfigError
    from .evaluate import datamodule_for, load_task, resolve_run, run_gate
    from .export import export_run
    from .synthetic import write_synthetic_dataset

    steps = DEFAULT_STEPS if steps is None else int(steps)
    cores = _cores()
    jobs = (len(RUNS) if cores >= 2 else 1) if jobs is None else int(jobs)
    if jobs < 1 or steps < 1 or (threads is not None and threads < 1):
        raise TrainingConfigError(f"steps, jobs and threads must be >= 1, got {steps}, {jobs}, {threads}")
    threads = max(1, cores // jobs) if threads is None else int(threads)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="terramind-nyc-train-selfcheck-")
        work = Path(tmp.name)
    else:
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    before = torch.get_num_threads()
    try:
        t = time.perf_counter()
        classes, bands = modelconfig.default_classes_and_bands()
        data = write_synthetic_dataset(work / "data", n_chips=n_chips, size=CHIP, class_names=classes, bands=bands)
        seconds["dataset"] = time.perf_counter() - t
        runs = work / "runs"
        for stale in (runs, work / "gate", work / "artifact", work / "teachers", work / "student",
                      work / "student-gate", data / "teachers"):  # a rerun in the same workdir starts afresh
            shutil.rmtree(stale, ignore_errors=True)
        runs.mkdir()
        configs = {name: _write_config(selfcheck_config(data, runs / name, list(heads), steps), work / f"{name}.yaml")
                   for name, heads in RUNS}
        t = time.perf_counter()
        if jobs == 1:
            seconds.update(_fit_in_process(configs, threads))
        else:
            seconds.update(_fit_processes(configs, jobs=jobs, threads=threads, logs=runs))
        seconds["fit"] = time.perf_counter() - t
        torch.set_num_threads(threads)
        t = time.perf_counter()
        gate, _ = run_gate(runs / "multi", runs / "lulc", runs / "buildings", data=data, out=work / "gate",
                           device="cpu")
        seconds["gate"] = time.perf_counter() - t
        t = time.perf_counter()
        summary = export_run(runs / "multi", work / "artifact", data=data, device="cpu")
        seconds["export"] = time.perf_counter() - t
        t = time.perf_counter()
        task = load_task(resolve_run(runs / "multi"), "cpu")
        agreement = _runtime_agreement(Path(summary["artifact"]), task, datamodule_for(data, task),
                                       float(summary["threshold"]))
        seconds["runtime"] = time.perf_counter() - t
        torch.set_num_threads(cores)  # the student fits alone: every core
        student = _distill(work, data, runs, steps, seconds)
        lulc, bld = gate.heads["lulc"], gate.heads["buildings"]
        return SelfcheckResult(
            lulc_iou=lulc.multi, buildings_iou=bld.multi, single_lulc_iou=lulc.single,
            single_buildings_iou=bld.single, gate=gate.outcome, runtime_agreement=agreement,
            threshold=float(summary["threshold"]), seconds={k: round(v, 2) for k, v in seconds.items()},
            distill_lulc_agreement=student.runs["agreement_with_teacher"]["lulc"],
            distill_buildings_agreement=student.runs["agreement_with_teacher"]["buildings"],
            distill_gate=student.outcome,
            workdir=None if tmp is not None else str(work), jobs=jobs, threads=threads, steps=steps,
        )
    finally:
        torch.set_num_threads(before)
        if tmp is not None:
            tmp.cleanup()
