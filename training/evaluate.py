"""Evaluate runs on a split; the eval gate over three runs (``python -m training gate``).

A *run* is a trainer log directory (``config.yaml`` + ``checkpoints/best.ckpt``) or a ``.ckpt``
file. Its task is rebuilt from the checkpoint's hyperparameters with ``pretrained=False`` (the
weights come from the checkpoint, the hub is never contacted) and evaluated with the dataset's
standardisation, under ``inference_mode`` and ``eval()``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DatasetFileError, TrainingConfigError
from .gate import GateResult, compare, write_report
from .metrics import HeadMetrics

__all__ = [
    "Evaluation",
    "Run",
    "choose_threshold",
    "datamodule_for",
    "evaluate",
    "load_task",
    "resolve_run",
    "run_gate",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """A training run on disk."""

    path: Path
    """Run directory (or the checkpoint's folder)."""
    checkpoint: Path
    """The checkpoint evaluated (``best.ckpt`` unless a file was given)."""
    config: dict[str, Any] = field(default_factory=dict)
    """The LightningCLI ``config.yaml`` of the run ({} when absent)."""

    @property
    def data_root(self) -> str | None:
        data = self.config.get("data") or {}
        args = data.get("init_args", data) if isinstance(data, dict) else {}
        root = args.get("root") if isinstance(args, dict) else None
        return str(root) if root else None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "checkpoint": str(self.checkpoint), "data_root": self.data_root}


def resolve_run(spec: str | Path) -> Run:
    """A run from a directory (``checkpoints/best.ckpt``, else the newest ``.ckpt``) or a ``.ckpt`` path."""
    import yaml

    p = Path(spec)
    if p.is_file() and p.suffix == ".ckpt":
        ckpt, folder = p, p.parent.parent if p.parent.name == "checkpoints" else p.parent
    elif p.is_dir():
        folder = p
        best = p / "checkpoints" / "best.ckpt"
        if best.is_file():
            ckpt = best
        else:
            found = sorted(p.rglob("*.ckpt"), key=lambda f: f.stat().st_mtime)
            if not found:
                raise DatasetFileError(f"run {p} holds no checkpoint (expected {best}); train it with "
                                       "`python -m training fit --config ...`")
            ckpt = found[-1]
    else:
        raise DatasetFileError(f"run {p} does not exist (give a run directory or a .ckpt file)")
    cfg_path = folder / "config.yaml"
    config = yaml.safe_load(cfg_path.read_text()) if cfg_path.is_file() else {}
    return Run(path=folder, checkpoint=ckpt, config=config or {})


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise TrainingConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def load_task(run: Run, device: str = "cpu") -> Any:
    """The run's TerraMindTask with the checkpoint's weights, in eval mode on ``device``."""
    from .task import TerraMindTask

    task = TerraMindTask.load_from_checkpoint(str(run.checkpoint), map_location="cpu", pretrained=False,
                                              weights_only=True)
    return task.to(_device(device)).eval()


