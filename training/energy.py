"""Energy and carbon estimates of each training stage (fit, distill, verify).

An estimate from wall time and nominal power, as model cards report it, not a measurement::

    kWh = device-hours x kW per device x PUE;    kg CO2e = kWh x grid factor (kg CO2e per kWh)

Device-hours are GPU-hours (wall hours x GPUs), or core-hours (wall hours x threads) on a CPU. A GPU's
power is the ``energy_device_kw`` setting, else its model's board power (:data:`DEVICE_POWER_KW`), else
:data:`UNKNOWN_GPU_KW`; a CPU core counts :data:`CPU_KW_PER_CORE`. PUE and grid factor are the settings
``energy_pue`` and ``energy_grid_kg_co2e_per_kwh`` (docs/settings.md). The reference energy card, six hours
on one MI300X: ``6.00 GPU-hours x 0.75 kW x PUE 1.5 = 6.75 kWh, 2.70 kg CO2e`` (default grid factor 0.4).

:class:`EnergyCallback` appends a Lightning fit's estimate to the run's ``energy.json`` (``{"stages": [...]}``);
:func:`read_energy` and :func:`total` read it for the artifact and its model card; :class:`EnergyMeter` times
any other block (verification).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, Self

import torch

from terramind_nyc.model.compat import ensure_torchvision_importable
from terramind_nyc.model.precision import cpu_model
from terramind_nyc.settings import Settings

from .errors import TrainingConfigError, TrainingError
from .layout import write_json_atomic

ensure_torchvision_importable()
import lightning.pytorch as L

__all__ = ["CPU_KW_PER_CORE", "DEVICE_POWER_KW", "ENERGY_FILE", "UNKNOWN_GPU_KW", "EnergyCallback", "EnergyEstimate",
           "EnergyMeter", "detect_device", "estimate", "read_energy", "total"]

log = logging.getLogger(__name__)

Kind = Literal["gpu", "cpu"]
#: The file in a run directory that holds its stages' estimates.
ENERGY_FILE = "energy.json"
#: Nominal board power in kW by a substring of the GPU's name (longest match wins, case ignored).
#: Vendor TDP / TBP figures (AMD and NVIDIA data sheets, SXM / OAM forms where there are several);
#: sustained training draws less, so the estimate leans high.
DEVICE_POWER_KW: dict[str, float] = {
    "MI300X": 0.75, "MI250": 0.56, "H200": 0.7, "H100": 0.7, "A100": 0.4, "L40S": 0.35, "L40": 0.3, "A10": 0.15,
    "V100": 0.3, "T4": 0.07, "RTX 4090": 0.45}
#: A GPU the table does not name: a mid-range data-centre board (set ``energy_device_kw`` instead).
UNKNOWN_GPU_KW = 0.3
#: A rough 10 W per CPU core (thread) in use, package and memory share together.
CPU_KW_PER_CORE = 0.01


def _sig(x: float) -> float:  # 6 significant digits
    return float(f"{x:.6g}")


def _num(x: float) -> str:  # 2 decimals, or 2 significant digits below 0.1
    return f"{x:.2f}" if x == 0 or x >= 0.1 else f"{x:.2g}"


@dataclass(frozen=True)
class EnergyEstimate:
    """The estimated energy and emissions of one stage."""

    stage: str
    """What ran: ``fit``, ``distill``, ``verify``, ... (``fit (interrupted)`` for a fit that raised)."""
    device: str
    """Human name of the device (``AMD Instinct MI300X``, the CPU model)."""
    kind: Kind
    """``gpu`` or ``cpu``."""
    devices: int
    """GPUs used, or CPU cores (threads) for kind ``cpu``."""
    seconds: float
    """Wall-clock duration of the stage, seconds."""
    device_hours: float
    """``seconds / 3600 x devices``: GPU-hours, or core-hours for kind ``cpu``."""
    power_kw: float
    """Power of one device (one GPU, one core), kW."""
    power_source: str
    """Where ``power_kw`` came from: ``setting energy_device_kw``, ``table: H100``, ``cpu: 10 W per core``, ..."""
    pue: float
    """Data-centre power usage effectiveness applied (>= 1)."""
    grid_kg_co2e_per_kwh: float
    """Grid carbon intensity applied, kg CO2e per kWh."""
    kwh: float
    """``device_hours x power_kw x pue``, kWh."""
    kg_co2e: float
    """``kwh x grid_kg_co2e_per_kwh``, kg CO2e."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: seconds to the millisecond, derived figures to 6 significant digits."""
        d = asdict(self) | {"seconds": round(self.seconds, 3)}
        return d | {k: _sig(d[k]) for k in ("device_hours", "power_kw", "kwh", "kg_co2e")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnergyEstimate:
        """The estimate :meth:`to_dict` wrote (extra keys such as ``line`` are ignored)."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def line(self) -> str:
        """One line for a card: ``6.00 GPU-hours x 0.75 kW x PUE 1.5 = 6.75 kWh, 2.70 kg CO2e (MI300X, fit)``."""
        unit = "GPU-hours" if self.kind == "gpu" else "core-hours"
        where = (f"{self.devices} x {self.device}" if self.devices > 1 else self.device) if self.kind == "gpu" \
            else f"{self.device}, {self.devices} cores"
        return (f"{_num(self.device_hours)} {unit} x {_num(self.power_kw)} kW x PUE {self.pue:g} = {_num(self.kwh)} "
                f"kWh, {_num(self.kg_co2e)} kg CO2e ({where}, {self.stage})")


def _power(kind: str, device: str, s: Settings) -> tuple[float, str]:
    if kind == "cpu":
        return CPU_KW_PER_CORE, f"cpu: {CPU_KW_PER_CORE * 1000:g} W per core"
    if s.energy_device_kw > 0:
        return s.energy_device_kw, "setting energy_device_kw"
    for key in sorted(DEVICE_POWER_KW, key=len, reverse=True):
        if key.lower() in device.lower():
            return DEVICE_POWER_KW[key], f"table: {key}"
    log.warning("no nominal power for GPU %r; counting %g kW (set energy_device_kw)", device, UNKNOWN_GPU_KW)
    return UNKNOWN_GPU_KW, f"unknown GPU: {UNKNOWN_GPU_KW:g} kW"


def estimate(stage: str, seconds: float, *, kind: Kind, device: str, devices: int = 1,
             settings: Settings | None = None) -> EnergyEstimate:
    """The estimate of ``stage`` having run ``seconds`` on ``devices`` GPUs (or CPU cores) named ``device``."""
    for name, v in (("stage", stage), ("device", device)):
        if not isinstance(v, str) or not v.strip():
            raise TrainingConfigError(f"{name} must be a non-empty string ('fit', 'NVIDIA H100'), got {v!r}")
    if kind not in ("gpu", "cpu"):
        raise TrainingConfigError(f"kind must be 'gpu' or 'cpu', got {kind!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not math.isfinite(seconds) or seconds < 0:
        raise TrainingConfigError(f"seconds must be a finite number >= 0, got {seconds!r}")
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise TrainingConfigError(f"devices must be a whole number >= 1 (GPUs, or CPU cores), got {devices!r}")
    s = Settings.resolve(settings)
    kw, source = _power(kind, device, s)
    hours = float(seconds) / 3600 * devices
    kwh = hours * kw * s.energy_pue
    return EnergyEstimate(stage=stage, device=device, kind=kind, devices=devices, seconds=float(seconds),
                          device_hours=hours, power_kw=kw, power_source=source, pue=s.energy_pue,
                          grid_kg_co2e_per_kwh=s.energy_grid_kg_co2e_per_kwh, kwh=kwh,
                          kg_co2e=kwh * s.energy_grid_kg_co2e_per_kwh)


def detect_device(device: Any = None) -> tuple[Kind, str, int]:
    """``(kind, name, count)`` of a torch device (None: the first GPU when there is one, else the CPU).

    A CUDA device (ROCm reports as CUDA) is one GPU by its torch name; the CPU is its model name with
    torch's intra-op thread count as the cores in use.
    """
    dev = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        return "gpu", torch.cuda.get_device_name(dev.index if dev.index is not None else torch.cuda.current_device()), 1
    return "cpu", cpu_model() or "CPU", max(1, torch.get_num_threads())


class EnergyMeter:
    """Times a block and estimates its energy: ``with EnergyMeter("verify", device="cpu") as m: ...``,
    then ``m.result`` (an :class:`EnergyEstimate`, also when the block raised)."""

    def __init__(self, stage: str, *, device: Any = None, settings: Settings | None = None) -> None:
        self.stage, self.device, self.settings = stage, device, Settings.resolve(settings)
        self._result: EnergyEstimate | None = None
        self._t0 = 0.0

    def __enter__(self) -> Self:
        self._kind, self._name, self._count = detect_device(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._result = estimate(self.stage, time.perf_counter() - self._t0, kind=self._kind, device=self._name,
                                devices=self._count, settings=self.settings)

    @property
    def result(self) -> EnergyEstimate:
        """The estimate of the finished block."""
        if self._result is None:
            raise TrainingError("EnergyMeter.result is known once its `with` block has ended")
        return self._result


class EnergyCallback(L.Callback):
    """Estimates a fit's energy and appends it to the run's ``energy.json`` (``trainer.log_dir``); ``result`` holds it.

    From ``on_fit_start`` to ``on_fit_end`` (a fit that raises: ``<stage> (interrupted)``), on all the trainer's GPUs;
    nothing goes to the Lightning logger, so ``metrics.csv`` keeps its columns."""

    def __init__(self, stage: str = "fit", settings: Settings | None = None) -> None:
        self.stage, self.settings = stage, Settings.resolve(settings)
        self.result: EnergyEstimate | None = None
        self._t0: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        kind, name, count = detect_device(pl_module.device)
        if kind == "gpu":
            count = max(1, int(trainer.num_devices) * int(trainer.num_nodes))
        self._device, self._t0 = (kind, name, count), time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, self.stage)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._finish(trainer, f"{self.stage} (interrupted)")

    def _finish(self, trainer: L.Trainer, stage: str) -> None:
        if self._t0 is None:  # not started, or already recorded
            return
        kind, name, count = self._device
        self.result = estimate(stage, time.perf_counter() - self._t0, kind=kind, device=name, devices=count,
                               settings=self.settings)
        self._t0 = None
        run = trainer.log_dir or trainer.default_root_dir
        if trainer.is_global_zero and run:
            try:
                stages = [e.to_dict() for e in read_energy(run)]
            except TrainingConfigError as exc:
                log.warning("%s; starting it afresh", exc)
                stages = []
            write_json_atomic(Path(run) / ENERGY_FILE, {"stages": [*stages, self.result.to_dict()]})
            log.info("energy of %s: %s", stage, self.result.line())


def read_energy(run: str | Path) -> list[EnergyEstimate]:
    """The estimates in ``energy.json`` of run directory ``run`` (or that file itself); [] when there is none."""
    path = Path(run) if Path(run).is_file() else Path(run) / ENERGY_FILE
    if not path.is_file():
        return []
    try:
        return [EnergyEstimate.from_dict(d) for d in json.loads(path.read_text())["stages"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise TrainingConfigError(f"{path} is not an energy record ({type(exc).__name__}: {exc}); "
                                  "delete it (the stages it held are then not counted)") from None


def total(estimates: list[EnergyEstimate]) -> dict[str, Any]:
    """The sums of ``estimates`` for a model card: stages, seconds, device-, GPU- and core-hours, kWh, kg CO2e."""
    return {"stages": [e.stage for e in estimates], "seconds": round(sum(e.seconds for e in estimates), 3),
            "device_hours": _sig(sum(e.device_hours for e in estimates)),
            "gpu_hours": _sig(sum(e.device_hours for e in estimates if e.kind == "gpu")),
            "core_hours": _sig(sum(e.device_hours for e in estimates if e.kind == "cpu")),
            "kwh": _sig(sum(e.kwh for e in estimates)), "kg_co2e": _sig(sum(e.kg_co2e for e in estimates))}
