"""Per-head segmentation losses; every one ignores target pixels equal to -1.

Names (``losses.<head>.name`` in the task config): ``ce`` (cross-entropy), ``weighted_ce``
(cross-entropy with per-class weights: a list, or ``auto`` = inverse-sqrt class frequency on the
training split, normalised to mean 1), ``focal`` (focal loss, ``gamma``, optional per-class
``weights`` as alpha) and ``dice`` (soft multi-class Dice over the classes present in the
target). A batch whose pixels are all ignored contributes a zero loss that still has a graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import TrainingConfigError
from .labels import IGNORE_INDEX

__all__ = ["LOSSES", "CrossEntropy", "DiceLoss", "FocalLoss", "auto_class_weights", "build_loss", "soft_cross_entropy"]

LOSSES = ("ce", "weighted_ce", "focal", "dice")


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"expected logits (B, C, H, W) and target (B, H, W), got {tuple(logits.shape)} and "
                         f"{tuple(target.shape)}")


class CrossEntropy(nn.Module):
    """Cross-entropy with ``ignore_index=-1`` and optional class weights."""

    weight: torch.Tensor | None

    def __init__(self, num_classes: int, weights: Sequence[float] | None = None, *, auto_weights: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.auto_weights = auto_weights
        """True when the weights are to be set from the training split's class counts."""
        # not persistent: explicit weights come from the config, 'auto' ones from the training split
        self.register_buffer("weight", None if weights is None else torch.tensor(list(weights), dtype=torch.float32),
                             persistent=False)

    def set_weights(self, weights: Sequence[float]) -> None:
        """Set the class weights (used for ``weights: auto``)."""
        self.weight = torch.tensor(list(weights), dtype=torch.float32)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check(logits, target)
        if not bool((target != IGNORE_INDEX).any()):
            return logits.sum() * 0.0
        if self.auto_weights and self.weight is None:
            raise RuntimeError("loss weights 'auto' were never set from the training split")
        w = None if self.weight is None else self.weight.to(device=logits.device, dtype=torch.float32)
        return F.cross_entropy(logits.float(), target.long(), weight=w, ignore_index=IGNORE_INDEX)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): ``alpha_c * (1 - p_t)^gamma * CE``, mean over valid pixels."""

    alpha: torch.Tensor | None

    def __init__(self, num_classes: int, gamma: float = 2.0, weights: Sequence[float] | None = None, *,
                 auto_weights: bool = False) -> None:
        super().__init__()
        if gamma < 0:
            raise TrainingConfigError(f"focal gamma must be >= 0, got {gamma}")
        self.num_classes = num_classes
        self.gamma = float(gamma)
        self.auto_weights = auto_weights
        self.register_buffer("alpha", None if weights is None else torch.tensor(list(weights), dtype=torch.float32),
                             persistent=False)

    def set_weights(self, weights: Sequence[float]) -> None:
        """Set the per-class alpha (used for ``weights: auto``)."""
        self.alpha = torch.tensor(list(weights), dtype=torch.float32)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check(logits, target)
        valid = target != IGNORE_INDEX
        if not bool(valid.any()):
            return logits.sum() * 0.0
        t = target.long().clamp(min=0)
        logp = F.log_softmax(logits.float(), dim=1)
        logp_t = logp.gather(1, t[:, None]).squeeze(1)
        loss = -((1.0 - logp_t.exp()).clamp(min=0) ** self.gamma) * logp_t
        if self.alpha is not None:
            loss = loss * self.alpha.to(logits.device)[t]
        return loss[valid].mean()


class DiceLoss(nn.Module):
    """Soft Dice over softmax probabilities, averaged over classes present in the target."""

    def __init__(self, num_classes: int, smooth: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check(logits, target)
        valid = (target != IGNORE_INDEX).unsqueeze(1).float()
        if not bool(valid.any()):
            return logits.sum() * 0.0
        probs = logits.float().softmax(dim=1) * valid
        onehot = F.one_hot(target.long().clamp(min=0), self.num_classes).permute(0, 3, 1, 2).float() * valid
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        present = onehot.sum(dims) > 0
        return (1.0 - dice)[present].mean()


def auto_class_weights(counts: Sequence[float]) -> list[float]:
    """Inverse-sqrt-frequency weights normalised to mean 1; classes never seen get the largest weight."""
    c = torch.tensor([float(v) for v in counts], dtype=torch.float64)
    if c.sum() <= 0:
        return [1.0] * len(counts)
    freq = c / c.sum()
    seen = freq > 0
    w = torch.zeros_like(freq)
    w[seen] = freq[seen].rsqrt()
    w[~seen] = w[seen].max() if bool(seen.any()) else 1.0
    w = w / w.mean()
    return [float(v) for v in w]


def build_loss(name: str, num_classes: int, *, weights: Sequence[float] | str | None = None,
               gamma: float = 2.0, head: str = "") -> nn.Module:
    """Build a loss by name; ``weights='auto'`` leaves the weights to be set from the training split."""
    where = f" for head {head!r}" if head else ""
    if name not in LOSSES:
        raise TrainingConfigError(f"unknown loss {name!r}{where}; choose one of {', '.join(LOSSES)}")
    explicit: list[float] | None = None
    if isinstance(weights, str):
        if weights != "auto":
            raise TrainingConfigError(f"loss weights{where} must be a list of {num_classes} numbers or 'auto', "
                                      f"got {weights!r}")
    elif weights is not None:
        explicit = [float(w) for w in weights]
        if len(explicit) != num_classes or any(w < 0 for w in explicit):
            raise TrainingConfigError(f"loss weights{where} must be {num_classes} non-negative numbers, got {explicit}")
    if name == "ce":
        if weights is not None:
            raise TrainingConfigError(f"loss 'ce'{where} takes no weights; use 'weighted_ce'")
        return CrossEntropy(num_classes)
    if name == "weighted_ce":
        if weights is None:
            raise TrainingConfigError(f"loss 'weighted_ce'{where} needs weights (a list or 'auto')")
        return CrossEntropy(num_classes, explicit, auto_weights=explicit is None)
    if name == "focal":
        return FocalLoss(num_classes, gamma=gamma, weights=explicit, auto_weights=weights == "auto")
    if weights is not None:
        raise TrainingConfigError(f"loss 'dice'{where} takes no weights")
    return DiceLoss(num_classes)


def soft_cross_entropy(logits: torch.Tensor, probs: torch.Tensor, valid: torch.Tensor, *,
                       temperature: float = 1.0) -> torch.Tensor:
    """Distillation loss: cross-entropy of the student's softened distribution against the teacher's.

    ``logits`` (B, C, H, W) of the student; ``probs`` (B, C, H, W) teacher probabilities; ``valid``
    (B, H, W) bool, pixels the teacher saw data at (others are ignored). With temperature ``T`` both
    distributions are softened (the teacher's as ``softmax(log p / T)``, which equals softmax of its
    logits over T) and the loss is scaled by ``T**2`` (Hinton et al. 2015, "Distilling the Knowledge in
    a Neural Network"), so gradients keep their size across temperatures. It differs from the KL
    divergence by the teacher's entropy, a constant. No valid pixel: a zero loss that keeps a graph.
    """
    if logits.shape != probs.shape or valid.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"expected logits and teacher probabilities (B, C, H, W) and valid (B, H, W), got "
                         f"{tuple(logits.shape)}, {tuple(probs.shape)} and {tuple(valid.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = float(temperature)
    logp = F.log_softmax(logits.float() / t, dim=1)
    q = probs.float()
    if t != 1.0:
        q = F.softmax(torch.log(q.clamp_min(1e-8)) / t, dim=1)
    per_px = -(q * logp).sum(dim=1)
    m = valid.to(per_px.dtype)
    return (per_px * m).sum() / m.sum().clamp_min(1.0) * (t * t)
