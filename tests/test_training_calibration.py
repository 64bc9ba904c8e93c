"""Calibration of per-head softmax probabilities (training.calibration): ECE, MCE, reliability diagram."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from training.calibration import DEFAULT_BINS, Calibration, ReliabilityBins, ece_from_arrays, reliability_diagram
from training.errors import LabelError


def _calibrated(rng: np.random.Generator, n_classes: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Probs (C, H, W) whose top class has confidence c ~ U(lo, 1) and is right with probability c."""
    lo = 1.0 / n_classes
    c = rng.uniform(lo, 1.0, size=(h, w))
    pred = rng.integers(0, n_classes, size=(h, w))
    probs = np.empty((n_classes, h, w), np.float32)
    probs[:] = ((1 - c) / (n_classes - 1))[None]
    np.put_along_axis(probs, pred[None], c[None].astype(np.float32), axis=0)
    right = rng.random((h, w)) < c
    other = (pred + rng.integers(1, n_classes, size=(h, w))) % n_classes  # any class but pred
    labels = np.where(right, pred, other).astype(np.int64)
    return probs, labels


def _overconfident(h: int = 50, w: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Binary probs, all confidence 0.99 for class 0; exactly 60 % of the labels are 0."""
    probs = np.empty((2, h, w), np.float64)
    probs[0], probs[1] = 0.99, 0.01
    labels = np.ones(h * w, np.int64)
    labels[: h * w * 6 // 10] = 0
    return probs, labels.reshape(h, w)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_calibrated_model_has_ece_near_zero(n_classes):
    probs, labels = _calibrated(np.random.default_rng(n_classes), n_classes, 400, 500)
    bins = ReliabilityBins("lulc" if n_classes == 5 else "buildings")
    bins.update(probs, labels)
    cal = bins.result()
    assert cal.pixels == 400 * 500 and cal.n_bins == DEFAULT_BINS
    assert cal.ece < 0.02
    assert abs(cal.accuracy - cal.mean_confidence) < 0.01
    assert len(cal.bin_edges) == DEFAULT_BINS + 1 and cal.bin_edges[0] == 0.0 and cal.bin_edges[-1] == 1.0
    assert len(cal.bin_counts) == len(cal.bin_accuracy) == len(cal.bin_confidence) == DEFAULT_BINS
    if n_classes == 2:  # a binary head's confidence is max(p, 1 - p) >= 0.5: the lower bins stay empty
        assert sum(cal.bin_counts[:7]) == 0 and all(math.isnan(a) for a in cal.bin_accuracy[:7])
    assert math.isclose(ece_from_arrays(probs, labels), cal.ece, rel_tol=1e-12)


def test_overconfident_model():
    probs, labels = _overconfident()
    cal = ece_from_arrays(probs, labels)
    assert cal == pytest.approx(0.39, abs=1e-9)
    res = ReliabilityBins("buildings")
    res.update(probs, labels)
    r = res.result()
    assert r.mce == pytest.approx(0.39) and r.accuracy == pytest.approx(0.6) and r.mean_confidence == pytest.approx(0.99)
    assert r.bin_counts[-1] == r.pixels == 2000 and sum(r.bin_counts[:-1]) == 0


def test_hand_computed_bins_and_edges():
    # n_bins 2: conf 0.5 and 1.0 land in the upper bin, 0.49 does not; ECE by hand.
    probs = np.array([[[0.51, 0.5, 1.0, 0.3]], [[0.49, 0.5, 0.0, 0.7]]])  # (2, 1, 4); conf .51 .5 1 .7
    labels = np.array([[0, 1, 0, 0]])  # right, wrong (tie -> class 0), right, wrong
    bins = ReliabilityBins("b", n_bins=2)
    bins.update(probs, labels)
    r = bins.result()
    assert r.bin_counts == (0, 4) and r.bin_edges == (0.0, 0.5, 1.0)
    assert r.bin_accuracy[1] == pytest.approx(0.5) and r.bin_confidence[1] == pytest.approx((0.51 + 0.5 + 1 + 0.7) / 4)
    assert r.ece == pytest.approx(abs(0.5 - 2.71 / 4)) and r.mce == pytest.approx(r.ece)
    three = ReliabilityBins("b", n_bins=3)
    three.update(probs, labels)
    assert three.result().bin_counts == (0, 2, 2)  # .51 .5 -> [1/3, 2/3); 1.0 .7 -> last bin


def test_ignored_pixels_are_ignored():
    rng = np.random.default_rng(1)
    probs, labels = _calibrated(rng, 5, 60, 70)
    masked = labels.copy()
    drop = rng.random(labels.shape) < 0.3
    masked[drop] = -1
    adversarial = probs.copy()
    adversarial[:, drop] = 0.0
    adversarial[0, drop] = 1.0  # fully confident, and ignored
    a = ReliabilityBins("lulc")
    a.update(adversarial, masked)
    b = ReliabilityBins("lulc")
    b.update(probs[:, ~drop][:, None, :], labels[~drop][None, :])  # only the kept pixels, as (C, 1, K)
    ra, rb = a.result(), b.result()
    assert ra.pixels == int((~drop).sum()) == rb.pixels
    assert ra.bin_counts == rb.bin_counts
    assert ra.ece == pytest.approx(rb.ece, rel=1e-12)


def test_all_ignored_gives_nan_and_json_safe_dict():
    bins = ReliabilityBins("buildings", n_bins=4)
    bins.update(np.full((2, 3, 3), 0.5), np.full((3, 3), -1))
    r = bins.result()
    assert r.pixels == 0 and bins.num_classes == 2
    assert all(math.isnan(v) for v in (r.ece, r.mce, r.accuracy, r.mean_confidence))
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["ece"] is None and d["bin_accuracy"] == [None] * 4 and d["bin_counts"] == [0] * 4
    assert math.isnan(ece_from_arrays(np.full((2, 2, 2), 0.5), np.full((2, 2), -1)))


def test_to_dict_of_a_result_is_json():
    probs, labels = _calibrated(np.random.default_rng(2), 5, 30, 30)
    bins = ReliabilityBins("lulc")
    bins.update(probs, labels)
    r = bins.result()
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["head"] == "lulc" and d["pixels"] == 900 and d["ece"] == pytest.approx(r.ece)
    assert len(d["bin_edges"]) == DEFAULT_BINS + 1
    assert d["bin_accuracy"] == [None if math.isnan(a) else a for a in r.bin_accuracy]


def test_batch_equals_per_chip_updates_merged():
    rng = np.random.default_rng(3)
    chips = [_calibrated(rng, 5, 32, 48) for _ in range(4)]
    batch = ReliabilityBins("lulc")
    batch.update(np.stack([p for p, _ in chips]), np.stack([y for _, y in chips]))
    merged = ReliabilityBins("lulc")
    for p, y in chips:
        one = ReliabilityBins("lulc")
        one.update(p, y)
        merged.merge(one)
    sequential = ReliabilityBins("lulc")
    for p, y in chips:
        sequential.update(p, y)
    rb, rm, rs = batch.result(), merged.result(), sequential.result()
    assert rb.pixels == rm.pixels == rs.pixels == 4 * 32 * 48
    assert rb.bin_counts == rm.bin_counts == rs.bin_counts
    np.testing.assert_allclose(rb.bin_confidence, rm.bin_confidence, rtol=1e-12)
    np.testing.assert_allclose(rb.bin_accuracy, rm.bin_accuracy, rtol=1e-12)
    assert rb.ece == pytest.approx(rm.ece, rel=1e-12) and rs.ece == pytest.approx(rm.ece, rel=1e-12)
    assert merged.num_classes == 5


def test_merge_refuses_mismatches():
    a = ReliabilityBins("lulc")
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(ReliabilityBins("buildings"))
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(ReliabilityBins("lulc", n_bins=10))
    five, two = ReliabilityBins("x"), ReliabilityBins("x")
    five.update(np.full((5, 2, 2), 0.2), np.zeros((2, 2), int))
    two.update(np.full((2, 2, 2), 0.5), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="classes"):
        five.merge(two)
    with pytest.raises(TypeError, match="ReliabilityBins"):
        a.merge(five.result())  # type: ignore[arg-type]
    before = five.result().to_dict()
    five.merge(ReliabilityBins("x"))  # an empty accumulator changes nothing
    assert five.result().to_dict() == before


@pytest.mark.parametrize(("probs", "labels", "match"), [
    (np.full((4, 4), 0.5), np.zeros((4, 4), int), "do not fit"),  # no class axis
    (np.full((2, 4, 4), 0.5), np.zeros((4, 5), int), "do not fit"),  # H, W differ
    (np.full((3, 2, 4, 4), 0.5), np.zeros((2, 4, 4), int), "do not fit"),  # N differs
    (np.full((2, 4, 4), 0.5), np.zeros((1, 4, 4), int), "do not fit"),  # chip probs, batch labels
    (np.ones((1, 4, 4)), np.zeros((4, 4), int), "2 classes"),  # one sigmoid channel
    (np.full((2, 4, 4), 0.5), np.zeros((4, 4), float), "integer"),
    (np.full((2, 4, 4), "a"), np.zeros((4, 4), int), "real-valued"),
    (np.where(np.eye(4, dtype=bool)[None], np.nan, 0.5).repeat(2, 0), np.zeros((4, 4), int), "NaN"),
    (np.full((2, 4, 4), np.inf), np.zeros((4, 4), int), "infinite"),
    (np.full((2, 4, 4), 3.0), np.zeros((4, 4), int), "logits"),
    (np.full((2, 4, 4), -0.5), np.zeros((4, 4), int), "logits"),
])
def test_bad_inputs_raise_value_error(probs, labels, match):
    bins = ReliabilityBins("buildings")
    with pytest.raises(ValueError, match=match):
        bins.update(probs, labels)
    assert bins.result().pixels == 0 and bins.num_classes is None  # nothing was added


def test_labels_out_of_range_and_class_count_changes():
    bins = ReliabilityBins("buildings", num_classes=2)
    with pytest.raises(LabelError, match=r"0\.\.1 or -1"):
        bins.update(np.full((2, 2, 2), 0.5), np.array([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match="labels"):  # LabelError is a ValueError; 255 is no ignore value here
        bins.update(np.full((2, 2, 2), 0.5), np.full((2, 2), 255, np.uint8))
    with pytest.raises(ValueError, match="has 2"):
        bins.update(np.full((5, 2, 2), 0.2), np.zeros((2, 2), int))
    free = ReliabilityBins("lulc")
    free.update(np.full((5, 2, 2), 0.2), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="has 5"):  # fixed by the first update
        free.update(np.full((2, 2, 2), 0.5), np.zeros((2, 2), int))
    # float16 softmax a hair above 1 is accepted
    ok = ReliabilityBins("b")
    ok.update(np.array([[[1.0004]], [[0.0]]], np.float16), np.array([[0]]))
    assert ok.result().bin_counts[-1] == 1


@pytest.mark.parametrize("kwargs", [{"n_bins": 0}, {"n_bins": 2.5}, {"n_bins": True}, {"num_classes": 1}])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        ReliabilityBins("lulc", **kwargs)
    with pytest.raises(TypeError, match="head name"):
        ReliabilityBins(None)  # type: ignore[arg-type]


def test_reliability_diagram_two_heads_one_without_pixels(tmp_path):
    image = pytest.importorskip("PIL.Image")
    probs, labels = _calibrated(np.random.default_rng(4), 5, 40, 40)
    lulc = ReliabilityBins("lulc")
    lulc.update(probs, labels)
    empty = ReliabilityBins("buildings").result()
    path = tmp_path / "sub" / "reliability.png"
    out = reliability_diagram({"lulc": lulc.result(), "buildings": empty}, path, title="held-out split")
    assert out == path and path.is_file() and path.stat().st_size > 0
    with image.open(path) as im:
        assert im.format == "PNG" and im.width > im.height > 0
    assert [p.name for p in path.parent.iterdir()] == ["reliability.png"]  # no temporary file left
    # a sequence works too, and a path without a suffix still gets a PNG at exactly that name
    bare = reliability_diagram([empty], tmp_path / "diagram")
    with image.open(bare) as im:
        assert bare == tmp_path / "diagram" and im.format == "PNG"


def test_reliability_diagram_refuses_bad_input_and_keeps_old_file(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        reliability_diagram([], tmp_path / "x.png")
    with pytest.raises(TypeError, match="Calibration"):
        reliability_diagram([ReliabilityBins("lulc")], tmp_path / "x.png")  # type: ignore[list-item]
    with pytest.raises(ValueError, match="directory"):  # InvalidInputError is a ValueError
        reliability_diagram([ReliabilityBins("lulc").result()], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_calibration_is_frozen():
    r = ReliabilityBins("lulc").result()
    assert isinstance(r, Calibration)
    with pytest.raises(AttributeError):
        r.ece = 0.0  # type: ignore[misc]


def test_import_is_numpy_only():
    code = ("import sys, training.calibration; "
            "bad = [m for m in ('matplotlib', 'torch', 'lightning') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
