"""The backend-independent tile plan, extraction and blending (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from terramind_nyc.errors import InvalidInputError
from terramind_nyc.model.tiling import TileBlender, TilePlan, cut_tiles, pad_to_canvas, plan_tiles, softmax


def extract_tiles(array: np.ndarray, plan: TilePlan) -> np.ndarray:
    """All tiles of ``array`` as the runtime cuts them: padded to the canvas, then cut."""
    return cut_tiles(pad_to_canvas(array, plan), plan)


def test_one_tile_window_is_a_single_tile_without_margin():
    p = plan_tiles(224, 224)
    assert p.n_tiles == 1 and p.delta == (0, 0) and p.pad == (0, 0, 0, 0) and p.canvas == (224, 224)
    assert (p.weights == 1).all()


def test_grid_follows_terratorch_layout():
    # 300 x 520 -> canvas 316 x 536: rows {0, 92}, cols {0, 192, 312}
    p = plan_tiles(300, 520, tile=224, stride=192, delta=8)
    assert p.canvas == (316, 536) and p.pad == (8, 8, 8, 8)
    assert p.origins == tuple((r, c) for r in (0, 92) for c in (0, 192, 312))
    # 512 x 512 -> 3 x 3 tiles
    assert plan_tiles(512, 512).n_tiles == 9


@pytest.mark.parametrize(("h", "w", "n"), [(1, 1, 1), (100, 100, 1), (1, 500, 3), (100, 520, 3), (224, 520, 3),
                                         (224, 225, 2), (225, 225, 4)])
def test_small_sides_are_padded_up_to_a_tile(h, w, n):
    p = plan_tiles(h, w)
    assert p.n_tiles == n
    if h <= 224:  # one tile row, no vertical margin
        assert p.delta[0] == 0 and {r for r, _ in p.origins} == {0}
    ch, cw = p.canvas
    assert ch >= 224 and cw >= 224
    tiles = extract_tiles(np.zeros((3, h, w), np.float32), p)
    assert tiles.shape == (n, 3, 224, 224)


def test_blend_weights_match_terratorch():
    """With several tiles on both axes, a plan's weights are terratorch's get_blend_mask."""
    pytest.importorskip("torch")
    from terramind_nyc.model.compat import terratorch_imports

    with terratorch_imports():
        from terratorch.tasks.tiled_inference import get_blend_mask

    for stride, delta in ((192, 8), (160, 16), (224, 0), (200, 4)):
        plan = plan_tiles(700, 650, stride=stride, delta=delta)
        assert len({r for r, _ in plan.origins}) > 1 and len({c for _, c in plan.origins}) > 1
        theirs = get_blend_mask(224, stride, 224, stride, delta).numpy()
        np.testing.assert_allclose(plan.weights, theirs, rtol=0, atol=1e-7)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (37, 300), (224, 224), (300, 520), (513, 449), (700, 230)])
@pytest.mark.parametrize(("stride", "delta"), [(192, 8), (224, 0), (112, 16)])
def test_tiling_an_identity_model_gives_back_the_input(h, w, stride, delta):
    """Cut, pass through unchanged, blend: every pixel is covered and weights normalise."""
    rng = np.random.default_rng(h * w)
    x = rng.normal(size=(4, h, w)).astype(np.float32)
    p = plan_tiles(h, w, stride=stride, delta=delta)
    tiles = extract_tiles(x, p)
    b = TileBlender(p, 4)
    for start in range(0, p.n_tiles, 3):  # any batch split
        b.add(start, tiles[start:start + 3])
    np.testing.assert_allclose(b.result(), x, rtol=0, atol=2e-6)


def test_blender_requires_every_tile():
    p = plan_tiles(300, 300)
    b = TileBlender(p, 1)
    b.add(0, np.zeros((1, 1, 224, 224), np.float32))
    with pytest.raises(InvalidInputError, match="never added"):
        b.result()


def test_temporal_arrays_are_tiled_on_the_last_two_axes():
    x = np.arange(2 * 3 * 230 * 240, dtype=np.float32).reshape(2, 3, 230, 240)
    p = plan_tiles(230, 240)
    t = extract_tiles(x, p)
    assert t.shape == (p.n_tiles, 2, 3, 224, 224)
    r, c = p.origins[-1]  # canvas coordinates: the window starts at (8, 8)
    np.testing.assert_array_equal(t[-1][..., 8:-8, 8:-8], x[..., r:r + 208, c:c + 208])


@pytest.mark.parametrize(("kw", "message"), [({"height": 0, "width": 5}, "height"),
                                             ({"height": 5, "width": 5, "stride": 300}, "stride")])
def test_bad_plans_are_rejected(kw, message):
    with pytest.raises(InvalidInputError, match=message):
        plan_tiles(**kw)


def test_softmax_is_stable_and_normalised():
    x = np.array([[1000.0, -1000.0], [0.0, 0.0]], np.float32)
    p = softmax(x, axis=0)
    np.testing.assert_allclose(p.sum(axis=0), 1.0)
    assert np.isfinite(p).all()
