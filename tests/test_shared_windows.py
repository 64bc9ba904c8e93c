"""Grouping of neighbouring points into shared windows (terramind_nyc.shared_windows)."""

from __future__ import annotations

import numpy as np

from terramind_nyc import Settings
from terramind_nyc.shared_windows import group_windows


def test_grouping_shares_dense_points_and_splits_far_ones():
    """A group is kept only when its union window costs no more model tiles than separate windows."""
    from terramind_nyc.grid import chip_grid
    from terramind_nyc.model.tiling import plan_tiles, tile_count

    s = Settings()
    rng = np.random.default_rng(3)
    dense = [(40.75 + d, -73.98 + e) for d, e in rng.uniform(-0.0135, 0.0135, size=(50, 2))]
    grids = [(i, chip_grid(la, lo, settings=s)) for i, (la, lo) in enumerate(dense)]
    groups = group_windows(grids, 896)
    assert len(groups) == 1 and sorted(i for i, _ in groups[0]) == list(range(50))
    # two points ~7 km apart fit in one 896 px window, but 25 tiles cost more than two 1-tile windows
    far = [(0, chip_grid(40.75, -73.98, settings=s)), (1, chip_grid(40.75, -73.90, settings=s))]
    assert sorted(len(g) for g in group_windows(far, 896)) == [1, 1]
    # three close points plus a far one: the close ones still share (found again at half the side)
    near = [(i, chip_grid(40.75 + 0.001 * i, -73.98, settings=s)) for i in range(3)]
    groups = group_windows([*near, (3, chip_grid(40.80, -73.90, settings=s))], 896)
    assert sorted(len(g) for g in groups) == [1, 3]
    # the cheap count agrees with the full plan
    for h, w in [(224, 224), (300, 224), (448, 448), (524, 896), (1000, 333)]:
        assert tile_count(h, w) == plan_tiles(h, w).n_tiles
