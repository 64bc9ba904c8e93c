"""Label schemes: ESA WorldCover 2021 v200 codes -> the land-cover head's classes.

The mapping is by class *name* (DESIGN section 3); the class *order* comes from the model
config (``terramind_nyc.model.config``), so no second copy of the order exists here. WorldCover's
nodata (0) and any code the scheme does not list map to :data:`IGNORE_INDEX` (-1), which every
loss and metric ignores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .errors import LabelError

__all__ = [
    "IGNORE_INDEX",
    "WORLDCOVER_NODATA",
    "WORLDCOVER_TO_CLASS",
    "check_mask",
    "map_worldcover",
    "worldcover_lut",
]

#: Label value ignored by every loss and metric (nodata, outside the labelled area).
IGNORE_INDEX = -1
#: WorldCover's nodata code.
WORLDCOVER_NODATA = 0

#: ESA WorldCover 2021 v200 code -> land-cover class name (DESIGN section 3).
WORLDCOVER_TO_CLASS: Mapping[int, str] = {
    10: "forest",  # tree cover
    20: "forest",  # shrubland
    30: "herbaceous",  # grassland
    40: "herbaceous",  # cropland
    50: "developed",  # built-up
    60: "other",  # bare / sparse vegetation
    70: "other",  # snow and ice
    80: "water",  # permanent water bodies
    90: "water",  # herbaceous wetland
    95: "water",  # mangroves
    100: "other",  # moss and lichen
}


def worldcover_lut(class_names: Sequence[str], mapping: Mapping[int, str] = WORLDCOVER_TO_CLASS) -> np.ndarray:
    """A 256-entry int8 lookup table: WorldCover code -> class index in ``class_names`` order.

    Raises :class:`LabelError` when the mapping names a class the model does not have, or when
    a model class receives no WorldCover code (it could never be learnt).
    """
    names = list(class_names)
    unknown = sorted({n for n in mapping.values() if n not in names})
    if unknown:
        raise LabelError(f"WorldCover mapping names classes {unknown} that the model's classes {names} lack")
    unmapped = [n for n in names if n not in set(mapping.values())]
    if unmapped:
        raise LabelError(f"model classes {unmapped} receive no WorldCover code; extend the mapping")
    lut = np.full(256, IGNORE_INDEX, dtype=np.int8)
    for code, name in mapping.items():
        if not 0 <= int(code) <= 255:
            raise LabelError(f"WorldCover code {code} is outside 0..255")
        lut[int(code)] = names.index(name)
    lut[WORLDCOVER_NODATA] = IGNORE_INDEX
    return lut


def map_worldcover(codes: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Map a WorldCover code raster (any integer dtype) to int8 class indices (-1 = ignore)."""
    arr = np.asarray(codes)
    if not np.issubdtype(arr.dtype, np.integer):
        raise LabelError(f"WorldCover codes must be integers, got {arr.dtype}")
    lut = worldcover_lut(class_names)
    out = np.full(arr.shape, IGNORE_INDEX, dtype=np.int8)
    inside = (arr >= 0) & (arr <= 255)
    out[inside] = lut[arr[inside].astype(np.int64)]
    return out


def check_mask(mask: np.ndarray, num_classes: int, *, name: str, where: str = "") -> None:
    """Raise :class:`LabelError` unless every value of ``mask`` is -1 or in ``0..num_classes-1``."""
    arr = np.asarray(mask)
    bad = (arr != IGNORE_INDEX) & ((arr < 0) | (arr >= num_classes))
    if bad.any():
        values = sorted({int(v) for v in np.unique(arr[bad])})[:10]
        at = f" in {where}" if where else ""
        raise LabelError(
            f"mask {name!r}{at} holds values {values} outside the class range 0..{num_classes - 1} "
            f"(and {IGNORE_INDEX} for ignore); check the label scheme the dataset was built with"
        )
