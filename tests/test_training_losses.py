"""Losses (ignore_index -1) and torchmetrics-based metrics (training/losses.py, training/metrics.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.errors import TrainingConfigError
from training.losses import LOSSES, auto_class_weights, build_loss
from training.metrics import HeadMetrics


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 8, 8, generator=g, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    target[0, :2] = -1
    return logits, target


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_ignores_minus_one_and_has_gradients(name: str) -> None:
    weights = [1.0, 2.0, 0.5] if name == "weighted_ce" else None
    loss_fn = build_loss(name, 3, weights=weights)
    logits, target = _data()
    loss = loss_fn(logits, target)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert logits.grad is not None
    assert logits.grad[0, :, :2].abs().sum() == 0  # ignored pixels get no gradient
    # changing the logits of ignored pixels does not change the loss
    other = logits.detach().clone()
    other[0, :, :2] = 100.0
    assert loss_fn(other, target).item() == pytest.approx(loss.item(), rel=1e-5)


def test_ce_and_weighted_ce_match_torch() -> None:
    logits, target = _data(1)
    ref = F.cross_entropy(logits, target, ignore_index=-1)
    assert build_loss("ce", 3)(logits, target).item() == pytest.approx(ref.item(), rel=1e-6)
    w = torch.tensor([1.0, 3.0, 0.2])
    ref_w = F.cross_entropy(logits, target, weight=w, ignore_index=-1)
    assert build_loss("weighted_ce", 3, weights=w.tolist())(logits, target).item() == pytest.approx(ref_w.item(), rel=1e-6)


def test_focal_with_gamma_zero_is_ce_and_down_weights_easy_pixels() -> None:
    logits, target = _data(2)
    ce = build_loss("ce", 3)(logits, target).item()
    assert build_loss("focal", 3, gamma=0.0)(logits, target).item() == pytest.approx(ce, rel=1e-5)
    assert build_loss("focal", 3, gamma=2.0)(logits, target).item() < ce


def test_dice_is_zero_for_perfect_prediction_and_all_ignored_batches_give_zero() -> None:
    target = torch.randint(0, 3, (1, 8, 8))
    logits = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert build_loss("dice", 3)(logits, target).item() == pytest.approx(0.0, abs=1e-4)
    ignored = torch.full((1, 8, 8), -1)
    for name in ("ce", "dice", "focal"):
        z = build_loss(name, 3)(logits.clone().requires_grad_(True), ignored)
        assert z.item() == 0.0 and z.requires_grad


def test_bad_loss_configs_raise_before_training() -> None:
    with pytest.raises(TrainingConfigError, match="unknown loss 'tversky' for head 'lulc'"):
        build_loss("tversky", 5, head="lulc")
    with pytest.raises(TrainingConfigError, match="needs weights"):
        build_loss("weighted_ce", 2)
    with pytest.raises(TrainingConfigError, match="2 non-negative"):
        build_loss("weighted_ce", 2, weights=[1.0, 2.0, 3.0])
    with pytest.raises(TrainingConfigError, match="'auto'"):
        build_loss("weighted_ce", 2, weights="inverse")
    with pytest.raises(TrainingConfigError, match="takes no weights"):
        build_loss("ce", 2, weights=[1.0, 1.0])


def test_auto_weights_need_setting_and_follow_inverse_sqrt_frequency() -> None:
    loss = build_loss("weighted_ce", 2, weights="auto")
    logits, target = torch.randn(1, 2, 4, 4), torch.randint(0, 2, (1, 4, 4))
    with pytest.raises(RuntimeError, match="never set"):
        loss(logits, target)
    w = auto_class_weights([900, 100])
    assert w[1] / w[0] == pytest.approx(3.0) and sum(w) / 2 == pytest.approx(1.0)
    loss.set_weights(w)
    assert math.isfinite(loss(logits, target).item())


def test_head_metrics_from_confusion_matrix() -> None:
    m = HeadMetrics("buildings", ["background", "building"])
    preds = torch.tensor([[0, 1, 1, 0, 1]])
    target = torch.tensor([[0, 1, 0, -1, 1]])
    m.update(preds, target)
    s = m.compute()
    assert s["buildings_IoU_building"] == pytest.approx(2 / 3)
    assert s["buildings_IoU_background"] == pytest.approx(1 / 2)
    assert s["buildings_mIoU"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert s["buildings_pixel_acc"] == pytest.approx(3 / 4)
    assert s["buildings_F1_building"] == pytest.approx(0.8)
    m.reset()
    m.update(torch.tensor([[0, 0]]), torch.tensor([[0, 0]]))
    s = m.compute()
    assert math.isnan(s["buildings_IoU_building"]) and s["buildings_mIoU"] == 1.0
