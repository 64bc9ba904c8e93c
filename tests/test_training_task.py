"""The datamodule, the Lightning task and the CLI's training commands (tiny model, CPU, seconds).

Every bad configuration must raise before a training step runs: the task's ``training_step`` is
wrapped to record calls, and each failing fit asserts it was never called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from terramind_nyc.model.inputs import standardise, validate_inputs
from training import modelconfig
from training.cli import main
from training.data import NYCDataModule, d4
from training.errors import DatasetFileError, LabelError, TrainingConfigError
from training.layout import DatasetIndex, read_raster, write_raster
from training.synthetic import write_synthetic_dataset
from training.task import TerraMindTask

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

TINY: dict[str, Any] = {"encoder": "terramind_v1_tiny", "pretrained": False, "decoder_channels": [32, 16, 16, 8],
                        "tile_size": 64}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    classes, bands = modelconfig.default_classes_and_bands()
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "data", n_chips=12, size=64,
                                   class_names=classes, bands=bands)


def _copy(dataset: Path, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "data"
    shutil.copytree(dataset, out)
    return out


def _trainer(tmp_path: Path, **kw: Any) -> Any:
    import lightning.pytorch as L

    args = {"accelerator": "cpu", "max_steps": 2, "limit_val_batches": 1, "logger": False,
            "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(tmp_path),
            "num_sanity_val_steps": 0, "enable_checkpointing": False}
    args.update(kw)
    return L.Trainer(**args)


class _Spy:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = TerraMindTask.training_step

        def step(task: TerraMindTask, *a: Any, **k: Any) -> Any:
            self.calls += 1
            return real(task, *a, **k)

        monkeypatch.setattr(TerraMindTask, "training_step", step)


# ----------------------------------------------------------------------------------------
# configuration errors, before any step
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"heads": ["lulc", "roads"]}, r"unknown head\(s\) \['roads'\]"),
        ({"heads": []}, "at least one"),
        ({"encoder": "terramind_v1_huge"}, "unknown encoder 'terramind_v1_huge'"),
        ({"losses": {"lulc": {"name": "tversky"}, "buildings": {"name": "ce"}}}, "unknown loss 'tversky'"),
        ({"losses": {"lulc": {"name": "ce"}}}, r"no loss configured for head\(s\) \['buildings'\]"),
        ({"heads": ["lulc"], "losses": {"lulc": {"name": "ce"}, "buildings": {"name": "ce"}}}, "does not train"),
        ({"loss_weights": {"lulc": 1.0}}, "loss_weights must name exactly"),
        ({"pretrained": "/nonexistent/TerraMind_v1_tiny.pt"}, "not found"),
        ({"tile_size": 50}, "tile_size"),
    ],
)
def test_bad_task_configs_raise_clearly(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(TrainingConfigError, match=match):
        TerraMindTask(**{**TINY, **kw})


def test_out_of_range_masks_fail_before_training(dataset: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = _copy(dataset, tmp_path)
    chip = DatasetIndex.load(data).ok("val")[0]
    path = data / chip.files["lulc"]
    mask = read_raster(path)
    mask[0, 3, 3] = 7
    write_raster(path, mask, crs=chip.crs or "", transform=chip.transform or (), nodata=-1)
    spy = _Spy(monkeypatch)
    with pytest.raises(LabelError, match=rf"mask 'lulc' in chip {chip.id}.*\[7\].*0\.\.4"):
        _trainer(tmp_path).fit(TerraMindTask(**TINY), datamodule=NYCDataModule(str(data), batch_size=2))
    assert spy.calls == 0


def test_index_pointing_at_missing_files_fails_before_training(dataset: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = _copy(dataset, tmp_path)
    chip = DatasetIndex.load(data).ok("train")[1]
    (data / chip.files["S1RTC"]).unlink()
    spy = _Spy(monkeypatch)
    with pytest.raises(DatasetFileError, match=r"missing files: .*S1RTC\.tif"):
        _trainer(tmp_path).fit(TerraMindTask(**TINY), datamodule=NYCDataModule(str(data), batch_size=2))
    assert spy.calls == 0
    with pytest.raises(DatasetFileError, match="build-dataset"):
        _ = NYCDataModule(str(tmp_path / "nowhere")).classes


def test_class_order_and_chip_size_must_match_the_model(dataset: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = _copy(dataset, tmp_path)
    index = DatasetIndex.load(data)
    classes = index.classes
    classes["lulc"] = list(reversed(classes["lulc"]))
    index.with_meta(classes=classes).save(data)
    spy = _Spy(monkeypatch)
    with pytest.raises(TrainingConfigError, match="names and order must match"):
        _trainer(tmp_path).fit(TerraMindTask(**TINY), datamodule=NYCDataModule(str(data), batch_size=2))
    with pytest.raises(TrainingConfigError, match="set model.tile_size: 64"):
        _trainer(tmp_path).fit(TerraMindTask(**{**TINY, "tile_size": 224}),
                               datamodule=NYCDataModule(str(dataset), batch_size=2))
    assert spy.calls == 0


# ----------------------------------------------------------------------------------------
# the datamodule
# ----------------------------------------------------------------------------------------
def test_d4_moves_inputs_and_masks_together() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 16, 16)).astype(np.float32)
    mask = (x[0] > 0).astype(np.int8)
    seen = set()
    for k in range(8):
        xa, ma = d4(x, k), d4(mask, k)
        np.testing.assert_array_equal(ma, (xa[0] > 0).astype(np.int8))
        seen.add(xa.tobytes())
    assert len(seen) == 8


def test_batches_use_the_runtime_standardisation(dataset: Path) -> None:
    task = TerraMindTask(**TINY)
    dm = NYCDataModule(str(dataset), batch_size=2, augment=False)
    bands, std = task.input_spec()
    dm.configure_inputs(bands=bands, standardise=std)
    ds = dm.dataset("train")
    raw, masks = ds.read(0)
    inputs, targets = ds[0]
    checked, valid, _ = validate_inputs(task.config, raw, None)
    expected = standardise(task.config, checked, valid)
    for m, v in inputs.items():
        np.testing.assert_array_equal(v.numpy(), expected[m])
    holes = ~np.isfinite(raw["S2L2A"]).all(axis=0)
    assert holes.any() and (inputs["S2L2A"].numpy()[:, holes] == 0).all()  # nodata -> 0 after standardising
    assert set(targets) == {"lulc", "buildings"} and targets["lulc"].dtype == torch.int64
    np.testing.assert_array_equal(targets["lulc"].numpy(), masks["lulc"])


# ----------------------------------------------------------------------------------------
# the task trains every head it has, with the optimizer built from the live module
# ----------------------------------------------------------------------------------------
def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> float:
    return sum(float((v.detach() - before[k]).abs().sum()) for k, v in module.named_parameters())


def test_two_heads_and_encoder_all_train(dataset: Path, tmp_path: Path) -> None:
    task = TerraMindTask(**TINY, lr_encoder=1e-4, lr_heads=1e-3)
    groups = task.param_groups()
    assert [g["name"] for g in groups] == ["encoder", "heads"]
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in task.network.parameters() if p.requires_grad)
    assert groups[0]["lr"] == 1e-4 and groups[1]["lr"] == 1e-3
    net = task.network
    before = {name: _snapshot(m) for name, m in (("encoder", net.encoder), ("neck", net.neck),
                                                 ("lulc", net.decoders["lulc"]), ("buildings", net.decoders["buildings"]),
                                                 ("lulc_head", net.heads["lulc"]),
                                                 ("buildings_head", net.heads["buildings"]))}
    _trainer(tmp_path).fit(task, datamodule=NYCDataModule(str(dataset), batch_size=2))
    mods = {"encoder": net.encoder, "neck": net.neck, "lulc": net.decoders["lulc"],
            "buildings": net.decoders["buildings"], "lulc_head": net.heads["lulc"],
            "buildings_head": net.heads["buildings"]}
    for name, m in mods.items():
        assert _changed(before[name], m) > 0, f"{name} did not train"
    w = task.losses["buildings"].weight
    assert w is not None and float(w[1]) > float(w[0])  # auto weights: buildings are the minority


@pytest.mark.parametrize("heads", [["lulc", "buildings"], ["lulc"], ["buildings"]])
def test_every_head_parameter_is_in_the_optimizer(dataset: Path, tmp_path: Path, heads: list[str]) -> None:
    """The pitfalls of the client's earlier draft: heads made after the optimizer (never trained) and a
    pyramid faked by interpolation. The optimizer Lightning actually steps must hold every parameter of
    every head, decoder and the learned pyramid."""
    from terramind_nyc.model.compat import terratorch_imports

    with terratorch_imports():
        from terratorch.models.necks import LearnedInterpolateToPyramidal

    task = TerraMindTask(**TINY, heads=heads)
    net = task.network
    pyramids = [m for m in net.neck if isinstance(m, LearnedInterpolateToPyramidal)]
    assert len(pyramids) == 1 and sum(p.numel() for p in pyramids[0].parameters()) > 0
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(task, datamodule=NYCDataModule(str(dataset), batch_size=2))
    (opt,) = trainer.optimizers
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    trainable = {id(p) for p in task.parameters() if p.requires_grad}
    assert in_opt == trainable and len(in_opt) == sum(len(g["params"]) for g in opt.param_groups)
    parts = {"pyramid": pyramids[0], **{f"decoder {h}": net.decoders[h] for h in heads},
             **{f"head {h}": net.heads[h] for h in heads}}
    for name, module in parts.items():
        params = list(module.parameters())
        assert params, name
        missing = [n for n, p in module.named_parameters() if id(p) not in in_opt]
        assert not missing, f"{name}: parameters {missing[:3]} are not in the optimizer"
    assert sorted(net.heads) == sorted(heads) and sorted(net.decoders) == sorted(heads)
    # optimizer state exists for every head parameter: the step really updated them
    assert all(id(p) in {id(q) for q in opt.state} for m in parts.values() for p in m.parameters())


def test_fp16_is_refused_before_training(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    cfg = Path(__file__).parents[1] / "training" / "configs" / "multihead_tiny.yaml"
    spy = _Spy(monkeypatch)
    assert main(["fit", "--config", str(cfg), f"--data.root={dataset}", "--trainer.precision=16-mixed",
                 f"--trainer.logger.init_args.save_dir={tmp_path}"]) == 2
    assert "fp16 training diverged" in capsys.readouterr().err and spy.calls == 0
    task = TerraMindTask(**TINY)
    task._trainer = SimpleNamespace(precision="16-mixed", datamodule=None)  # a GPU trainer, where Lightning keeps fp16
    with pytest.raises(TrainingConfigError, match="bf16-mixed"):
        task.setup("fit")


def test_frozen_encoder_and_single_head(dataset: Path, tmp_path: Path) -> None:
    task = TerraMindTask(**TINY, heads=["buildings"], freeze_encoder=True)
    assert list(task.network.heads) == ["buildings"] and list(task.losses) == ["buildings"]
    assert [g["name"] for g in task.param_groups()] == ["heads"]
    enc = _snapshot(task.network.encoder)
    head = _snapshot(task.network.heads["buildings"])
    _trainer(tmp_path).fit(task, datamodule=NYCDataModule(str(dataset), batch_size=2))
    assert _changed(enc, task.network.encoder) == 0
    assert _changed(head, task.network.heads["buildings"]) > 0


def test_lora_trains_the_factors_not_the_encoder_and_the_artifact_serves_them(dataset: Path, tmp_path: Path) -> None:
    from terramind_nyc.model.artifact import load_artifact

    task = TerraMindTask(**TINY, lora={"rank": 4, "alpha": 8})
    net = task.network
    assert task.freeze_encoder and all(not p.requires_grad for p in net.encoder.parameters())
    assert [g["name"] for g in task.param_groups()] == ["heads"]  # LoRA factors train with neck and heads
    enc, factors = _snapshot(net.encoder), _snapshot(net.lora)
    _trainer(tmp_path, max_steps=3).fit(task, datamodule=NYCDataModule(str(dataset), batch_size=2))
    assert _changed(enc, net.encoder) == 0 and _changed(factors, net.lora) > 0
    x = {"S2L2A": torch.randn(1, 12, 64, 64), "S1RTC": torch.randn(1, 2, 64, 64), "DEM": torch.randn(1, 1, 64, 64)}
    task.eval()
    task.on_validation_epoch_start()  # eval mode runs the merged copy, re-merged from the trained factors
    (merged,) = net.merged_encoders().values()
    spec = net.config.encoders[0].lora
    qkv = merged.encoder[0].attn.qkv.weight
    pair = net.lora[net.config.encoders[0].name][0]["attn_qkv"]
    want_w = net.encoder.encoder[0].attn.qkv.weight + spec.scale * pair.lora_B @ pair.lora_A
    assert torch.allclose(qkv, want_w, atol=1e-6) and not torch.equal(qkv, net.encoder.encoder[0].attn.qkv.weight)
    with torch.inference_mode():
        want = task(x)
    path = modelconfig.save_artifact(net.cpu(), task.config, tmp_path / "artifact")
    art = load_artifact(path)
    assert art.config.encoders[0].lora is not None and art.config.encoders[0].lora.rank == 4
    with torch.inference_mode():
        got = art.network(x)
    for h in ("lulc", "buildings"):
        assert torch.allclose(got[h], want[h], atol=1e-4)
    with pytest.raises(TrainingConfigError, match="rank"):
        TerraMindTask(**TINY, lora={"rank": 0})


# ----------------------------------------------------------------------------------------
# the CLI entry points
# ----------------------------------------------------------------------------------------
CONFIGS = sorted((Path(__file__).parents[1] / "training" / "configs").glob("*.yaml"))


def test_shipped_configs_parse(capsys: pytest.CaptureFixture[str]) -> None:
    assert {p.name for p in CONFIGS} >= {"multihead_base.yaml", "lulc_base.yaml", "buildings_base.yaml",
                                         "multihead_tiny.yaml", "lulc_tiny.yaml", "buildings_tiny.yaml"}
    for path in CONFIGS:
        with pytest.raises(SystemExit) as exc:
            main(["fit", "--config", str(path), "--print_config"])
        assert exc.value.code in (0, None)
        out = capsys.readouterr().out
        assert "terramind_v1_" in out and "heads:" in out
        if "base" in path.name:
            assert "bf16-mixed" in out


def test_cli_fit_then_test_and_a_bad_head(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = Path(__file__).parents[1] / "training" / "configs" / "multihead_tiny.yaml"
    common = ["--config", str(cfg), f"--data.root={dataset}", "--data.batch_size=2", "--model.tile_size=64",
              "--model.decoder_channels=[32, 16, 16, 8]", f"--trainer.logger.init_args.save_dir={tmp_path}",
              "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
              "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=1"]
    assert main(["fit", *common]) == 0
    run = tmp_path / "multihead_tiny"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("val/lulc_mIoU", "val/buildings_IoU_building", "val/lulc_IoU_water", "val/buildings_F1",
                "val/lulc_pixel_acc", "val/loss", "train/loss", "lr-AdamW/encoder", "lr-AdamW/heads"):
        assert key in header
    assert main(["test", *common, f"--ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                 "--trainer.logger.init_args.version=test"]) == 0
    header = (run / "test" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "test/lulc_mIoU" in header and "test/buildings_IoU_building" in header
    capsys.readouterr()
    assert main(["fit", *common, "--model.heads=[lulc, roads]"]) == 2
    assert "unknown head(s) ['roads']" in capsys.readouterr().err


def test_two_timesteps_flow_from_files_to_the_temporal_encoder(dataset: Path, tmp_path: Path) -> None:
    data = _copy(dataset, tmp_path)
    index = DatasetIndex.load(data)
    for c in index.ok():
        for m in ("S2L2A", "S1RTC", "DEM"):
            a = read_raster(data / c.files[m])
            write_raster(data / c.files[m], np.concatenate([a, a + 1]), crs=c.crs or "", transform=c.transform or (),
                         nodata=float("nan"))
    index.with_meta(timesteps=2).save(data)
    task = TerraMindTask(**TINY, timesteps=2)
    dm = NYCDataModule(str(data), batch_size=2, timesteps=2)
    dm.configure_inputs(bands=task.input_spec()[0], standardise=task.input_spec()[1])
    x, _ = dm.dataset("train")[0]
    assert tuple(x["S2L2A"].shape) == (12, 2, 64, 64) and tuple(x["DEM"].shape) == (1, 2, 64, 64)
    _trainer(tmp_path, max_steps=1).fit(task, datamodule=dm)
    with pytest.raises(TrainingConfigError, match="timestep"):
        _ = NYCDataModule(str(data), timesteps=1).classes


def test_pretrained_encoder_weights_load_from_a_local_file(tmp_path: Path) -> None:
    """A TerraMind .pt file on disk stands in for the hub download (terratorch's ``ckpt_path``)."""
    donor = TerraMindTask(**TINY)
    state = {k: v + 0.5 for k, v in donor.network.encoder.state_dict().items()}  # distinct from a fresh init
    path = tmp_path / "TerraMind_v1_tiny.pt"
    torch.save(state, path)
    task = TerraMindTask(**{**TINY, "pretrained": str(path)})
    loaded = task.network.encoder.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v)


def test_synthetic_dataset_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synthetic-dataset", "--out", str(tmp_path / "syn"), "--chips", "4", "--size", "32"]) == 0
    index = DatasetIndex.load(tmp_path / "syn")
    assert len(index.ok()) == 4 and index.meta["tile_size"] == 32
    index.check_files(tmp_path / "syn")
    assert main(["synthetic-dataset", "--out", str(tmp_path / "bad"), "--size", "40"]) == 2
    assert "multiple of 16" in capsys.readouterr().err
