"""``python -m training fit|validate|test --config ...``: LightningCLI over the task and datamodule.

The YAML files in ``training/configs/`` follow the LightningCLI / TerraTorch layout
(``seed_everything``, ``trainer``, ``model``, ``data``). A run directory is the trainer's log
directory: it holds ``config.yaml`` (saved by LightningCLI), ``metrics.csv`` and
``checkpoints/best.ckpt`` (lowest ``val/loss``); ``gate`` and ``export`` take it as ``RUN``.
"""

from __future__ import annotations

from collections.abc import Sequence

from terramind_nyc._compat import ensure_torchvision_importable

ensure_torchvision_importable()

from lightning.pytorch.cli import LightningCLI  # noqa: E402

from .data import NYCDataModule  # noqa: E402
from .task import TerraMindTask  # noqa: E402

__all__ = ["TrainingCLI", "run_lightning_cli"]


class TrainingCLI(LightningCLI):
    """LightningCLI with the project's defaults (seed 42, bf16-mixed, config saved in the run)."""

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.set_defaults({"trainer.precision": "bf16-mixed"})


def run_lightning_cli(argv: Sequence[str]) -> TrainingCLI:
    """Run one LightningCLI subcommand (``fit``, ``validate``, ``test``) with ``argv``."""
    return TrainingCLI(
        TerraMindTask,
        NYCDataModule,
        args=list(argv),
        seed_everything_default=42,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
