"""Calibration of a segmentation head's softmax probabilities: expected calibration error, reliability diagram.

A head is *calibrated* when, among the pixels it labels with confidence ``c``, a share ``c`` is
right. The expected calibration error (ECE) of Guo et al. 2017, "On Calibration of Modern
Neural Networks" (ICML), measures how far it is from that: the pixels are put into ``n``
equal-width bins over their top-label confidence (the largest class probability; bin
``min(floor(conf * n), n - 1)``, so a confidence of exactly 1 falls in the last bin), and

    ECE = sum over bins b of  |B_b| / N * |acc(B_b) - conf(B_b)|

where ``acc`` is the share of the bin's pixels whose arg-max class is the label and ``conf``
their mean confidence. The maximum calibration error (MCE) is the largest of those gaps over
the bins that hold pixels. Both are fractions 0..1, 0 for a calibrated head.

For a binary head (``buildings``: background, building) the confidence is the probability of
the class it decided, ``max(p, 1 - p)``, so it lies in 0.5..1 and the lower bins stay empty.
Pixels whose label is -1 (:data:`~training.labels.IGNORE_INDEX`: nodata, outside the labelled
area) are ignored, as every loss and metric ignores them.

    bins = ReliabilityBins("lulc")
    for probs, labels in held_out:          # (C, H, W) softmax and (H, W) labels, or batches
        bins.update(probs, labels)
    cal = bins.result()                     # Calibration: ece, mce, per-bin accuracy, ...
    reliability_diagram({"lulc": cal, "buildings": other}, "runs/x/reliability.png")

Only numpy is needed to accumulate; matplotlib is imported by :func:`reliability_diagram`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from terramind_nyc.atomic import atomic_path, destination
from terramind_nyc.jsonsafe import json_safe

from .errors import LabelError
from .labels import IGNORE_INDEX

__all__ = ["DEFAULT_BINS", "Calibration", "ReliabilityBins", "ece_from_arrays", "reliability_diagram"]

#: Number of equal-width confidence bins (Guo et al. 2017 use 15).
DEFAULT_BINS = 15

# Softmax outputs in float16/float32 may stray this far outside 0..1 through rounding.
_PROB_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Calibration:
    """Calibration of one head over the pixels accumulated by a :class:`ReliabilityBins`."""

    head: str
    """Name of the head (``lulc``, ``buildings``, ...)."""
    n_bins: int
    """Number of equal-width confidence bins over 0..1."""
    pixels: int
    """Number of pixels counted (labels of -1 excluded)."""
    ece: float
    """Expected calibration error, 0..1: sum over bins of count / pixels * |accuracy - confidence|; NaN with no pixels."""
    mce: float
    """Maximum calibration error, 0..1: the largest |accuracy - confidence| over non-empty bins; NaN with no pixels."""
    accuracy: float
    """Share of counted pixels whose arg-max class is the label, 0..1; NaN with no pixels."""
    mean_confidence: float
    """Mean top-label confidence of the counted pixels, 0..1; NaN with no pixels."""
    bin_edges: tuple[float, ...]
    """The ``n_bins + 1`` bin edges, confidence 0..1, from 0.0 to 1.0."""
    bin_counts: tuple[int, ...]
    """Pixels in each bin (``n_bins`` values)."""
    bin_accuracy: tuple[float, ...]
    """Accuracy of each bin, 0..1; NaN for an empty bin."""
    bin_confidence: tuple[float, ...]
    """Mean confidence of each bin, 0..1; NaN for an empty bin."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON types: tuples as lists, NaN as ``None``."""
        out: dict[str, Any] = json_safe(dataclasses.asdict(self))
        return out


