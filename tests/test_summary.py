import numpy as np
import pytest

from terramind_nyc.errors import InvalidInputError
from terramind_nyc.summary import summarise

CLASSES = ["water", "developed", "forest", "herbaceous", "other"]


def _probs(h=20, w=30, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(5, h, w)).astype(np.float32)
    lulc = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    b = rng.uniform(size=(h, w)).astype(np.float32)
    return {"lulc": lulc, "buildings": np.stack([1 - b, b])}


def test_fractions_sum_to_one_and_match_manual_counts():
    p = _probs()
    area = np.ones((20, 30), bool)
    s = summarise(p, lulc_classes=CLASSES, building_threshold=0.5, area=area)
    assert sum(s.lulc_fractions.values()) == pytest.approx(1.0)
    assert sum(s.lulc_fractions_mean_prob.values()) == pytest.approx(1.0)
    labels = p["lulc"].argmax(0)
    assert s.lulc_fractions["forest"] == pytest.approx((labels == 2).mean())
    assert s.building_density == pytest.approx((p["buildings"][1] >= 0.5).mean())
    assert s.building_probability_mean == pytest.approx(p["buildings"][1].mean(), rel=1e-6)
    assert s.confidence == pytest.approx(p["lulc"].max(0).mean(), rel=1e-6)
    assert s.dominant_class == CLASSES[int(np.bincount(labels.ravel(), minlength=5).argmax())]
    assert s.nodata_fraction == 0.0 and s.n_pixels == 600


def test_components_counted_with_8_connectivity_inside_area():
    h = w = 10
    b = np.zeros((h, w), np.float32)
    b[1:3, 1:3] = 0.9  # blob 1
    b[3, 3] = 0.9  # diagonal neighbour of blob 1 -> same component
    b[7:9, 7:9] = 0.9  # blob 2
    b[0, 9] = 0.9  # blob 3, outside the area below
    lulc = np.full((5, h, w), 0.2, np.float32)
    area = np.ones((h, w), bool)
    area[0, 9] = False
    s = summarise({"lulc": lulc, "buildings": np.stack([1 - b, b])}, lulc_classes=CLASSES,
                  building_threshold=0.5, area=area)
    assert s.n_building_components == 2
    assert s.building_density == pytest.approx(9 / 99)


def test_nodata_excluded_and_reported():
    p = _probs(10, 10)
    valid = np.ones((10, 10), bool)
    valid[:5] = False
    p["buildings"][1, :5] = 1.0  # invalid rows all "building": must not count
    p["buildings"][1, 5:] = 0.0
    p["buildings"][0] = 1 - p["buildings"][1]
    s = summarise(p, lulc_classes=CLASSES, building_threshold=0.5, area=np.ones((10, 10), bool), valid=valid)
    assert s.nodata_fraction == pytest.approx(0.5)
    assert s.building_density == 0.0


def test_all_nodata_gives_nan_not_zero():
    p = _probs(4, 4)
    s = summarise(p, lulc_classes=CLASSES, building_threshold=0.5, area=np.ones((4, 4), bool),
                  valid=np.zeros((4, 4), bool))
    assert s.nodata_fraction == 1.0 and np.isnan(s.building_density)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p, a: p.pop("buildings"), "no 'buildings' head"),
        (lambda p, a: p.__setitem__("lulc", p["lulc"][:4]), "4 classes"),
        (lambda p, a: p.__setitem__("lulc", p["lulc"][:, :5]), "probabilities must be"),
        (lambda p, a: a.fill(False), "summary area is empty"),
    ],
)
def test_bad_input(mutate, match):
    p = _probs()
    area = np.ones((20, 30), bool)
    mutate(p, area)
    with pytest.raises(InvalidInputError, match=match):
        summarise(p, lulc_classes=CLASSES, building_threshold=0.5, area=area)