def datamodule_for(root: str | Path, task: Any, *, batch_size: int = 8, num_workers: int = 0) -> Any:
    """A datamodule over ``root`` with ``task``'s modalities and standardisation (no augmentation)."""
    from .data import NYCDataModule

    dm = NYCDataModule(str(root), batch_size=batch_size, num_workers=num_workers,
                       timesteps=int(task.hparams.get("timesteps", 1)), augment=False)
    bands, standardise = task.input_spec()
    dm.configure_inputs(bands=bands, standardise=standardise)
    return dm


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one task on one split."""

    metrics: dict[str, float]
    """``<head>_mIoU``, ``<head>_IoU_<class>``, ... (0..1) for every head of the task."""
    confusion: dict[str, list[list[int]]]
    """Per head confusion matrix (rows target, columns prediction)."""
    building_hist: np.ndarray | None = None
    """(2, bins) histogram of the building probability for background / building target pixels."""
    chips: int = 0
    """Chips evaluated."""


HIST_BINS = 100


@torch.inference_mode()
def evaluate(task: Any, dm: Any, split: str = "test", *, building_threshold: float | None = None) -> Evaluation:
    """Per-head metrics of ``task`` on ``split`` (argmax; buildings at ``building_threshold`` when given)."""
    ds = dm.dataset(split)
    if len(ds) == 0:
        raise TrainingConfigError(f"the {split} split of {dm.root} is empty")
    dm.verify((split,))
    loader = torch.utils.data.DataLoader(ds, batch_size=dm.eval_batch_size, shuffle=False,
                                         num_workers=dm.num_workers)
    device = next(task.parameters()).device
    metrics = {h: HeadMetrics(h, task.classes[h]).to(device) for h in task.head_names}
    hist = np.zeros((2, HIST_BINS), dtype=np.int64) if "buildings" in task.head_names else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    task.eval()
    for inputs, targets in loader:
        inputs = {m: v.to(device) for m, v in inputs.items()}
        with autocast:
            out = task(inputs)
        for h in task.head_names:
            t = targets[h].to(device)
            logits = out[h].float()
            if h == "buildings" and building_threshold is not None:
                pred = (logits.softmax(1)[:, 1] >= building_threshold).long()
            else:
                pred = logits.argmax(1)
            metrics[h].update(pred, t)
            if h == "buildings" and hist is not None:
                p = logits.softmax(1)[:, 1]
                valid = t >= 0
                idx = (p[valid] * HIST_BINS).long().clamp(0, HIST_BINS - 1)
                lab = t[valid].long()
                for c in (0, 1):
                    hist[c] += torch.bincount(idx[lab == c], minlength=HIST_BINS).cpu().numpy()
    scores: dict[str, float] = {}
    confusion = {}
    for h, m in metrics.items():
        scores.update(m.compute())
        confusion[h] = m.matrix().cpu().tolist()
    return Evaluation(metrics=scores, confusion=confusion, building_hist=hist, chips=len(ds))


def choose_threshold(hist: np.ndarray) -> tuple[float, float]:
    """(threshold, building IoU) maximising the building IoU over the histogram's bin edges."""
    neg, pos = hist[0].astype(np.float64), hist[1].astype(np.float64)
    best_t, best_iou = 0.5, -1.0
    for k in range(1, HIST_BINS):
        tp = pos[k:].sum()
        fp = neg[k:].sum()
        fn = pos[:k].sum()
        denom = tp + fp + fn
        iou = tp / denom if denom > 0 else 0.0
        t = k / HIST_BINS
        if iou > best_iou + 1e-12 or (abs(iou - best_iou) <= 1e-12 and abs(t - 0.5) < abs(best_t - 0.5)):
            best_t, best_iou = t, iou
    return best_t, best_iou


def run_gate(multi: str | Path, lulc: str | Path, buildings: str | Path, *, data: str | Path | None = None,
             out: str | Path | None = None, batch_size: int = 8, device: str = "auto") -> tuple[GateResult, tuple[Path, Path]]:
    """Evaluate the three runs on one test split and write the gate report (JSON + markdown)."""
    runs = {"multi": resolve_run(multi), "lulc": resolve_run(lulc), "buildings": resolve_run(buildings)}
    root = data or runs["multi"].data_root
    if root is None:
        raise TrainingConfigError("no dataset root: pass --data (the two-head run has no config.yaml naming one)")
    tasks = {k: load_task(r, device) for k, r in runs.items()}
    expect = {"multi": None, "lulc": ["lulc"], "buildings": ["buildings"]}
    for k, t in tasks.items():
        heads = expect[k]
        if heads is not None and heads[0] not in t.head_names:
            raise TrainingConfigError(f"the {k} run ({runs[k].path}) does not train head {heads[0]!r} "
                                      f"(it has {t.head_names})")
    if len(tasks["multi"].head_names) < 2:
        raise TrainingConfigError(f"the two-head run {runs['multi'].path} trains only {tasks['multi'].head_names}")
    results = {}
    for k, t in tasks.items():
        dm = datamodule_for(root, t, batch_size=batch_size)
        results[k] = evaluate(t, dm, "test")
        log.info("%s: %s", k, {m: round(v, 4) for m, v in results[k].metrics.items() if m.endswith("IoU")})
    classes = {h: tasks["multi"].classes[h] for h in ("lulc", "buildings")}
    for h, names in classes.items():
        if tasks[h].classes[h] != names:
            raise TrainingConfigError(f"head {h}: the baseline's classes {tasks[h].classes[h]} differ from the "
                                      f"two-head model's {names}")
    provenance: dict[str, Any] = {k: r.to_dict() for k, r in runs.items()}
    provenance["data"] = {"root": str(root), "split": "test", "chips": results["multi"].chips}
    result = compare(results["multi"].metrics, {"lulc": results["lulc"].metrics,
                                                 "buildings": results["buildings"].metrics}, classes, provenance)
    paths = write_report(result, Path(out) if out else runs["multi"].path / "gate")
    return result, paths


def metrics_of(ev: Evaluation, head: str) -> Mapping[str, float]:
    return {k: v for k, v in ev.metrics.items() if k.startswith(f"{head}_")}
