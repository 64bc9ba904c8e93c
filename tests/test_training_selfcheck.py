"""Gate, export and the synthetic self-check (training/evaluate.py, export.py, selfcheck.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training import modelconfig
from training.cli import main
from training.evaluate import choose_threshold
from training.selfcheck import selfcheck_config
from training.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _fit(data: Path, run: Path, heads: list[str], steps: int) -> None:
    import yaml

    cfg = selfcheck_config(data, run, heads, steps)
    cfg["trainer"]["check_val_every_n_epoch"] = 1
    cfg["model"]["decoder_channels"] = [32, 16, 16, 8]
    run.parent.mkdir(parents=True, exist_ok=True)
    path = run.parent / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(path)]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    classes, bands = modelconfig.default_classes_and_bands()
    data = write_synthetic_dataset(root / "data", n_chips=12, size=64, class_names=classes, bands=bands)
    out = {"data": data}
    for name, heads in (("multi", ["lulc", "buildings"]), ("lulc", ["lulc"]), ("buildings", ["buildings"])):
        _fit(data, root / "runs" / name, heads, steps=1)
        out[name] = root / "runs" / name
    return out


def test_gate_command_writes_markdown_and_json(runs: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert main(["gate", "--multi", str(runs["multi"]), "--lulc", str(runs["lulc"]), "--buildings",
                 str(runs["buildings"]), "--out", str(out), "--json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    data = json.loads((out / "gate.json").read_text())
    assert printed["verdict"] == data["verdict"] in ("Strong", "Acceptable", "Negative", None)
    assert data["outcome"] == (data["verdict"] or data["rule"])
    assert set(data["heads"]) == {"lulc", "buildings"}
    lulc = data["heads"]["lulc"]
    assert lulc["metric"] == "lulc_mIoU" and set(lulc["per_class"]) == {"water", "developed", "forest",
                                                                          "herbaceous", "other"}
    assert data["heads"]["buildings"]["metric"] == "buildings_IoU_building"
    assert data["runs"]["data"]["split"] == "test" and data["runs"]["data"]["chips"] > 0
    md = (out / "gate.md").read_text()
    assert f"**{data['verdict']}**" in md and "per-class IoU" in md
    # a baseline that lacks its head is refused before evaluating
    assert main(["gate", "--multi", str(runs["multi"]), "--lulc", str(runs["buildings"]), "--buildings",
                 str(runs["buildings"]), "--out", str(out)]) == 2
    assert "does not train head 'lulc'" in capsys.readouterr().err


def test_export_writes_an_artifact_terramind_nyc_loads(runs: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from terramind_nyc.model.artifact import load_artifact
    from terramind_nyc.model.backends import load_runtime

    out = tmp_path / "artifact"
    assert main(["export", str(runs["multi"]), "--out", str(out), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    art = load_artifact(out)
    cfg = art.config
    assert cfg.head_names == ("lulc", "buildings") and cfg.tile_size == 64
    assert cfg.head("buildings").threshold == pytest.approx(summary["threshold"])
    assert cfg.training["buildings_threshold"]["chosen_on"] == "val"
    assert "lulc_mIoU" in cfg.metrics["test"] and "buildings_IoU_building" in cfg.metrics["test"]
    assert cfg.head("lulc").classes == ("water", "developed", "forest", "herbaceous", "other")
    text = (out / "config.json").read_text()
    assert str(tmp_path) not in text and str(runs["data"]) not in text  # no machine paths in the artifact
    rt = load_runtime(str(out), backend="torch", device="cpu")
    rng = np.random.default_rng(0)
    p = rt.predict({"S2L2A": rng.uniform(0, 3000, (12, 70, 90)).astype(np.float32)}).probabilities
    assert p["lulc"].shape == (5, 70, 90) and np.allclose(p["buildings"].sum(0), 1, atol=1e-5)
    # a single-task run exports a single-head artifact
    single = tmp_path / "single"
    assert main(["export", str(runs["lulc"]), "--out", str(single), "--device", "cpu"]) == 0
    assert load_artifact(single).config.head_names == ("lulc",)
    # a dataset read with another S2 offset rule than the model config's is refused
    import shutil

    from training.layout import DatasetIndex

    other = tmp_path / "other_rule"
    shutil.copytree(runs["data"], other)
    index = DatasetIndex.load(other)
    index.with_meta(s2_offset={"offset_dn": 0, "from_baseline": "04.00", "clip_min": 0.0}).save(other)
    assert main(["export", str(runs["multi"]), "--out", str(tmp_path / "refused"), "--data", str(other),
                 "--device", "cpu"]) == 2
    assert "S2 offset rule" in capsys.readouterr().err and not (tmp_path / "refused").exists()


def test_threshold_choice_maximises_building_iou() -> None:
    hist = np.zeros((2, 100), dtype=np.int64)
    hist[0, :30] = 10  # background probabilities below 0.3
    hist[1, 40:] = 10  # building probabilities from 0.4
    hist[0, 35] = 5
    t, iou = choose_threshold(hist)
    assert 0.36 <= t <= 0.40 and iou == pytest.approx(1.0)


def test_selfcheck_plumbing_in_process(tmp_path: Path) -> None:
    """``jobs=1`` (the fits one after the other in this process) with a token budget: every stage runs and
    reports; the IoU targets are not expected after 2 steps, so ``ok`` is False."""
    from training.errors import TrainingConfigError
    from training.selfcheck import run_selfcheck

    res = run_selfcheck(workdir=tmp_path, steps=2, n_chips=12, jobs=1, threads=1)
    assert (res.jobs, res.threads, res.steps) == (1, 1, 2)
    assert {"fit_multi", "fit_lulc", "fit_buildings", "gate", "export", "runtime", "teachers_export", "distill",
            "distill_gate"} <= set(res.seconds)
    assert res.runtime_agreement >= 0.99 and 0 <= res.lulc_iou <= 1  # near-untrained: ties at the threshold
    assert res.gate in ("Strong", "Acceptable", "Negative") or res.gate.startswith("no verdict: ")
    assert 0 <= res.distill_lulc_agreement <= 1 and 0 <= res.distill_buildings_agreement <= 1
    assert (tmp_path / "student" / "model.safetensors").is_file() and (tmp_path / "student-gate" / "gate.md").is_file()
    assert (tmp_path / "gate" / "gate.json").is_file() and not res.ok
    with pytest.raises(TrainingConfigError, match=">= 1"):
        run_selfcheck(workdir=tmp_path, steps=0)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~2.5 min on 2 quiet cores (the fits run side by side); generous for busy CI machines
def test_selfcheck_reaches_the_targets_end_to_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Synthetic dataset -> tiny two-head fit + two baselines -> gate -> export -> runtime -> distil (CPU, ~2.5 min)."""
    code = main(["-q", "selfcheck", "--json", "--workdir", str(tmp_path)])
    printed = capsys.readouterr().out.strip().splitlines()
    res: dict[str, Any] = json.loads(printed[-1])  # one object on the last line
    assert {"lulc_iou", "buildings_iou", "single_lulc_iou", "single_buildings_iou", "gate", "runtime_agreement",
            "distill_lulc_agreement", "distill_buildings_agreement", "distill_gate"} <= set(res)
    assert res["lulc_iou"] >= 0.9 and res["buildings_iou"] >= 0.9, res
    assert res["runtime_agreement"] >= 0.999, res
    assert res["distill_lulc_agreement"] >= 0.95 and res["distill_buildings_agreement"] >= 0.95, res
    for key in ("gate", "distill_gate"):  # the seed's three names, or the rule that failed
        assert res[key] in ("Strong", "Acceptable", "Negative") or res[key].startswith("no verdict: "), res
    assert res["steps"] == 100 and res["jobs"] >= 1 and res["threads"] >= 1
    assert code == 0
    assert (tmp_path / "gate" / "gate.md").is_file() and (tmp_path / "artifact" / "model.safetensors").is_file()
