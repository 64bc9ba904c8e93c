"""Per-head segmentation metrics from a torchmetrics confusion matrix (ignore_index -1).

One :class:`HeadMetrics` per head accumulates a ``MulticlassConfusionMatrix`` (synchronised
across processes by torchmetrics) and derives, with the keys the task logs under ``val/`` and
``test/``:

- ``<head>_IoU_<class>``: per-class intersection over union, tp / (tp + fp + fn)
- ``<head>_mIoU``: mean of the per-class IoUs over classes present in the target or predictions
- ``<head>_F1_<class>`` and ``<head>_F1``: per-class F1 (Dice) and their mean
- ``<head>_pixel_acc``: share of valid pixels predicted right

e.g. ``val/lulc_mIoU``, ``val/buildings_IoU_building``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .labels import IGNORE_INDEX

__all__ = ["HeadMetrics", "scores_from_confusion"]


def scores_from_confusion(cm: torch.Tensor, head: str, class_names: Sequence[str]) -> dict[str, float]:
    """Scores from a (C, C) confusion matrix (rows = target, columns = prediction)."""
    cm = cm.double()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    denom_iou = tp + fp + fn
    iou = torch.where(denom_iou > 0, tp / denom_iou.clamp(min=1), torch.full_like(tp, float("nan")))
    denom_f1 = 2 * tp + fp + fn
    f1 = torch.where(denom_f1 > 0, 2 * tp / denom_f1.clamp(min=1), torch.full_like(tp, float("nan")))
    total = cm.sum()
    out: dict[str, float] = {}
    for i, name in enumerate(class_names):
        out[f"{head}_IoU_{name}"] = float(iou[i])
    for i, name in enumerate(class_names):
        out[f"{head}_F1_{name}"] = float(f1[i])
    out[f"{head}_mIoU"] = float(iou.nanmean()) if bool((~iou.isnan()).any()) else float("nan")
    out[f"{head}_F1"] = float(f1.nanmean()) if bool((~f1.isnan()).any()) else float("nan")
    out[f"{head}_pixel_acc"] = float(tp.sum() / total) if total > 0 else float("nan")
    out[f"{head}_pixels"] = float(total)
    return out


class HeadMetrics(nn.Module):
    """Accumulates one head's confusion matrix and reports IoU / mIoU / F1 / pixel accuracy."""

    def __init__(self, head: str, class_names: Sequence[str]) -> None:
        super().__init__()
        from terramind_nyc.model.compat import ensure_torchvision_importable

        ensure_torchvision_importable()  # torchmetrics imports torchvision
        from torchmetrics.classification import MulticlassConfusionMatrix

        self.head = head
        self.class_names = list(class_names)
        self.confusion = MulticlassConfusionMatrix(num_classes=len(self.class_names), ignore_index=IGNORE_INDEX,
                                                   validate_args=False)

    @torch.no_grad()
    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """``preds`` (B, H, W) class indices; ``target`` (B, H, W) with -1 = ignore."""
        self.confusion.update(preds.reshape(-1), target.reshape(-1).long())

    def compute(self) -> dict[str, float]:
        return scores_from_confusion(self.confusion.compute(), self.head, self.class_names)

    def matrix(self) -> torch.Tensor:
        return self.confusion.compute()

    def reset(self) -> None:
        self.confusion.reset()
