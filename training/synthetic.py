"""A synthetic dataset in the real dataset layout whose labels are a known function of the inputs.

Used by the self-check and the tests to prove, on CPU in minutes, that the whole training path
learns: datamodule -> two-head task -> metrics -> gate -> export -> terramind_nyc runtime.

Each chip is a grid of ``block`` x ``block`` pixel cells (16 = one TerraMind patch by default):

- land cover: every cell gets a class; its Sentinel-2 pixels are that class's spectral signature
  (harmonised DN, realistic magnitudes: dark water, bright flat built-up, red-edge/NIR-high
  forest, ...) times 1 + 5 % per-pixel noise. The class is readable from band ratios.
- buildings: a ``developed`` cell holds a building with probability 0.6; building pixels have a
  bright Sentinel-1 VV backscatter (-3 dB vs -14 dB, 1.5 dB noise) and VH 7 dB below VV. The
  rule is readable only from S1, so the buildings head must use a different modality than the
  land-cover head.
- DEM: a smooth random slope plus noise, unrelated to either label (a distractor).
- nodata: a few S2 pixels per chip are NaN (nodata) to exercise the masking path; their labels stay.

Chips lie on a real EPSG:32618 lattice in New York City and are split spatially like a real build.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .labels import IGNORE_INDEX
from .layout import MASK_FILES, MODALITY_FILES, ChipRecord, ChipWriter, new_index, remove_stray_temporaries
from .split import assign_splits

__all__ = ["SIGNATURES", "make_chip", "write_synthetic_dataset"]

log = logging.getLogger(__name__)

#: Harmonised S2 L2A DN of each class, bands B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12.
SIGNATURES: Mapping[str, tuple[float, ...]] = {
    "water": (900, 800, 700, 500, 400, 350, 300, 250, 240, 200, 150, 100),
    "developed": (1500, 1600, 1700, 1800, 1900, 2000, 2100, 2150, 2200, 2200, 2500, 2300),
    "forest": (600, 700, 900, 600, 1200, 2500, 3200, 3500, 3600, 3600, 1800, 900),
    "herbaceous": (800, 900, 1200, 1100, 1600, 2600, 2900, 3000, 3100, 3100, 2700, 1900),
    "other": (1800, 2000, 2300, 2500, 2700, 2900, 3000, 3100, 3150, 3150, 3600, 3300),
}
BUILDING_CLASS = "developed"
ORIGIN = (577920.0, 4502400.0)  # lower-left corner of the synthetic tiling, EPSG:32618 (Lower Manhattan)


def _signatures(class_names: Sequence[str], n_bands: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for name in class_names:
        sig = SIGNATURES.get(name)
        if sig is None or len(sig) != n_bands:  # unknown scheme: a random but distinct spectrum
            sig = tuple(rng.uniform(300, 4000, n_bands))
        out.append(sig)
    return np.asarray(out, dtype=np.float32)


def make_chip(rng: np.random.Generator, *, size: int, block: int, class_names: Sequence[str],
              bands: Mapping[str, Sequence[str]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One synthetic chip: raw modality arrays (S2 DN, S1 dB, DEM m; NaN = nodata) and int8 masks."""
    if size % block:
        raise ValueError(f"size {size} must be a multiple of block {block}")
    nb = size // block
    cls = rng.integers(0, len(class_names), (nb, nb))
    dev = class_names.index(BUILDING_CLASS) if BUILDING_CLASS in class_names else 0
    bld = (rng.random((nb, nb)) < 0.6) & (cls == dev)
    ones = np.ones((block, block), dtype=np.int64)
    lulc = np.kron(cls, ones)
    buildings = np.kron(bld.astype(np.int64), ones)
    n_s2 = len(bands.get("S2L2A", ())) or 12
    sig = _signatures(class_names, n_s2, np.random.default_rng(0))
    s2 = sig[lulc].transpose(2, 0, 1) * (1 + 0.05 * rng.standard_normal((n_s2, size, size)))
    holes = rng.integers(0, size, (2, 4))
    s2[:, holes[0], holes[1]] = np.nan
    vv = np.where(buildings == 1, -3.0, -14.0) + 1.5 * rng.standard_normal((size, size))
    vh = vv - 7.0 + rng.standard_normal((size, size))
    yy, xx = np.mgrid[0:size, 0:size] / size
    dem = 20 + 30 * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy) + rng.standard_normal((size, size))
    arrays = {"S2L2A": s2.astype(np.float32), "S1RTC": np.stack([vv, vh]).astype(np.float32),
              "DEM": dem[None].astype(np.float32)}
    masks = {"lulc": lulc.astype(np.int8), "buildings": buildings.astype(np.int8)}
    return arrays, masks


def write_synthetic_dataset(root: str | Path, *, n_chips: int = 96, size: int = 64, block: int = 16,
                            class_names: Mapping[str, Sequence[str]],
                            bands: Mapping[str, Sequence[str]], seed: int = 0,
                            fractions: Mapping[str, float] | None = None) -> Path:
    """Write ``n_chips`` synthetic chips + index (split seeded 42, grouped in 2 x 2-chip blocks)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stray_temporaries(root)
    rng = np.random.default_rng(seed)
    lulc_names = list(class_names["lulc"])
    cols = int(np.ceil(np.sqrt(n_chips)))
    res = 10.0
    side = size * res
    records: list[ChipRecord] = []
    for i in range(n_chips):
        r, c = divmod(i, cols)
        minx, maxy = ORIGIN[0] + c * side, ORIGIN[1] + (r + 1) * side
        transform = (res, 0.0, minx, 0.0, -res, maxy)
        chip_id = f"e{int(minx)}_n{int(maxy)}"
        arrays, masks = make_chip(rng, size=size, block=block, class_names=lulc_names, bands=bands)
        with ChipWriter(root, chip_id, crs="EPSG:32618", transform=transform) as w:
            for m, arr in arrays.items():
                w.write(m, MODALITY_FILES[m], arr, nodata=float("nan"), descriptions=list(bands.get(m, ())) or None)
            for h, mask in masks.items():
                w.write(h, MASK_FILES[h], mask, nodata=IGNORE_INDEX)
            files = w.commit()
        stats: dict[str, Any] = {h: {"counts": np.bincount(m[m >= 0].ravel(), minlength=len(class_names[h])).tolist(),
                     "ignored": int((m == IGNORE_INDEX).sum())} for h, m in masks.items()}
        stats["building_fraction"] = float(masks["buildings"].mean())
        records.append(ChipRecord(
            id=chip_id, lat=0.0, lon=0.0, status="ok", files=files, crs="EPSG:32618", transform=transform,
            width=size, height=size, provenance={"synthetic": {"seed": seed, "index": i}}, stats=stats,
        ))
    records = assign_splits(records, fractions=fractions or {"train": 0.7, "val": 0.15, "test": 0.15},
                            block_m=2 * side, seed=42)
    meta = {
        "classes": {k: list(v) for k, v in class_names.items()},
        "modalities": {m: list(b) for m, b in bands.items()},
        "timesteps": 1,
        "tile_size": size,
        "resolution_m": res,
        "crs": "EPSG:32618",
        "offset_rule": "synthetic: values are harmonised DN already",
        "sources": {"synthetic": {"seed": seed, "block": block, "rule": __doc__.split("\n\n")[2] if __doc__ else ""}},
        "split": {"seed": 42, "block_m": 2 * side, "fractions": dict(fractions or {})},
    }
    new_index(meta).with_chips(records).save(root)
    log.info("wrote %d synthetic chips to %s", n_chips, root)
    return root
