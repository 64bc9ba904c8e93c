"""``python -m training export RUN --out DIR``: a terramind_nyc artifact from a training run.

The buildings decision threshold is chosen on the *validation* split (the probability that
maximises the building IoU); test metrics are then measured once, with that threshold, and
written into the artifact's config with the training provenance. The artifact is written by
``terramind_nyc.model.artifact``'s own save function, so ``terramind_nyc`` loads it directly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import modelconfig
from .errors import TrainingConfigError
from .evaluate import choose_threshold, datamodule_for, evaluate, load_task, resolve_run
from .layout import DatasetIndex

__all__ = ["export_run"]

log = logging.getLogger(__name__)


def _clean(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if not math.isfinite(v) else round(float(v), 6)) for k, v in d.items()}


def export_run(run: str | Path, out: str | Path, *, data: str | Path | None = None, batch_size: int = 8,
               device: str = "auto", version: str | None = None, threshold: float | None = None,
               extra_provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``run`` to an artifact directory ``out``; return a JSON-safe summary.

    ``threshold``: the buildings threshold to keep (a student distilled on data without validation
    labels keeps its teacher's) instead of the one chosen on the validation split. ``extra_provenance``: more training provenance (e.g. the
    teachers), merged into the config's ``training``. The run's ``energy.json`` (fit / distill
    energy estimates) is recorded as ``training.energy``.
    """
    import torch

    from .energy import read_energy, total

    r = resolve_run(run)
    task = load_task(r, device)
    root = data or r.data_root
    if root is None:
        raise TrainingConfigError("no dataset root: pass --data (the run has no config.yaml naming one)")
    index = DatasetIndex.load(root)
    data_rule = index.meta.get("s2_offset")
    model_rule = dataclasses.asdict(task.config.s2_offset)
    if data_rule is not None and dict(data_rule) != model_rule:
        raise TrainingConfigError(
            f"the dataset at {root} was read with the S2 offset rule {dict(data_rule)}, the model config says "
            f"{model_rule}; an artifact must carry the rule its training data was read with"
        )
    dm = datamodule_for(root, task, batch_size=batch_size)
    fixed = threshold
    threshold, val_iou = (0.5 if fixed is None else float(fixed)), None
    if "buildings" in task.head_names and fixed is None:
        ev_val = evaluate(task, dm, "val")
        assert ev_val.building_hist is not None
        threshold, val_iou = choose_threshold(ev_val.building_hist)
        log.info("buildings threshold %.2f (val IoU %.4f)", threshold, val_iou)
    ev_test = evaluate(task, dm, "test", building_threshold=threshold if "buildings" in task.head_names else None)
    ckpt = torch.load(str(r.checkpoint), map_location="cpu", weights_only=True)
    provenance = {
        "exported": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "run": r.path.name,
        "checkpoint": r.checkpoint.name,
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "hyperparameters": {k: v for k, v in dict(task.hparams).items() if k != "pretrained"}
        | {"pretrained": task.hparams.get("pretrained") is not False},
        "dataset": {
            "name": Path(root).name,
            "chips": {s: len(index.ok(s)) for s in ("train", "val", "test")},
            "sources": index.meta.get("sources", {}),
            "split": index.meta.get("split", {}),
            "offset_rule": index.meta.get("offset_rule"),
        },
        "buildings_threshold": {"value": threshold, "chosen_on": "val" if fixed is None else "given",
                                "val_IoU_building": val_iou}
        if "buildings" in task.head_names else None,
    }
    energy = read_energy(r.path)
    if energy:
        provenance["energy"] = {"stages": [{**e.to_dict(), "line": e.line()} for e in energy], "total": total(energy)}
    provenance.update(dict(extra_provenance or {}))
    metrics = {"test": _clean(ev_test.metrics), "test_chips": ev_test.chips}
    config = modelconfig.finalise_config(task.config, building_threshold=threshold, provenance=provenance,
                                         metrics=metrics, version=version)
    path = modelconfig.save_artifact(task.network.cpu(), config, out)
    return {"artifact": str(path), "threshold": threshold, "val_IoU_building": val_iou,
            "test": metrics["test"], "run": str(r.path)}