class ReliabilityBins:
    """Accumulates one head's pixels into equal-width confidence bins: count, sum of confidence, sum right.

    Feed it chips or batches with :meth:`update`, combine accumulators of several workers with
    :meth:`merge`, and read the :class:`Calibration` with :meth:`result`. The number of
    classes is fixed by ``num_classes`` or, when that is None, by the first update. Bad
    arguments are ValueError (TypeError for an argument of the wrong kind).
    """

    def __init__(self, head: str, n_bins: int = DEFAULT_BINS, *, num_classes: int | None = None) -> None:
        if not isinstance(head, str):
            raise TypeError(f"head must be a head name (str), got {head!r}")
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer))
                                        or num_classes < 2):
            raise ValueError(f"num_classes must be an int >= 2 or None, got {num_classes!r}")
        self.head = head
        self.n_bins = int(n_bins)
        self.num_classes: int | None = None if num_classes is None else int(num_classes)
        self.counts = np.zeros(self.n_bins, dtype=np.int64)
        """Pixels per bin."""
        self.confidence_sum = np.zeros(self.n_bins, dtype=np.float64)
        """Sum of the top-label confidence of each bin's pixels."""
        self.correct_sum = np.zeros(self.n_bins, dtype=np.int64)
        """Pixels per bin whose arg-max class is the label."""

    def __repr__(self) -> str:
        return (f"ReliabilityBins(head={self.head!r}, n_bins={self.n_bins}, num_classes={self.num_classes}, "
                f"pixels={int(self.counts.sum())})")

    def update(self, probs: np.ndarray, labels: np.ndarray) -> None:
        """Add one chip, ``probs`` (C, H, W) with ``labels`` (H, W), or a batch, (N, C, H, W) with (N, H, W).

        ``probs`` are softmax probabilities (finite, 0..1) over the head's C >= 2 classes;
        ``labels`` are integer class indices 0..C-1, or -1 for a pixel to ignore. Raises
        ValueError for shapes that disagree, a class count other than the head's, or non-finite
        or out-of-range probabilities, and :class:`~training.errors.LabelError` (a ValueError)
        for a label outside -1..C-1; nothing is added then.
        """
        p = np.asarray(probs)
        y = np.asarray(labels)
        where = f"head {self.head!r}: " if self.head else ""
        if p.ndim == 3:
            p, y = p[None], y[None]
        if p.ndim != 4 or y.shape != (p.shape[0], *p.shape[2:]):
            raise ValueError(f"{where}probs {np.shape(probs)} and labels {np.shape(labels)} do not fit: give probs "
                             f"(C, H, W) with labels (H, W), or (N, C, H, W) with (N, H, W)")
        n_classes = p.shape[1]
        if n_classes < 2:
            raise ValueError(f"{where}probs have {n_classes} class channel(s); a calibration needs softmax over >= 2 "
                             f"classes (for a single sigmoid channel p, stack [1 - p, p])")
        if self.num_classes is not None and n_classes != self.num_classes:
            raise ValueError(f"{where}probs have {n_classes} classes, but this head has {self.num_classes}")
        if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)):
            raise ValueError(f"{where}probs must be real-valued probabilities, got dtype {p.dtype}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{where}labels must be integer class indices (-1 to ignore), got dtype {y.dtype}")
        if p.size and not np.isfinite(p).all():
            raise ValueError(f"{where}probs hold NaN or infinite values; check the model's output before calibrating")
        if p.size and (p.min() < -_PROB_TOLERANCE or p.max() > 1 + _PROB_TOLERANCE):
            raise ValueError(f"{where}probs must lie in 0..1, got {float(p.min()):.4g}..{float(p.max()):.4g}; "
                             f"pass softmax probabilities, not logits")
        if y.size and (y.min() < IGNORE_INDEX or y.max() >= n_classes):
            raise LabelError(f"{where}labels must be 0..{n_classes - 1} or {IGNORE_INDEX} (ignore), got "
                             f"{int(y.min())}..{int(y.max())}")
        self.num_classes = n_classes

        valid = y != IGNORE_INDEX
        if not valid.any():
            return
        conf = p.max(axis=1)[valid].astype(np.float64)
        correct = p.argmax(axis=1)[valid] == y[valid]
        conf = np.clip(conf, 0.0, 1.0)
        idx = np.minimum(np.floor(conf * self.n_bins).astype(np.int64), self.n_bins - 1)
        self.counts += np.bincount(idx, minlength=self.n_bins)
        self.confidence_sum += np.bincount(idx, weights=conf, minlength=self.n_bins)
        self.correct_sum += np.bincount(idx[correct], minlength=self.n_bins)

    def merge(self, other: ReliabilityBins) -> None:
        """Add ``other``'s pixels to this accumulator (same head, number of bins and classes)."""
        if not isinstance(other, ReliabilityBins):
            raise TypeError(f"can only merge a ReliabilityBins, got {type(other).__name__}")
        if other.head != self.head or other.n_bins != self.n_bins:
            raise ValueError(f"cannot merge bins of head {other.head!r} ({other.n_bins} bins) into head "
                             f"{self.head!r} ({self.n_bins} bins)")
        if self.num_classes is not None and other.num_classes is not None and self.num_classes != other.num_classes:
            raise ValueError(f"cannot merge head {self.head!r}: {other.num_classes} classes into {self.num_classes}")
        self.counts += other.counts
        self.confidence_sum += other.confidence_sum
        self.correct_sum += other.correct_sum
        if self.num_classes is None:
            self.num_classes = other.num_classes

    def result(self) -> Calibration:
        """The :class:`Calibration` of the pixels accumulated so far."""
        counts = self.counts
        total = int(counts.sum())
        nonempty = counts > 0
        safe = np.maximum(counts, 1)
        acc = np.where(nonempty, self.correct_sum / safe, np.nan)
        conf = np.where(nonempty, self.confidence_sum / safe, np.nan)
        if total:
            gaps = np.abs(acc[nonempty] - conf[nonempty])
            ece = float(np.sum(counts[nonempty] / total * gaps))
            mce = float(gaps.max())
            accuracy = float(self.correct_sum.sum() / total)
            mean_confidence = float(self.confidence_sum.sum() / total)
        else:
            ece = mce = accuracy = mean_confidence = math.nan
        return Calibration(
            head=self.head, n_bins=self.n_bins, pixels=total, ece=ece, mce=mce, accuracy=accuracy,
            mean_confidence=mean_confidence,
            bin_edges=tuple(float(e) for e in np.linspace(0.0, 1.0, self.n_bins + 1)),
            bin_counts=tuple(int(c) for c in counts),
            bin_accuracy=tuple(float(a) for a in acc),
            bin_confidence=tuple(float(c) for c in conf),
        )


