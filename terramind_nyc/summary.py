"""Per-pixel class probabilities -> the figures ``fetch`` returns.

Pure numpy (plus ``scipy.ndimage`` for connected components); fractions are 0..1. Every
figure is computed over the *summary area* (the whole window, or the circle of ``radius_m``)
restricted to valid pixels; the share of the summary area without valid input is reported as
``nodata_fraction``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError

__all__ = ["Summary", "summarise"]


@dataclass(frozen=True)
class Summary:
    """Figures summarising both heads over the summary area."""

    building_density: float
    """Share of valid summary pixels whose building probability >= ``building_threshold`` (0..1)."""
    building_probability_mean: float
    """Mean building probability over valid summary pixels (0..1)."""
    n_building_components: int
    """Connected (8-neighbour) groups of building pixels inside the summary area."""
    building_threshold: float
    """Decision threshold on the building probability, from the checkpoint config."""
    lulc_fractions: dict[str, float]
    """Share of valid summary pixels per land-cover class by argmax label (sums to 1)."""
    lulc_fractions_mean_prob: dict[str, float]
    """Mean class probability per land-cover class (sums to 1)."""
    dominant_class: str
    """Land-cover class with the largest argmax fraction."""
    confidence: float
    """Mean top-1 land-cover probability over valid summary pixels (0..1)."""
    nodata_fraction: float
    """Share of the summary area without valid input (0..1)."""
    n_pixels: int
    """Pixels in the summary area (valid or not)."""

    def to_dict(self) -> dict[str, object]:
        """JSON-safe dict (plain floats, ints and strings)."""
        return {
            "building_density": self.building_density,
            "building_probability_mean": self.building_probability_mean,
            "n_building_components": self.n_building_components,
            "building_threshold": self.building_threshold,
            "lulc_fractions": dict(self.lulc_fractions),
            "lulc_fractions_mean_prob": dict(self.lulc_fractions_mean_prob),
            "dominant_class": self.dominant_class,
            "confidence": self.confidence,
            "nodata_fraction": self.nodata_fraction,
            "n_pixels": self.n_pixels,
        }


def _check_probs(name: str, p: np.ndarray, shape: tuple[int, int]) -> None:
    if p.ndim != 3 or p.shape[1:] != shape:
        raise InvalidInputError(f"{name} probabilities must be (classes, {shape[0]}, {shape[1]}), got {p.shape}")


def summarise(
    probabilities: Mapping[str, np.ndarray],
    *,
    lulc_classes: Sequence[str],
    building_threshold: float,
    area: np.ndarray,
    valid: np.ndarray | None = None,
    lulc_head: str = "lulc",
    buildings_head: str = "buildings",
    building_class: int = 1,
) -> Summary:
    """Summarise head probabilities over ``area`` (bool H x W), ignoring pixels not ``valid``.

    ``probabilities[lulc_head]`` is (len(lulc_classes), H, W), ``probabilities[buildings_head]``
    is (2, H, W) with the building class at index ``building_class``.
    """
    area = np.asarray(area, dtype=bool)
    if area.ndim != 2:
        raise InvalidInputError(f"summary area must be a 2-D mask, got shape {area.shape}")
    shape = (int(area.shape[0]), int(area.shape[1]))
    for head in (lulc_head, buildings_head):
        if head not in probabilities:
            raise InvalidInputError(f"no '{head}' head in the model output (heads: {sorted(probabilities)})")
    lulc = np.asarray(probabilities[lulc_head])
    bld = np.asarray(probabilities[buildings_head])
    _check_probs(lulc_head, lulc, shape)
    _check_probs(buildings_head, bld, shape)
    if lulc.shape[0] != len(lulc_classes):
        raise InvalidInputError(
            f"'{lulc_head}' head has {lulc.shape[0]} classes but the config names {len(lulc_classes)}"
        )
    if not 0.0 <= building_threshold <= 1.0:
        raise InvalidInputError(f"building threshold must lie in 0..1, got {building_threshold}")
    valid_mask = np.ones(shape, bool) if valid is None else np.asarray(valid, dtype=bool)
    use = area & valid_mask
    n_area = int(area.sum())
    if n_area == 0:
        raise InvalidInputError("the summary area is empty: increase radius_m or size_m")
    n_use = int(use.sum())
    nodata_fraction = 1.0 - n_use / n_area
    names = [str(c) for c in lulc_classes]
    if n_use == 0:
        nan = float("nan")
        return Summary(nan, nan, 0, float(building_threshold), {c: nan for c in names},
                       {c: nan for c in names}, "", nan, 1.0, n_area)

    p_bld = bld[building_class][use]
    is_bld = bld[building_class] >= building_threshold
    density = float(np.count_nonzero(is_bld[use]) / n_use)
    from scipy import ndimage

    _, n_comp = ndimage.label(is_bld & use, structure=np.ones((3, 3), bool))

    lulc_use = lulc[:, use]  # (C, N)
    labels = np.argmax(lulc_use, axis=0)
    counts = np.bincount(labels, minlength=len(names)).astype(np.float64)
    frac_argmax = counts / counts.sum()
    mean_prob = lulc_use.mean(axis=1, dtype=np.float64)
    mean_prob = mean_prob / mean_prob.sum()
    # the winning class's probability per pixel (a gather: faster than max over the class axis)
    confidence = float(np.take_along_axis(lulc_use, labels[None, :], axis=0).mean(dtype=np.float64))
    dominant = names[int(np.argmax(frac_argmax))]
    return Summary(
        building_density=density,
        building_probability_mean=float(p_bld.mean(dtype=np.float64)),
        n_building_components=int(n_comp),
        building_threshold=float(building_threshold),
        lulc_fractions={c: float(v) for c, v in zip(names, frac_argmax)},
        lulc_fractions_mean_prob={c: float(v) for c, v in zip(names, mean_prob)},
        dominant_class=dominant,
        confidence=confidence,
        nodata_fraction=float(nodata_fraction),
        n_pixels=n_area,
    )
