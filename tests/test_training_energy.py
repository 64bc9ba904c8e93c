"""Energy estimates (training.energy): the arithmetic, the settings, the meter and the Lightning callback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from terramind_nyc import Settings, SettingsError
from training.energy import (
    CPU_KW_PER_CORE,
    DEVICE_POWER_KW,
    ENERGY_FILE,
    UNKNOWN_GPU_KW,
    EnergyCallback,
    EnergyEstimate,
    EnergyMeter,
    detect_device,
    estimate,
    read_energy,
    total,
)
from training.errors import TrainingConfigError, TrainingError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

#: The defaults, whatever TERRAMIND_NYC_* variables the machine running the tests has.
DEFAULTS = Settings.from_env({})


def test_the_reference_card_arithmetic() -> None:
    e = estimate("fit", 6 * 3600, kind="gpu", device="AMD Instinct MI300X", settings=DEFAULTS)
    assert e.device_hours == pytest.approx(6.0) and e.power_kw == 0.75 and e.pue == 1.5
    assert e.kwh == pytest.approx(6.75) and e.kg_co2e == pytest.approx(6.75 * 0.4)
    assert e.power_source == "table: MI300X" and e.kind == "gpu" and e.devices == 1
    assert e.line() == "6.00 GPU-hours x 0.75 kW x PUE 1.5 = 6.75 kWh, 2.70 kg CO2e (AMD Instinct MI300X, fit)"


def test_settings_override_power_pue_and_grid() -> None:
    s = Settings(energy_device_kw=0.5, energy_pue=1.2, energy_grid_kg_co2e_per_kwh=0.1)
    e = estimate("distill", 7200, kind="gpu", device="AMD Instinct MI300X", devices=2, settings=s)
    assert e.power_source == "setting energy_device_kw" and e.power_kw == 0.5
    assert e.device_hours == pytest.approx(4.0) and e.kwh == pytest.approx(4 * 0.5 * 1.2)
    assert e.kg_co2e == pytest.approx(2.4 * 0.1) and e.grid_kg_co2e_per_kwh == 0.1
    assert e.line().endswith("(2 x AMD Instinct MI300X, distill)")


def test_environment_variables_set_the_energy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERRAMIND_NYC_ENERGY_DEVICE_KW", "0.25")
    monkeypatch.setenv("TERRAMIND_NYC_ENERGY_PUE", "1.1")
    monkeypatch.setenv("TERRAMIND_NYC_ENERGY_GRID_KG_CO2E_PER_KWH", "0.2")
    e = estimate("fit", 3600, kind="gpu", device="NVIDIA H100 80GB HBM3")  # settings=None: from the environment
    assert (e.power_kw, e.pue, e.grid_kg_co2e_per_kwh) == (0.25, 1.1, 0.2)
    assert e.kwh == pytest.approx(0.275) and e.kg_co2e == pytest.approx(0.055)
    with pytest.raises(SettingsError, match="TERRAMIND_NYC_ENERGY_PUE"):
        Settings.from_env({"TERRAMIND_NYC_ENERGY_PUE": "0.9"})


@pytest.mark.parametrize("kw", [{"energy_device_kw": -0.1}, {"energy_device_kw": float("nan")},
                                {"energy_pue": 0.99}, {"energy_pue": 0}, {"energy_grid_kg_co2e_per_kwh": -1},
                                {"energy_grid_kg_co2e_per_kwh": float("inf")}])
def test_bad_energy_settings_raise(kw: dict[str, float]) -> None:
    with pytest.raises(SettingsError, match=f"`{next(iter(kw))}` must be a number"):
        Settings(**kw)


def test_energy_setting_defaults() -> None:
    s = Settings()
    assert (s.energy_device_kw, s.energy_pue, s.energy_grid_kg_co2e_per_kwh) == (0.0, 1.5, 0.4)
    assert Settings(energy_pue=1).energy_pue == 1.0  # the bounds are allowed
    assert Settings(energy_grid_kg_co2e_per_kwh=0).energy_grid_kg_co2e_per_kwh == 0.0


@pytest.mark.parametrize(("name", "key"), [("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA A100-SXM4-80GB", "A100"),
                                           ("NVIDIA A10G", "A10"), ("NVIDIA L40S", "L40S"), ("NVIDIA L40", "L40"),
                                           ("Tesla T4", "T4"), ("NVIDIA H200", "H200"),
                                           ("NVIDIA GeForce RTX 4090", "RTX 4090"), ("AMD Instinct MI250X", "MI250"),
                                           ("amd instinct mi300x", "MI300X")])
def test_the_table_matches_the_longest_name_in_the_device(name: str, key: str) -> None:
    e = estimate("fit", 3600, kind="gpu", device=name, settings=DEFAULTS)
    assert e.power_source == f"table: {key}" and e.power_kw == DEVICE_POWER_KW[key]


def test_an_unknown_gpu_counts_the_fallback_power(caplog: pytest.LogCaptureFixture) -> None:
    e = estimate("fit", 3600, kind="gpu", device="Mystery Accelerator 9000", settings=DEFAULTS)
    assert e.power_kw == UNKNOWN_GPU_KW and e.power_source.startswith("unknown GPU")
    assert "energy_device_kw" in caplog.text


def test_the_cpu_rule_counts_core_hours_and_ignores_the_gpu_setting() -> None:
    s = Settings(energy_device_kw=0.7)
    e = estimate("verify", 1800, kind="cpu", device="AMD EPYC 9654", devices=16, settings=s)
    assert e.power_kw == CPU_KW_PER_CORE == 0.01 and e.power_source == "cpu: 10 W per core"
    assert e.device_hours == pytest.approx(8.0) and e.kwh == pytest.approx(8 * 0.01 * 1.5)
    assert e.line() == "8.00 core-hours x 0.01 kW x PUE 1.5 = 0.12 kWh, 0.048 kg CO2e (AMD EPYC 9654, 16 cores, verify)"


@pytest.mark.parametrize("kw", [{"seconds": -1}, {"seconds": float("nan")}, {"seconds": float("inf")},
                                {"seconds": True}, {"seconds": "60"}, {"devices": 0}, {"devices": 1.5},
                                {"devices": True}, {"kind": "tpu"}, {"stage": ""}, {"device": ""}, {"device": None}])
def test_bad_inputs_raise(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"stage": "fit", "seconds": 60.0, "kind": "gpu", "device": "NVIDIA H100", "devices": 1}
    args.update(kw)
    with pytest.raises(TrainingConfigError) as info:
        estimate(args.pop("stage"), args.pop("seconds"), settings=DEFAULTS, **args)
    assert isinstance(info.value, ValueError)  # also a ValueError


def test_to_dict_is_json_safe_and_round_trips() -> None:
    e = estimate("fit", 12.3456789, kind="gpu", device="NVIDIA H100", devices=4, settings=DEFAULTS)
    d = json.loads(json.dumps(e.to_dict()))
    assert d["seconds"] == 12.346 and d["devices"] == 4 and d["kind"] == "gpu"
    back = EnergyEstimate.from_dict({**d, "line": e.line()})
    assert back.kwh == pytest.approx(e.kwh, rel=1e-5) and back.stage == "fit" and back.device == "NVIDIA H100"


def test_detect_device_on_the_cpu() -> None:
    kind, name, count = detect_device("cpu")
    assert kind == "cpu" and isinstance(name, str) and name and count == torch.get_num_threads()
    kind2, _, _ = detect_device(torch.device("cpu"))
    assert kind2 == "cpu"


def test_the_meter_times_its_block() -> None:
    meter = EnergyMeter("verify", device="cpu", settings=DEFAULTS)
    with pytest.raises(TrainingError, match="with"):
        meter.result  # noqa: B018 - not known before the block ends
    with meter as m:
        time.sleep(0.05)
    r = m.result
    assert r.stage == "verify" and r.kind == "cpu" and r.devices == torch.get_num_threads()
    assert 0.05 <= r.seconds < 5 and r.kwh == pytest.approx(r.device_hours * CPU_KW_PER_CORE * 1.5)


def test_the_meter_records_a_block_that_raises() -> None:
    meter = EnergyMeter("verify", device="cpu", settings=DEFAULTS)
    with pytest.raises(RuntimeError, match="boom"), meter:
        raise RuntimeError("boom")
    assert meter.result.seconds >= 0


def test_read_energy_and_total(tmp_path: Path) -> None:
    assert read_energy(tmp_path) == [] and total([])["kwh"] == 0
    a = estimate("fit", 3600, kind="gpu", device="AMD Instinct MI300X", settings=DEFAULTS)
    b = estimate("verify", 360, kind="cpu", device="Some CPU", devices=10, settings=DEFAULTS)
    (tmp_path / ENERGY_FILE).write_text(json.dumps({"stages": [a.to_dict(), b.to_dict()]}))
    back = read_energy(tmp_path)
    assert [e.stage for e in back] == ["fit", "verify"] and read_energy(tmp_path / ENERGY_FILE) == back
    t = total(back)
    assert t["stages"] == ["fit", "verify"] and t["seconds"] == 3960
    assert t["gpu_hours"] == pytest.approx(1.0) and t["core_hours"] == pytest.approx(1.0)
    assert t["kwh"] == pytest.approx(1.125 + 0.015) and t["kg_co2e"] == pytest.approx(1.14 * 0.4)
    (tmp_path / ENERGY_FILE).write_text("{not json")
    with pytest.raises(TrainingConfigError, match="not an energy record"):
        read_energy(tmp_path)


# ----------------------------------------------------------------------------------------
# The callback, through a real (tiny) Lightning fit on the CPU
# ----------------------------------------------------------------------------------------
def _fit(tmp_path: Path, callback: EnergyCallback) -> None:
    import lightning.pytorch as L
    from lightning.pytorch.loggers import CSVLogger

    class One(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            loss = ((batch - self.w) ** 2).mean()
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.ones(4, 1), batch_size=2)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, default_root_dir=str(tmp_path),
                        logger=CSVLogger(str(tmp_path), name="", version=""), callbacks=[callback],
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        log_every_n_steps=1)
    trainer.fit(One(), data)
    assert Path(trainer.log_dir or "") == tmp_path


def test_the_callback_writes_energy_json_and_appends_a_second_stage(tmp_path: Path) -> None:
    first = EnergyCallback(stage="fit", settings=DEFAULTS)
    _fit(tmp_path, first)
    assert first.result is not None and first.result.kind == "cpu" and first.result.seconds > 0
    written = json.loads((tmp_path / ENERGY_FILE).read_text())
    assert [s["stage"] for s in written["stages"]] == ["fit"]
    assert read_energy(tmp_path)[0].kwh == pytest.approx(first.result.kwh, rel=1e-5)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in header and "kwh" not in header  # nothing logged to the Lightning logger

    second = EnergyCallback(stage="distill", settings=Settings(energy_pue=1.2))
    _fit(tmp_path, second)
    stages = read_energy(tmp_path)
    assert [e.stage for e in stages] == ["fit", "distill"] and stages[1].pue == 1.2
    assert total(stages)["stages"] == ["fit", "distill"]
