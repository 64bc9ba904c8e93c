"""Spatially grouped, seeded split (training/split.py)."""

from __future__ import annotations

import dataclasses

import pytest

from training.errors import DatasetError
from training.layout import ChipRecord
from training.split import assign_splits, overlapping_across_splits


def _chip(i: int, x: float, y: float, size: float = 2240.0, status: str = "ok") -> ChipRecord:
    return ChipRecord(id=f"c{i:03d}", lat=40.7, lon=-74.0, status=status,  # type: ignore[arg-type]
                      crs="EPSG:32618", transform=(10.0, 0.0, x, 0.0, -10.0, y + size),
                      width=int(size / 10), height=int(size / 10))


def _tiling(n: int = 12) -> list[ChipRecord]:
    return [_chip(i * n + j, 577920 + j * 2240, 4502400 + i * 2240) for i in range(n) for j in range(n)]


def test_split_is_seeded_deterministic_and_near_the_fractions() -> None:
    chips = _tiling()
    a = assign_splits(chips, seed=42)
    b = assign_splits(list(reversed(chips)), seed=42)
    assert {c.id: c.split for c in a} == {c.id: c.split for c in b}
    c = assign_splits(chips, seed=7)
    assert {x.id: x.split for x in a} != {x.id: x.split for x in c}
    counts = {s: sum(1 for x in a if x.split == s) for s in ("train", "val", "test")}
    assert all(counts.values())
    assert counts["train"] / len(chips) == pytest.approx(0.7, abs=0.1)


def test_chips_of_one_block_share_a_split() -> None:
    chips = assign_splits(_tiling(), block_m=6720.0)
    by_group: dict[str, set[str | None]] = {}
    for c in chips:
        by_group.setdefault(str(c.group), set()).add(c.split)
    assert all(len(s) == 1 for s in by_group.values())
    assert len(by_group) == 16  # 12 x 12 chips of 2.24 km in 6.72 km blocks: 4 x 4 groups


def test_overlapping_chips_never_straddle_splits_and_skipped_chips_get_none() -> None:
    chips = [_chip(i, 580000 + i * 1500, 4500000) for i in range(20)]  # each overlaps the next
    chips += [_chip(100 + i, 700000 + i * 10000, 4600000) for i in range(6)]
    chips.append(_chip(999, 800000, 4700000, status="skipped"))
    out = assign_splits(chips, block_m=2240.0)
    assert overlapping_across_splits(out) == []
    assert len({c.split for c in out[:20]}) == 1
    assert out[-1].split is None and out[-1].group is None


def test_bad_fractions() -> None:
    with pytest.raises(DatasetError, match="sum to 1"):
        assign_splits([], fractions={"train": 0.5, "val": 0.1, "test": 0.1})
    with pytest.raises(DatasetError, match="exactly"):
        assign_splits([], fractions={"train": 1.0})


def test_records_round_trip() -> None:
    c = dataclasses.replace(_chip(1, 0, 0), files={"S2L2A": "chips/c001/S2L2A.tif"}, missing=("DEM",))
    assert ChipRecord.from_dict(c.to_dict()) == c