def ece_from_arrays(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """The expected calibration error (0..1) of ``probs`` (C, H, W) or (N, C, H, W) against ``labels``.

    Labels of -1 are ignored; NaN when no pixel is left. See :meth:`ReliabilityBins.update`
    for what is accepted.
    """
    bins = ReliabilityBins("", n_bins)
    bins.update(probs, labels)
    return bins.result().ece


def reliability_diagram(results: Mapping[str, Calibration] | Sequence[Calibration], path: str | os.PathLike[str], *,
                        title: str = "") -> Path:
    """PNG with one reliability diagram per head, side by side; returns ``path``.

    Each panel shows the accuracy of each confidence bin as bars, the diagonal of a calibrated
    head, the gap between accuracy and mean confidence shaded, and below it, in grey, the share
    of the head's pixels in each bin; its title is ``"<head>: ECE 3.2 %"``. A head without
    pixels gets a panel that says so. ``results`` is a sequence of :class:`Calibration` or a
    mapping whose values are (the heads are named by each result's ``head``). The file is
    written at exactly ``path``, atomically, like :func:`terramind_nyc.outputs.quicklook`: a
    PNG unless the suffix names another format matplotlib writes (``.pdf``, ``.svg``, ...).
    """
    cals = list(results.values()) if isinstance(results, Mapping) else list(results)
    if not cals:
        raise ValueError("reliability_diagram needs at least one Calibration")
    for c in cals:
        if not isinstance(c, Calibration):
            raise TypeError(f"reliability_diagram takes Calibration results, got {type(c).__name__}")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = destination(path)
    fmt = path.suffix[1:].lower()
    if fmt not in FigureCanvasAgg.get_supported_filetypes() or fmt in ("raw", "rgba"):
        fmt = "png"
    fig, axes = plt.subplots(2, len(cals), figsize=(4.6 * len(cals), 5.6), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, constrained_layout=True)
    try:
        for i, cal in enumerate(cals):
            _draw_panel(axes[0, i], axes[1, i], cal, first=i == 0)
        if title:
            fig.suptitle(title)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format=fmt)
    finally:
        plt.close(fig)
    return path


def _draw_panel(ax: Any, hist: Any, cal: Calibration, *, first: bool) -> None:
    """One head's reliability bars on ``ax`` and its pixel histogram on ``hist``."""
    edges = np.asarray(cal.bin_edges)
    left, width = edges[:-1], np.diff(edges)
    centres = left + width / 2
    ax.plot([0, 1], [0, 1], ls="--", color="0.35", lw=1, label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy" if first else "")
    hist.set_xlabel("confidence (top-label probability)")
    hist.set_ylabel("pixels (%)" if first else "")
    hist.set_xlim(0, 1)
    if cal.pixels == 0:
        ax.set_title(f"{cal.head}: no pixels")
        ax.text(0.5, 0.5, "no pixels", ha="center", va="center", transform=ax.transAxes, color="0.3")
        hist.text(0.5, 0.5, "no pixels", ha="center", va="center", transform=hist.transAxes, color="0.3")
        hist.set_yticks([])
        return
    acc = np.asarray(cal.bin_accuracy)
    conf = np.asarray(cal.bin_confidence)
    full = np.asarray(cal.bin_counts) > 0
    ax.bar(left[full], acc[full], width=width[full], align="edge", color="#3b75af", edgecolor="#24496d", lw=0.6,
           label="accuracy")
    low = np.minimum(acc, conf)[full]
    ax.bar(centres[full], np.abs(conf - acc)[full], bottom=low, width=width[full] * 0.9, color="#d62728",
           alpha=0.3, edgecolor="#d62728", hatch="//", lw=0.6, label="gap to confidence")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    # under the legend, top left: above the diagonal, where an overconfident head's bars never reach
    ax.text(0.03, 0.78, f"MCE {cal.mce * 100:.1f} %\naccuracy {cal.accuracy * 100:.1f} %\n"
            f"confidence {cal.mean_confidence * 100:.1f} %\n{cal.pixels:,} px",
            ha="left", va="top", fontsize=8, transform=ax.transAxes)
    ax.set_title(f"{cal.head}: ECE {cal.ece * 100:.1f} %")
    share = np.asarray(cal.bin_counts, dtype=np.float64) / cal.pixels * 100
    hist.bar(left, share, width=width, align="edge", color="0.6", edgecolor="0.4", lw=0.5)
    hist.set_ylim(0, max(float(share.max()) * 1.1, 1.0))
