"""The eval gate's verdicts and report (training/gate.py)."""

from __future__ import annotations

import json
import math

import pytest

from training.gate import compare, decide, gate_metric_key, write_report


@pytest.mark.parametrize(
    ("dl", "db", "verdict"),
    [
        (0.0, 0.0, "Strong"),
        (-1.0, -0.99, "Strong"),
        (+5.0, -1.0, "Strong"),
        (-2.0, +2.0, "Acceptable"),
        (+3.5, -3.0, "Acceptable"),
        (-1.5, +1.4, None),
        (-3.5, +10.0, None),
        (-2.0, -0.5, None),
        (-3.0, -3.0, "Negative"),
        (-10.0, -4.0, "Negative"),
        (-3.0, -2.9, None),
    ],
)
def test_verdicts(dl: float, db: float, verdict: str | None) -> None:
    got, rule = decide({"lulc": dl, "buildings": db})
    assert got == verdict
    assert f"lulc {dl:+.2f} pp" in rule
    if verdict is None:  # no fourth name: the rule that failed, for each of the three
        assert rule.startswith("no verdict") and all(f"{v} fails" in rule for v in ("Strong", "Acceptable", "Negative"))


def test_no_verdict_names_the_failing_rule() -> None:
    _, rule = decide({"lulc": -1.5, "buildings": 1.4})
    assert "lulc is 1.50 pp below" in rule and "buildings gains only +1.40 pp, less than the 1.50 pp" in rule
    _, rule = decide({"lulc": -3.5, "buildings": 10.0})
    assert "lulc gives up 3.50 pp (more than 3)" in rule and "buildings is +10.00 pp, not down" in rule


def test_decide_refuses_nan_and_wrong_head_count() -> None:
    with pytest.raises(ValueError, match="finite"):
        decide({"lulc": math.nan, "buildings": 0.0})
    with pytest.raises(ValueError, match="exactly two"):
        decide({"lulc": 0.0})


def test_gate_metric_is_positive_class_iou_for_binary_heads() -> None:
    assert gate_metric_key("buildings", ["background", "building"]) == "buildings_IoU_building"
    assert gate_metric_key("lulc", ["a", "b", "c"]) == "lulc_mIoU"


def test_compare_and_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    classes = {"lulc": ["water", "land", "other"], "buildings": ["background", "building"]}
    multi = {"lulc_mIoU": 0.80, "lulc_IoU_water": 0.9, "lulc_IoU_land": 0.8, "lulc_IoU_other": 0.7,
             "buildings_IoU_background": 0.95, "buildings_IoU_building": 0.60, "buildings_mIoU": 0.775}
    singles = {
        "lulc": {"lulc_mIoU": 0.82, "lulc_IoU_water": 0.9, "lulc_IoU_land": 0.85, "lulc_IoU_other": 0.71},
        "buildings": {"buildings_IoU_background": 0.95, "buildings_IoU_building": 0.58, "buildings_mIoU": 0.765},
    }
    res = compare(multi, singles, classes, runs={"multi": "runs/m"})
    assert res.verdict == "Acceptable"
    assert res.heads["lulc"].delta_pp == pytest.approx(-2.0)
    assert res.heads["buildings"].delta_pp == pytest.approx(2.0)
    assert res.heads["lulc"].per_class["land"]["delta_pp"] == pytest.approx(-5.0)
    js, md = write_report(res, tmp_path)
    data = json.loads(js.read_text())
    assert data["verdict"] == "Acceptable" and data["heads"]["buildings"]["metric"] == "buildings_IoU_building"
    text = md.read_text()
    assert "**Acceptable**" in text and "| land | 85.00" not in text and "| land | 80.00 | 85.00 | -5.00 |" in text
