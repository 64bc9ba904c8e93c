"""Units: S2 DN harmonised across processing baselines, S1 backscatter in dB, and mosaics.

The S2 offset rule itself lives in :mod:`terramind_nyc.sensors` (``s2_offset_dn``,
``READER_S2_OFFSET``); this module applies it to the arrays the reader read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..sensors import READER_S2_OFFSET, baseline_has_offset, s2_offset_dn
from .items import item_datetime, item_props

if TYPE_CHECKING:  # pragma: no cover
    import pystac

__all__ = ["S1_FLOOR", "mosaic", "remove_s2_offset", "s2_offset", "to_db"]

log = logging.getLogger(__name__)

#: Linear power floor before dB (DESIGN: 10 * log10(max(x, 1e-6))).
S1_FLOOR = 1e-6


def s2_offset(item: pystac.Item) -> int:
    """DN to subtract from this S2 L2A item (:func:`terramind_nyc.sensors.s2_offset_dn`).

    Decided from ``s2:processing_baseline`` (1000 from baseline 04.00 on, else 0). An item
    without a usable baseline falls back to its date (products from 2022-01-25 on carry the
    offset), with a warning in the log.
    """
    b = item_props(item).get("s2:processing_baseline")
    baseline = None if b is None else str(b)
    off = s2_offset_dn(baseline, item_datetime(item))
    if baseline_has_offset(baseline) is None:
        log.warning("S2 item %s has no usable s2:processing_baseline (%r); assuming offset %d from its date",
                    item.id, b, off)
    return off


def remove_s2_offset(stack: np.ndarray, offset: int) -> np.ndarray:
    """Subtract ``offset`` DN from an S2 ``(bands, H, W)`` float stack in place, then clip at the
    rule's floor (``READER_S2_OFFSET.clip_min``); NaN stays NaN. Returns ``stack``."""
    if offset:
        stack -= np.float32(offset)
        np.maximum(stack, np.float32(READER_S2_OFFSET.clip_min), out=stack)
    return stack


def to_db(lin: np.ndarray) -> np.ndarray:
    """``10 log10(max(lin, S1_FLOOR))`` as float32 (NaN stays NaN)."""
    with np.errstate(invalid="ignore"):
        return (10.0 * np.log10(np.maximum(lin, S1_FLOOR))).astype(np.float32)


def mosaic(layers: Sequence[np.ndarray]) -> np.ndarray:
    """First valid (non-NaN) value per pixel across ``layers`` (same shape, float)."""
    out = layers[0].copy()
    for a in layers[1:]:
        np.copyto(out, a, where=np.isnan(out) & ~np.isnan(a))
    return out
