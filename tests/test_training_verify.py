"""The verification battery and the model card (training/verify.py, modelcard.py, scoring.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training import modelconfig
from training.cli import main
from training.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

CHIP = 64


@pytest.fixture(scope="module")
def artifact_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from terramind_nyc.testing.model import make_tiny_artifact, tiny_config

    root = tmp_path_factory.mktemp("verify")
    classes, bands = modelconfig.default_classes_and_bands()
    data = write_synthetic_dataset(root / "data", n_chips=12, size=CHIP, class_names=classes, bands=bands)
    art = make_tiny_artifact(root / "artifact", config=tiny_config(tile_size=CHIP, decoder_channels=(32, 16, 16, 8)))
    return art, data


def test_a_model_scored_against_itself_agrees_everywhere(artifact_and_data: tuple[Path, Path]) -> None:
    """The student *is* its teacher: agreement 1, every delta 0, so the gate says Strong."""
    from terramind_nyc.model.backends import load_runtime
    from training.distill import gate_against_teachers
    from training.scoring import evaluate_artifact

    art, data = artifact_and_data
    result, _ = gate_against_teachers(art, [str(art)], data=data, out=art.parent / "self-gate", progress=False)
    assert result.verdict == "Strong" and result.runs["agreement_with_teacher"] == {"lulc": 1.0, "buildings": 1.0}
    assert all(c.delta_pp == 0.0 for c in result.heads.values())
    ev = evaluate_artifact(load_runtime(str(art), backend="torch", device="cpu", precision="fp32"), data, "test",
                           progress=False)
    assert ev.chips > 0 and set(ev.calibration) == {"lulc", "buildings"} and ev.thresholds["lulc"] is None
    assert 0.0 <= ev.calibration["lulc"].ece <= 1.0 and "lulc_mIoU" in ev.metrics and "buildings_IoU_building" in ev.metrics
    # without labels the teacher's decisions are the targets: scored against its own cache, everything agrees
    from training.teachers import cache_teacher_outputs, load_teachers

    cache = cache_teacher_outputs(load_teachers([str(art)]), data, splits=("test",), progress=False)
    rt = load_runtime(str(art), backend="torch", device="cpu", precision="fp32")
    free = evaluate_artifact(rt, data, "test", cache=cache, labels=False, progress=False)
    assert free.agreement == {"lulc": 1.0, "buildings": 1.0} and free.metrics["lulc_pixel_acc"] == 1.0


@pytest.mark.slow
def test_verify_writes_the_report_the_card_and_the_panels(artifact_and_data: tuple[Path, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    art, data = artifact_and_data
    code = main(["-q", "verify", str(art), "--data", str(data), "--teachers", str(art), "--sniff", "offline",
                 "--no-progress", "--json"])
    out: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["ok"] is True, out
    assert out["finite"]["bad"] == [] and out["round_trip"]["identical"] is True
    rows = out["backends"]["backends"]
    assert rows["onnx"]["skipped"] is None and min(rows["onnx"]["agreement"].values()) >= 0.999
    assert out["gate"]["verdict"] == "Strong"
    assert len(out["sniff"]["rows"]) == 10 and all(Path(r["quicklook"]).is_file() for r in out["sniff"]["rows"])
    assert out["energy"]["verify"]["stage"] == "verify" and out["energy"]["verify"]["kwh"] >= 0
    assert set(out["test"]["calibration"]) == {"lulc", "buildings"}
    for name in ("report.md", "README.md", "verify.json", "verify/reliability.png"):
        assert (art / name).is_file(), name
    card = (art / "README.md").read_text()
    assert card.startswith("---\nlicense:") and "## Energy" in card and "## Gate" in card
    report = (art / "report.md").read_text()
    assert "Result: **PASS**" in report and "onnx" in report and "[png](verify/sniff/" in report


def test_verify_refuses_what_is_not_an_artifact(tmp_path: Path, artifact_and_data: tuple[Path, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _, data = artifact_and_data
    assert main(["verify", str(tmp_path), "--data", str(data)]) == 2
    assert "not an artifact directory" in capsys.readouterr().err
