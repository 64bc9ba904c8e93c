"""``python -m training bench-fit``: a bounded fit of a two-head model on synthetic chips, timed.

Reports training iterations per second (after ``warmup`` steps) and peak memory (GPU: torch's
``max_memory_allocated`` / ``max_memory_reserved``; CPU: the process's peak RSS), for comparison
with the published TerraMind-base-Flood reproduction on one AMD MI300X (4.69 it/s at batch 16 of
4 timesteps x 256 px, fp16-mixed, ~30 GB peak; docs/training.md). Uses the real datamodule, task and Trainer; weights are random
(``pretrained: false``) since only speed and memory are measured.
"""

from __future__ import annotations

import logging
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["BenchResult", "bench_fit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchResult:
    """Figures of one bounded fit."""

    encoder: str
    """TerraMind encoder."""
    device: str
    """Device name (GPU model or ``cpu``)."""
    precision: str
    """Lightning precision."""
    batch_size: int
    """Chips per step."""
    tile_size: int
    """Chip side in pixels."""
    steps: int
    """Steps timed (after warm-up)."""
    it_per_s: float
    """Training iterations per second over the timed steps."""
    peak_allocated_gb: float | None
    """GPU: peak memory allocated by tensors (GiB); None on CPU."""
    peak_reserved_gb: float | None
    """GPU: peak memory reserved by the caching allocator (GiB); None on CPU."""
    peak_rss_gb: float
    """Peak resident memory of the process (GiB)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_fit(*, encoder: str = "terramind_v1_base", batch_size: int = 16, steps: int = 30, warmup: int = 5,
              precision: str = "bf16-mixed", tile_size: int = 224, device: str = "auto",
              workdir: str | Path | None = None, num_workers: int = 2) -> BenchResult:
    """Run ``warmup + steps`` training steps and time the last ``steps``."""
    from terramind_nyc.model.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import lightning.pytorch as L
    import torch

    from . import modelconfig
    from .data import NYCDataModule
    from .synthetic import write_synthetic_dataset
    from .task import TerraMindTask

    accel = "gpu" if (device == "auto" and torch.cuda.is_available()) or device == "cuda" else "cpu"

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.t0: float | None = None
            self.n = 0

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            if trainer.global_step == warmup and self.t0 is None:
                if accel == "gpu":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.t0 is not None:
                self.n += 1

    tmp = tempfile.TemporaryDirectory(prefix="terramind-nyc-bench-") if workdir is None else None
    work = Path(tmp.name if tmp is not None else str(workdir))
    try:
        classes, bands = modelconfig.default_classes_and_bands()
        n_chips = max(2 * batch_size, 16)
        data = write_synthetic_dataset(work / "data", n_chips=n_chips, size=tile_size, class_names=classes,
                                       bands=bands, fractions={"train": 0.8, "val": 0.1, "test": 0.1})
        task = TerraMindTask(encoder=encoder, pretrained=False, tile_size=tile_size, early_stopping_patience=None)
        dm = NYCDataModule(str(data), batch_size=batch_size, num_workers=num_workers, pin_memory=accel == "gpu")
        timer = Timer()
        trainer = L.Trainer(accelerator=accel, devices=1, precision=precision, max_steps=warmup + steps,  # type: ignore[arg-type]
                            max_epochs=-1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                            default_root_dir=str(work))
        trainer.fit(task, datamodule=dm)
        if accel == "gpu":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - (timer.t0 or time.perf_counter())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024**2 if sys.platform != "darwin" else 1024**3)
        gpu = accel == "gpu"
        return BenchResult(
            encoder=encoder, device=torch.cuda.get_device_name(0) if gpu else "cpu", precision=precision,
            batch_size=batch_size, tile_size=tile_size, steps=timer.n,
            it_per_s=timer.n / elapsed if elapsed > 0 else float("nan"),
            peak_allocated_gb=torch.cuda.max_memory_allocated() / 1024**3 if gpu else None,
            peak_reserved_gb=torch.cuda.max_memory_reserved() / 1024**3 if gpu else None,
            peak_rss_gb=rss,
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
