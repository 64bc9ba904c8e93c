"""Distillation: teachers and their cache, the soft loss, the datamodule, ``distill`` and ``gate --student``
(training/teachers.py, losses.py, data.py, task.py, distill.py, scoring.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from training import modelconfig
from training.cli import main
from training.errors import DatasetFileError, TrainingConfigError
from training.losses import soft_cross_entropy
from training.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

CHIP = 64


def _teacher(path: Path, heads: tuple[str, ...] | None = None, seed: int = 0) -> Path:
    from terramind_nyc.model.config import DEFAULT_HEADS
    from terramind_nyc.testing.model import make_tiny_artifact, tiny_config

    hs = tuple(h for h in DEFAULT_HEADS if heads is None or h.name in heads)
    cfg = tiny_config(tile_size=CHIP, decoder_channels=(32, 16, 16, 8), heads=hs)
    return make_tiny_artifact(path, config=cfg, seed=seed)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distill")
    classes, bands = modelconfig.default_classes_and_bands()
    data = write_synthetic_dataset(root / "data", n_chips=12, size=CHIP, class_names=classes, bands=bands)
    return {"root": root, "data": data, "both": _teacher(root / "both"),
            "lulc": _teacher(root / "lulc", ("lulc",), seed=1), "buildings": _teacher(root / "bld", ("buildings",), seed=2)}


# --- the loss ----------------------------------------------------------------------------------
def test_soft_cross_entropy_is_cross_entropy_for_one_hot_teachers() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 8, 8, generator=g)
    target = torch.randint(0, 5, (2, 8, 8), generator=g)
    one_hot = torch.nn.functional.one_hot(target, 5).permute(0, 3, 1, 2).float()
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    got = soft_cross_entropy(logits, one_hot, valid)
    assert got.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item(), rel=1e-5)
    # invalid pixels do not count, and no valid pixel is a zero loss
    valid[0] = False
    assert soft_cross_entropy(logits, one_hot, valid).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits[1:], target[1:]).item(), rel=1e-5)
    assert soft_cross_entropy(logits, one_hot, torch.zeros_like(valid)).item() == 0.0


def test_soft_cross_entropy_temperature_softens_the_teacher_and_checks_inputs() -> None:
    logits = torch.zeros(1, 2, 1, 1, requires_grad=True)
    teacher_logits = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1)
    probs = teacher_logits.softmax(1)
    valid = torch.ones(1, 1, 1, dtype=torch.bool)
    t = 2.0
    want = -(torch.softmax(teacher_logits / t, 1) * torch.log_softmax(logits / t, 1)).sum() * t * t
    got = soft_cross_entropy(logits, probs, valid, temperature=t)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    got.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="expected logits"):
        soft_cross_entropy(logits, probs[:, :1], valid)
    with pytest.raises(ValueError, match="temperature"):
        soft_cross_entropy(logits, probs, valid, temperature=0.0)


# --- teachers ------------------------------------------------------------------------------------
def test_load_teachers_maps_every_head_to_one_artifact(world: dict[str, Path]) -> None:
    from training.teachers import load_teachers

    t = load_teachers([str(world["both"])])
    assert t.sources == {"lulc": str(world["both"]), "buildings": str(world["both"])}
    t = load_teachers([f"lulc={world['lulc']}", str(world["buildings"])])
    assert t.sources["lulc"] == str(world["lulc"]) and t.info("buildings")["sha256"]
    with pytest.raises(TrainingConfigError, match="two teachers"):
        load_teachers([str(world["both"]), str(world["lulc"])])
    with pytest.raises(TrainingConfigError, match=r"no teacher for head\(s\) \['buildings'\]"):
        load_teachers([str(world["lulc"])])
    with pytest.raises(TrainingConfigError, match="has no 'buildings' head"):
        load_teachers([f"buildings={world['lulc']}", str(world["lulc"])])
    with pytest.raises(TrainingConfigError, match="at least one"):
        load_teachers([])


def test_teacher_cache_holds_the_runtime_probabilities_and_resumes(world: dict[str, Path], tmp_path: Path) -> None:
    from terramind_nyc.model.backends import load_runtime
    from training.layout import DatasetIndex
    from training.teachers import cache_teacher_outputs, load_teachers, read_manifest, read_soft_targets

    teach = load_teachers([str(world["both"])])
    cache = cache_teacher_outputs(teach, world["data"], out=tmp_path / "cache", progress=False)
    index = DatasetIndex.load(world["data"])
    files = sorted(p.stem for p in cache.glob("*.safetensors"))
    assert files == sorted(c.id for c in index.ok())
    man = read_manifest(cache)
    assert man["classes"]["lulc"] == index.classes["lulc"] and man["teachers"]["buildings"]["source"] == str(world["both"])
    chip = index.ok("test")[0]
    soft = read_soft_targets(cache, chip.id)
    from training.data import ChipDataset

    arrays, _ = ChipDataset(world["data"], [chip], bands={m: len(b) for m, b in index.meta["modalities"].items()},
                            heads=[], standardise=lambda a, v: a).read(0)
    rt = load_runtime(str(world["both"]), backend="torch", device="cpu", precision="fp32")
    want = rt.predict(arrays, {m: np.isfinite(a).all(0) for m, a in arrays.items()}).probabilities
    for h in ("lulc", "buildings"):
        assert soft[h].shape == want[h].shape
        np.testing.assert_allclose(soft[h], want[h], atol=2e-3)  # float16 storage
        np.testing.assert_array_equal(soft[f"argmax_{h}"], want[h].argmax(0))  # taken before rounding
    every = np.logical_and.reduce([np.isfinite(a).all(0) for a in arrays.values()])
    assert soft["valid"].dtype == bool and np.array_equal(soft["valid"], every)
    before = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.safetensors")}
    cache_teacher_outputs(teach, world["data"], out=cache, progress=False)  # nothing recomputed
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.safetensors")} == before
    with pytest.raises(DatasetFileError, match="no teacher outputs"):
        read_soft_targets(cache, "e0_n0")


def test_datamodule_feeds_teacher_targets_through_the_same_d4(world: dict[str, Path], tmp_path: Path) -> None:
    from training.data import NYCDataModule
    from training.teachers import cache_teacher_outputs, load_teachers

    cache = cache_teacher_outputs(load_teachers([str(world["both"])]), world["data"], out=tmp_path / "c",
                                  progress=False)
    config = modelconfig.make_config(encoder="terramind_v1_tiny", heads=None, tile_size=CHIP, timesteps=1,
                                     modalities=None, decoder_channels=None)
    dm = NYCDataModule(str(world["data"]), batch_size=2, augment=True, soft_targets=str(cache), labels=False)
    dm.configure_inputs(bands=modelconfig.band_counts(config), standardise=modelconfig.standardiser(config))
    ds = dm.dataset("train")
    torch.manual_seed(3)
    for i in range(3):
        _, targets = ds[i]
        assert set(targets) == {"lulc", "buildings", "soft_lulc", "soft_buildings", "soft_valid"}
        for h in ("lulc", "buildings"):  # labels: false -> the teacher's decision, rotated with its probabilities
            same = targets[h] == targets[f"soft_{h}"].argmax(0)  # float16 probabilities: a rare near tie may flip
            assert (targets[h][~targets["soft_valid"]] == -1).all()
            assert same[targets["soft_valid"]].float().mean() > 0.99
    with pytest.raises(TrainingConfigError, match="needs data.soft_targets"):
        NYCDataModule(str(world["data"]), labels=False)


def _student_config(data: Path, run: Path, steps: int) -> Path:
    import yaml

    from training.selfcheck import distill_config

    cfg = distill_config(data, run, steps)
    cfg["model"]["decoder_channels"] = [32, 16, 16, 8]
    run.parent.mkdir(parents=True, exist_ok=True)
    path = run.parent / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_distill_then_gate_against_the_teachers(world: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from terramind_nyc.model.artifact import load_artifact

    cfg = _student_config(world["data"], tmp_path / "runs" / "student", steps=3)
    teachers = [f"lulc={world['lulc']}", f"buildings={world['buildings']}"]
    code = main(["-q", "distill", "--teachers", *teachers, "--out", str(tmp_path / "student"), "--no-progress",
                 "--json", "--config", str(cfg)])
    assert code == 0
    summary: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["artifact"] == str(tmp_path / "student") and not summary["labels"]
    art = load_artifact(tmp_path / "student")
    dist = art.config.training["distillation"]
    assert dist["teachers"]["lulc"]["source"] == str(world["lulc"]) and dist["options"]["label_weight"] == 0.0
    # the synthetic dataset has validation labels: the threshold is chosen on them, as export does
    assert art.config.training["buildings_threshold"]["chosen_on"] == "val"
    stages = art.config.training["energy"]["stages"]
    assert [s["stage"] for s in stages] == ["distill"] and stages[0]["kwh"] >= 0
    assert (tmp_path / "runs" / "student" / "energy.json").is_file()

    out = tmp_path / "gate"
    assert main(["gate", "--student", str(tmp_path / "student"), "--teachers", *teachers, "--data",
                 str(world["data"]), "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["verdict"] in ("Strong", "Acceptable", "Negative", None)
    assert res["outcome"] == (res["verdict"] or res["rule"])
    agree = res["runs"]["agreement_with_teacher"]
    assert set(agree) == {"lulc", "buildings"} and all(0 <= v <= 1 for v in agree.values())
    assert "Agreement with the teachers" in (out / "gate.md").read_text()
    # bad combinations end with a clear error
    assert main(["gate", "--student", str(tmp_path / "student"), "--data", str(world["data"])]) == 2
    assert "needs --teachers" in capsys.readouterr().err


def test_distill_refuses_teachers_without_the_students_heads(world: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _student_config(world["data"], tmp_path / "runs" / "s", steps=1)
    assert main(["distill", "--teachers", str(world["lulc"]), "--config", str(cfg)]) == 2
    assert "no teacher for head(s) ['buildings']" in capsys.readouterr().err


@pytest.mark.slow
def test_the_converted_adapters_teach_with_their_own_preprocessing(world: dict[str, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Synthetic stand-ins of the published adapters, converted as users convert the real ones: one teacher
    artifact with a LoRA encoder per head, 256 px tiles, ImpactMesh statistics and linear S1 (its config)."""
    from terramind_nyc.model.convert_adapters import import_adapters
    from terramind_nyc.testing.adapters import write_synthetic_adapters
    from training.teachers import cache_teacher_outputs, load_teachers, read_manifest, read_soft_targets

    base, adapters = write_synthetic_adapters(tmp_path / "repos", encoder="terramind_v1_tiny",
                                              decoder_channels=(32, 16, 16, 8))
    teacher = import_adapters(tmp_path / "adapters", adapters=str(adapters), base=str(base),
                              encoder="terramind_v1_tiny")
    teach = load_teachers([str(teacher)])
    assert teach.runtimes["lulc"] is teach.runtimes["buildings"]  # one artifact, both heads
    info = teach.info("lulc")
    assert info["tile_size"] == 256 and info["preprocessing"]  # its own preprocessing, recorded in the cache
    cache = cache_teacher_outputs(teach, world["data"], splits=("test",), progress=False)
    assert read_manifest(cache)["teachers"]["buildings"]["tile_size"] == 256
    soft = read_soft_targets(cache, next(iter(sorted(p.stem for p in cache.glob("*.safetensors")))))
    assert soft["lulc"].shape == (5, CHIP, CHIP) and np.allclose(soft["lulc"].sum(0), 1.0, atol=1e-2)
    cfg = _student_config(world["data"], tmp_path / "runs" / "student", steps=2)
    assert main(["-q", "distill", "--teachers", str(teacher), "--out", str(tmp_path / "student"), "--no-progress",
                 "--json", "--config", str(cfg)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["teachers"]) == {"lulc", "buildings"} and summary["teachers"]["lulc"]["tile_size"] == 256
