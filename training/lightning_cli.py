"""``python -m training fit|validate|test --config ...``: LightningCLI over the task and datamodule.

The YAML files in ``training/configs/`` follow the LightningCLI / TerraTorch layout
(``seed_everything``, ``trainer``, ``model``, ``data``). A run directory is the trainer's log
directory: it holds ``config.yaml`` (saved by LightningCLI), ``metrics.csv`` and
``checkpoints/best.ckpt`` (lowest ``val/loss``); ``gate`` and ``export`` take it as ``RUN``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from terramind_nyc.model.compat import ensure_torchvision_importable

ensure_torchvision_importable()

from lightning.pytorch.cli import LightningCLI

from .data import NYCDataModule
from .errors import TrainingConfigError
from .task import FP16_PRECISIONS, TerraMindTask

__all__ = ["TrainingCLI", "run_lightning_cli"]


class TrainingCLI(LightningCLI):
    """LightningCLI with the project's defaults (seed 42, bf16-mixed, config saved in the run).

    ``fit`` with an fp16 precision is refused before anything is built (fp16 diverged to NaN in
    an earlier run of this model; Lightning on CPU would silently turn it into bf16, on GPU it
    would run it).
    """

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.set_defaults({"trainer.precision": "bf16-mixed"})

    def before_instantiate_classes(self) -> None:
        if self.subcommand != "fit":
            return
        precision = str(self.config["fit"]["trainer"].get("precision"))
        if precision in FP16_PRECISIONS:
            raise TrainingConfigError(
                f"trainer.precision {precision!r}: fp16 training diverged to NaN in an earlier run of this model; "
                "use bf16-mixed (the default), or 32-true on GPUs without bfloat16"
            )


def run_lightning_cli(argv: Sequence[str], *, run: bool = True) -> TrainingCLI:
    """Run one LightningCLI subcommand (``fit``, ``validate``, ``test``) with ``argv``.

    ``run=False``: ``argv`` has no subcommand; the model, datamodule and trainer are built and
    returned unrun (``distill`` fills the datamodule's teacher cache, then calls ``trainer.fit``).
    """
    saved = sys.argv
    sys.argv = saved[:1]  # the arguments are ``argv``, not this process's command line
    try:
        return TrainingCLI(
            TerraMindTask,
            NYCDataModule,
            args=list(argv),
            seed_everything_default=42,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            run=run,
        )
    finally:
        sys.argv = saved
