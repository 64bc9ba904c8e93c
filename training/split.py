"""Train / val / test split grouped in space, seeded.

Chips are grouped by square blocks of ``block_m`` metres on the grid CRS (by chip centre), and
any two chips whose footprints share pixels are merged into one group (union-find), so no pixel
ever appears in two splits, and neighbouring chips of one block always share a split. Groups
(not chips) are shuffled with a seeded generator and handed to the split whose share of chips
is furthest below its target fraction. The first two groups go to ``val`` and ``test`` so small
datasets still get all three splits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import DatasetError
from .layout import SPLITS, ChipRecord

__all__ = ["DEFAULT_BLOCK_M", "DEFAULT_FRACTIONS", "DEFAULT_SEED", "assign_splits", "overlapping_across_splits"]

DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.7, "val": 0.15, "test": 0.15}
DEFAULT_SEED = 42
#: 3 x 3 chips of 2.24 km.
DEFAULT_BLOCK_M = 6720.0


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _groups(chips: Sequence[ChipRecord], block_m: float) -> list[list[int]]:
    parent = list(range(len(chips)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    bounds = [c.bounds for c in chips]
    first_in_block: dict[tuple[int, int], int] = {}
    for i, b in enumerate(bounds):
        key = (math.floor((b[0] + b[2]) / 2 / block_m), math.floor((b[1] + b[3]) / 2 / block_m))
        if key in first_in_block:
            union(i, first_in_block[key])
        else:
            first_in_block[key] = i
    order = sorted(range(len(chips)), key=lambda i: bounds[i][0])
    for n, i in enumerate(order):  # sweep along x: only chips whose x-ranges meet can overlap
        for j in order[n + 1:]:
            if bounds[j][0] >= bounds[i][2]:
                break
            if _overlap(bounds[i], bounds[j]):
                union(i, j)
    groups: dict[int, list[int]] = {}
    for i in range(len(chips)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: min(chips[i].id for i in g))


def assign_splits(chips: Sequence[ChipRecord], *, fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
                  block_m: float = DEFAULT_BLOCK_M, seed: int = DEFAULT_SEED) -> list[ChipRecord]:
    """Return ``chips`` with ``split`` and ``group`` set for the ok ones (skipped chips get None).

    Deterministic for a given set of chips, ``fractions``, ``block_m`` and ``seed``.
    """
    if set(fractions) != set(SPLITS):
        raise DatasetError(f"split fractions must name exactly {SPLITS}, got {sorted(fractions)}")
    if any(v < 0 for v in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
        raise DatasetError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    if block_m <= 0:
        raise DatasetError(f"block_m must be > 0, got {block_m}")
    ok = [c for c in chips if c.status == "ok"]
    groups = _groups(ok, block_m)
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(groups)))
    total = len(ok)
    counts = dict.fromkeys(SPLITS, 0)
    assigned: dict[int, tuple[str, str]] = {}
    for n, gi in enumerate(order):
        members = groups[gi]
        if n == 0 and len(groups) >= 3 and fractions["val"] > 0:
            split = "val"
        elif n == 1 and len(groups) >= 3 and fractions["test"] > 0:
            split = "test"
        else:
            split = max(SPLITS, key=lambda s: (fractions[s] * total - counts[s], fractions[s]))
        counts[split] += len(members)
        gid = f"g{gi:04d}"
        for i in members:
            assigned[id(ok[i])] = (split, gid)
    out = []
    for c in chips:
        if c.status == "ok":
            split, gid = assigned[id(c)]
            out.append(dataclasses.replace(c, split=split, group=gid))
        else:
            out.append(dataclasses.replace(c, split=None, group=None))
    return out


def overlapping_across_splits(chips: Sequence[ChipRecord]) -> list[tuple[str, str]]:
    """Pairs of chip ids whose footprints share pixels but whose splits differ (should be empty)."""
    ok = [c for c in chips if c.status == "ok"]
    pairs = []
    for i, a in enumerate(ok):
        for b in ok[i + 1:]:
            if a.split != b.split and _overlap(a.bounds, b.bounds):
                pairs.append((a.id, b.id))
    return pairs
