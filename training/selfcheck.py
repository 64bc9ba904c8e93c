"""``python -m training selfcheck``: the whole training path on a synthetic task, on this machine.

1. A synthetic dataset in the real layout (:mod:`training.synthetic`: land cover readable from
   S2 band ratios, buildings from S1 backscatter), split spatially like a real build.
2. ``fit`` through the real LightningCLI entry point: the tiny two-head model, then the two
   single-task baselines (same code, ``heads: [lulc]`` / ``heads: [buildings]``), bounded steps,
   32-bit on CPU.
3. ``gate`` on the held-out test split (report in markdown + JSON).
4. ``export`` of the two-head run to a terramind_nyc artifact; the artifact is loaded by
   ``terramind_nyc``'s runtime and its per-pixel decisions are compared with the Lightning
   module's on every test chip.

``--json`` prints one object with ``lulc_iou``, ``buildings_iou`` (two-head model, test split:
land-cover mIoU, building-class IoU), ``single_lulc_iou``, ``single_buildings_iou``, ``gate``
and ``runtime_agreement`` (share of test pixels where runtime and module agree on both heads).
"""

from __future__ import annotations

import logging
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
TARGET_IOU = 0.9
TARGET_AGREEMENT = 0.999
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
    """Gate verdict (Strong / Acceptable / Negative / Unacceptable)."""
    runtime_agreement: float
    """Share of test pixels where the exported artifact run by terramind_nyc's runtime agrees with the
    Lightning module on both heads (land-cover argmax and building decision), 0..1."""
    threshold: float
    """Buildings threshold chosen on the validation split at export."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage."""
    workdir: str | None = None
    """Where the dataset, runs, report and artifact were written (None: removed)."""

    @property
    def ok(self) -> bool:
        return (self.lulc_iou >= TARGET_IOU and self.buildings_iou >= TARGET_IOU
                and self.runtime_agreement >= TARGET_AGREEMENT)

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
            "seconds    " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()),
            (f"result     {'PASS' if self.ok else 'FAIL'} (targets: IoU >= {TARGET_IOU}, agreement >= "
             f"{100 * TARGET_AGREEMENT:.1f} %)"),
        ]


def selfcheck_config(data_root: Path, run_dir: Path, heads: list[str], steps: int) -> dict[str, Any]:
    """The LightningCLI config of one self-check run (the tiny config, bounded and on CPU)."""
    losses = {"lulc": {"name": "ce"}, "buildings": {"name": "weighted_ce", "weights": "auto"}}
    return {
        "seed_everything": 42,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "precision": "32-true", "max_steps": steps, "max_epochs": -1,
            "check_val_every_n_epoch": 2, "log_every_n_steps": 10, "enable_progress_bar": False,
            "enable_model_summary": False, "num_sanity_val_steps": 0,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(run_dir.parent), "name": run_dir.name, "version": ""}},
        },
        "model": {
            "encoder": "terramind_v1_tiny", "heads": heads, "pretrained": False,
            "losses": {h: losses[h] for h in heads}, "loss_weights": {h: 1.0 for h in heads},
            "lr_encoder": 5e-4, "lr_heads": 2e-3, "weight_decay": 0.01, "early_stopping_patience": None,
            "decoder_channels": [128, 64, 32, 16], "tile_size": CHIP,
        },
        "data": {"root": str(data_root), "batch_size": 8, "num_workers": 0, "augment": True, "cache": True},
    }


def _fit(config: Mapping[str, Any], path: Path) -> None:
    import yaml

    from .lightning_cli import run_lightning_cli

    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    run_lightning_cli(["fit", "--config", str(path)])


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


def run_selfcheck(*, workdir: str | Path | None = None, steps: int | None = None, n_chips: int = 96) -> SelfcheckResult:
    """Run the self-check; figures in the result (it raises only when a stage breaks)."""
    from . import modelconfig
    from .evaluate import datamodule_for, load_task, resolve_run, run_gate
    from .export import export_run
    from .synthetic import write_synthetic_dataset

    steps = DEFAULT_STEPS if steps is None else int(steps)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="terramind-nyc-train-selfcheck-")
        work = Path(tmp.name)
    else:
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    try:
        t = time.perf_counter()
        classes, bands = modelconfig.default_classes_and_bands()
        data = write_synthetic_dataset(work / "data", n_chips=n_chips, size=CHIP, class_names=classes, bands=bands)
        seconds["dataset"] = time.perf_counter() - t
        runs = work / "runs"
        runs.mkdir(exist_ok=True)
        for name, heads in (("multi", ["lulc", "buildings"]), ("lulc", ["lulc"]), ("buildings", ["buildings"])):
            t = time.perf_counter()
            _fit(selfcheck_config(data, runs / name, heads, steps), work / f"{name}.yaml")
            seconds[f"fit_{name}"] = time.perf_counter() - t
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
        lulc, bld = gate.heads["lulc"], gate.heads["buildings"]
        return SelfcheckResult(
            lulc_iou=lulc.multi, buildings_iou=bld.multi, single_lulc_iou=lulc.single,
            single_buildings_iou=bld.single, gate=gate.verdict, runtime_agreement=agreement,
            threshold=float(summary["threshold"]), seconds={k: round(v, 2) for k, v in seconds.items()},
            workdir=None if tmp is not None else str(work),
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
