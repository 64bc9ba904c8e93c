"""Score an artifact on a dataset split: the metrics of the gate and the verification, from its runtime.

:func:`evaluate_artifact` runs any ``terramind_nyc`` runtime (a distilled student, a teacher, an
exported run) over the chips of one split, through the same ``predict`` call inference makes (the
artifact's own preprocessing and tiled pass), and compares its decisions with the labels:

- per head the metrics of :mod:`training.metrics` (``<head>_mIoU``, ``<head>_IoU_<class>``, ...);
  two-class heads decide at the artifact's configured threshold (``buildings_IoU_building`` is
  "building IoU at the config threshold"), others by argmax;
- with a teacher cache (:mod:`training.teachers`): ``agreement[head]``, the share of valid pixels
  where the artifact's argmax equals the teacher's;
- per head a :class:`training.calibration.ReliabilityBins` (expected calibration error, diagram).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrainingConfigError
from .layout import DatasetIndex

__all__ = ["ArtifactEvaluation", "evaluate_artifact"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArtifactEvaluation:
    """One artifact on one split."""

    metrics: dict[str, float]
    """``<head>_mIoU``, ``<head>_IoU_<class>``, ``<head>_F1``, ``<head>_pixel_acc`` (0..1) per head."""
    agreement: dict[str, float]
    """Head -> share (0..1) of valid pixels where the argmax equals the teacher's ({} without a cache)."""
    thresholds: dict[str, float | None]
    """Head -> the probability threshold two-class decisions were taken at (None: argmax)."""
    calibration: dict[str, Any] = field(default_factory=dict)
    """Head -> :class:`training.calibration.Calibration` against the labels."""
    chips: int = 0
    """Chips scored."""
    pixels: int = 0
    """Pixels scored (all heads see the same chips)."""
    seconds: float = 0.0
    """Wall time, seconds."""

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": dict(self.metrics), "agreement": dict(self.agreement), "thresholds": dict(self.thresholds),
                "calibration": {h: c.to_dict() for h, c in self.calibration.items()}, "chips": self.chips,
                "pixels": self.pixels, "seconds": round(self.seconds, 3)}


def evaluate_artifact(runtime: Any, data: str | os.PathLike[str], split: str = "test", *,
                      heads: Sequence[str] | None = None, cache: str | os.PathLike[str] | None = None,
                      labels: bool = True, progress: bool | None = None) -> ArtifactEvaluation:
    """Score ``runtime`` on ``split`` of the dataset at ``data`` (module docstring).

    ``heads``: the heads to score (default every head the runtime and the dataset share).
    ``cache``: a teacher cache for ``agreement``. ``labels``: False scores agreement only.
    """
    import torch
    from tqdm.auto import tqdm

    from .calibration import ReliabilityBins
    from .data import ChipDataset
    from .metrics import HeadMetrics
    from .teachers import read_soft_targets

    t0 = time.perf_counter()
    root = Path(data)
    index = DatasetIndex.load(root)
    info = runtime.model_info()
    names = [h for h in (heads or info.heads) if h in info.heads]
    if heads is not None and len(names) != len(heads):
        raise TrainingConfigError(f"the artifact has heads {list(info.heads)}, not all of {list(heads)}")
    if labels:
        names = [h for h in names if h in index.classes]
        for h in names:
            if list(info.heads[h]["classes"]) != index.classes[h]:
                raise TrainingConfigError(f"head {h!r}: the artifact's classes {list(info.heads[h]['classes'])} "
                                          f"differ from the dataset's {index.classes[h]}")
    if not names:
        raise TrainingConfigError(f"the artifact ({list(info.heads)}) and the dataset ({sorted(index.classes)}) "
                                  "share no head")
    chips = index.ok(split)
    if not chips:
        raise TrainingConfigError(f"the {split} split of {root} is empty")
    bands = {m: len(b) for m, b in dict(index.meta.get("modalities") or {}).items() if m in info.modalities}
    ds = ChipDataset(root, chips, bands=bands, heads=names, standardise=lambda a, v: a,
                     labels=labels, soft_targets=None if labels or cache is None else Path(cache))
    thresholds = {h: (float(info.heads[h]["threshold"]) if len(info.heads[h]["classes"]) == 2
                      and info.heads[h].get("threshold") is not None else None) for h in names}
    metrics = {h: HeadMetrics(h, list(info.heads[h]["classes"])) for h in names}
    calib = {h: ReliabilityBins(h) for h in names}
    same = dict.fromkeys(names, 0)
    seen = dict.fromkeys(names, 0)
    pixels = 0
    show = sys.stderr.isatty() if progress is None else bool(progress)
    for i in tqdm(range(len(ds)), desc=f"score {split}", unit="chip", disable=not show, file=sys.stderr):
        arrays, masks = ds.read(i)
        valid = {m: np.isfinite(a).all(axis=0) for m, a in arrays.items()}
        probs = runtime.predict(arrays, valid).probabilities
        soft = read_soft_targets(cache, chips[i].id) if cache is not None else None
        targets = masks if labels else ds.targets(i, {})
        pixels += next(iter(valid.values())).size
        for h in names:
            p = probs[h]
            t = thresholds[h]
            pred = (p[1] >= t).astype(np.int64) if t is not None else p.argmax(0)
            target = np.asarray(targets[h], dtype=np.int64)
            metrics[h].update(torch.from_numpy(pred)[None], torch.from_numpy(target)[None])
            calib[h].update(p, target)
            if soft is not None:
                ok = soft["valid"]
                same[h] += int(((p.argmax(0) == soft[f"argmax_{h}"]) & ok).sum())
                seen[h] += int(ok.sum())
    scores: dict[str, float] = {}
    for h, m in metrics.items():
        scores.update({k: float(v) for k, v in m.compute().items() if not k.endswith("_pixels")})
    agreement = {h: same[h] / seen[h] for h in names if seen[h]} if cache is not None else {}
    return ArtifactEvaluation(metrics=scores, agreement=agreement, thresholds=thresholds,
                              calibration={h: c.result() for h, c in calib.items()}, chips=len(chips),
                              pixels=pixels, seconds=time.perf_counter() - t0)

