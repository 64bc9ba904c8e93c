"""The LightningModule: terramind_nyc's two-head network, per-head losses and metrics.

``heads`` selects both heads (the two-head model) or one (a single-task baseline) with the same
code: the network is built from the model config restricted to those heads. The network (and so
every head) is built in ``__init__``, before Lightning calls ``configure_optimizers``, whose
parameter groups are taken from the live module: encoder parameters at ``lr_encoder`` (absent
when the encoder is frozen), neck and heads at ``lr_heads``. The feature pyramid is the neck's
learned one (terramind_nyc.model.network). Loss = sum over heads of ``loss_weights[head] * loss[head]``.

Distillation (batches carrying a teacher cache's ``soft_<head>``, :mod:`training.data`): per head
``loss[head] = distill.weight * soft_ce(student, teacher; T) + label_weight * label_loss`` with
``distill = {temperature: T, weight, label_weight}`` (``label_weight`` null: 1 when the datamodule
feeds labels, 0 when it does not); ``<stage>/<head>_agreement`` logs the share of pixels where the
student's argmax equals the teacher's.

Logged: ``train/loss``, ``train/<head>_loss``, ``val/loss``, ``val/<head>_loss`` and per head
``val/<head>_mIoU``, ``val/<head>_IoU_<class>``, ``val/<head>_F1``, ``val/<head>_pixel_acc``
(``test/`` likewise). ``configure_callbacks`` adds the best-checkpoint (lowest ``val/loss``,
``checkpoints/best.ckpt``), early stopping on ``val/loss``, a learning-rate monitor and the energy
estimate of the fit (``energy.json`` in the run, :mod:`training.energy`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from terramind_nyc.model.compat import ensure_torchvision_importable
from terramind_nyc.model.precision import fp32_matmul_precision

from . import modelconfig
from .errors import TrainingConfigError
from .losses import auto_class_weights, build_loss, soft_cross_entropy
from .metrics import HeadMetrics

ensure_torchvision_importable()
import lightning.pytorch as L

__all__ = ["DEFAULT_LOSSES", "DISTILL_DEFAULTS", "FP16_PRECISIONS", "TerraMindTask"]

log = logging.getLogger(__name__)

#: Lightning precisions refused for training (fp16 diverged; bf16-mixed is the default).
FP16_PRECISIONS = ("16-mixed", "16-true", "16", "half")

DEFAULT_LOSSES: dict[str, dict[str, Any]] = {
    "lulc": {"name": "ce"},
    "buildings": {"name": "weighted_ce", "weights": "auto"},
}

#: Distillation defaults (``model.distill``): temperature, weight of the teacher term, weight of the labels.
DISTILL_DEFAULTS: dict[str, Any] = {"temperature": 1.0, "weight": 1.0, "label_weight": None}


class TerraMindTask(L.LightningModule):
    """Two-head (or single-head) TerraMind segmentation task.

    Args:
        encoder: ``terramind_v1_{tiny,small,base,large}``.
        heads: heads to train (a subset of the model config's: ``lulc``, ``buildings``).
        pretrained: True = TerraMind's pretrained encoder from the hub (terratorch downloads it),
            a path = the same weights from a local file, False = random initialisation.
        losses: per head ``{"name": ce|weighted_ce|focal|dice, "weights": [...]|"auto", "gamma": 2.0}``.
        loss_weights: per head weight of its loss in the total (a, b).
        lr_encoder: learning rate of the encoder.
        lr_heads: learning rate of the neck and heads.
        weight_decay: AdamW weight decay.
        freeze_encoder: keep the encoder's weights fixed (only neck and heads train).
        lora: ``{rank, alpha, targets}``: keep the encoder's weights fixed and train a low-rank delta on
            its attention layers (``W + alpha / rank * B @ A``, the published adapters' form) with the
            neck and heads; the artifact stores the base weights and the factors, merged when loaded.
        scheduler_patience: ReduceLROnPlateau patience (validation epochs) on ``val/loss``.
        scheduler_factor: ReduceLROnPlateau factor.
        early_stopping_patience: validation epochs without ``val/loss`` improvement before stopping
            (None: no early stopping).
        decoder_channels: UNet decoder channels per head (default the config's, [512, 256, 128, 64]).
        tile_size: the tile size the model is trained and served at (224 for real data).
        timesteps: T (temporal input) of the model config.
        modalities: encoder modalities (default S2L2A, S1RTC, DEM).
        distill: distillation options (:data:`DISTILL_DEFAULTS`); used when batches carry teacher outputs.
    """

    def __init__(
        self,
        encoder: str = "terramind_v1_base",
        heads: list[str] | None = None,
        pretrained: bool | str = True,
        losses: dict[str, dict[str, Any]] | None = None,
        loss_weights: dict[str, float] | None = None,
        lr_encoder: float = 1e-5,
        lr_heads: float = 1e-4,
        weight_decay: float = 0.05,
        freeze_encoder: bool = False,
        scheduler_patience: int = 3,
        scheduler_factor: float = 0.5,
        early_stopping_patience: int | None = 10,
        decoder_channels: list[int] | None = None,
        tile_size: int = 224,
        timesteps: int = 1,
        modalities: list[str] | None = None,
        distill: dict[str, Any] | None = None,
        lora: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        unknown_opts = sorted(set(distill or {}) - set(DISTILL_DEFAULTS))
        if unknown_opts:
            raise TrainingConfigError(f"unknown distill option(s) {unknown_opts}; use {sorted(DISTILL_DEFAULTS)}")
        self.distill = {**DISTILL_DEFAULTS, **(distill or {})}
        if not float(self.distill["temperature"]) > 0 or not float(self.distill["weight"]) >= 0 or (
                self.distill["label_weight"] is not None and not float(self.distill["label_weight"]) >= 0):
            raise TrainingConfigError(f"distill needs temperature > 0 and weights >= 0, got {self.distill}")
        self._labels_fed = True
        self.config = modelconfig.make_config(encoder=encoder, heads=heads, tile_size=tile_size, timesteps=timesteps,
                                              modalities=modalities, decoder_channels=decoder_channels, lora=lora)
        self.classes: dict[str, list[str]] = modelconfig.head_classes(self.config)
        self.head_names = list(self.classes)
        losses = {h: dict(DEFAULT_LOSSES.get(h, {"name": "ce"})) for h in self.head_names} if losses is None else losses
        unknown = sorted(set(losses) - set(self.head_names))
        if unknown:
            raise TrainingConfigError(f"losses name heads {unknown} that this task does not train "
                                      f"({self.head_names})")
        missing = [h for h in self.head_names if h not in losses]
        if missing:
            raise TrainingConfigError(f"no loss configured for head(s) {missing}")
        weights = {h: 1.0 for h in self.head_names} if loss_weights is None else dict(loss_weights)
        unknown = sorted(set(weights) - set(self.head_names))
        if unknown or any(h not in weights for h in self.head_names):
            raise TrainingConfigError(f"loss_weights must name exactly the heads {self.head_names}, got {sorted(weights)}")
        if any(not (float(w) >= 0) for w in weights.values()):
            raise TrainingConfigError(f"loss_weights must be >= 0, got {weights}")
        for name, v in (("lr_encoder", lr_encoder), ("lr_heads", lr_heads)):
            if not v > 0:
                raise TrainingConfigError(f"{name} must be > 0, got {v}")
        self.loss_weights = {h: float(w) for h, w in weights.items()}
        self.losses = nn.ModuleDict()
        for h in self.head_names:
            spec = dict(losses[h])
            name = spec.pop("name", None)
            if name is None:
                raise TrainingConfigError(f"the loss of head {h!r} needs a 'name'")
            extra = sorted(set(spec) - {"weights", "gamma"})
            if extra:
                raise TrainingConfigError(f"unknown loss option(s) {extra} for head {h!r}; use weights, gamma")
            self.losses[h] = build_loss(str(name), len(self.classes[h]), weights=spec.get("weights"),
                                        gamma=float(spec.get("gamma", 2.0)), head=h)
        # the network, and so every head, exists before configure_optimizers runs
        self.network = modelconfig.build_network(self.config, pretrained=pretrained)
        self.uses_lora = any(e.lora is not None for e in self.config.encoders)
        self.freeze_encoder = freeze_encoder or self.uses_lora
        if self.freeze_encoder:
            for p in modelconfig.encoder_of(self.network).parameters():
                p.requires_grad_(False)
        self.metrics = nn.ModuleDict({
            f"{stage}_{h}": HeadMetrics(h, self.classes[h]) for stage in ("val", "test") for h in self.head_names
        })

    # --- inputs ---------------------------------------------------------------------------
    def input_spec(self) -> tuple[dict[str, int], Any]:
        """(band count per modality, the runtime's standardisation for this config) for the datamodule."""
        return modelconfig.band_counts(self.config), modelconfig.standardiser(self.config)

    def _accelerator_name(self) -> str:
        return type(self.trainer.accelerator).__name__.replace("Accelerator", "").lower() or "?"

    def setup(self, stage: str) -> None:
        precision = str(getattr(self._trainer, "precision", "")) if self._trainer is not None else ""
        if stage == "fit" and precision in FP16_PRECISIONS:
            raise TrainingConfigError(
                f"trainer.precision {precision!r}: fp16 training diverged to NaN in an earlier run of this model; "
                "use bf16-mixed (the default), or 32-true on GPUs without bfloat16"
            )
        if stage == "fit":
            log.info("training precision: %s on %s (fp32 matmuls: %s)", precision or "?", self._accelerator_name(),
                     fp32_matmul_precision())
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        data_classes = dm.classes
        if dm.timesteps != self.config.timesteps:
            raise TrainingConfigError(f"data.timesteps ({dm.timesteps}) differs from model.timesteps "
                                      f"({self.config.timesteps})")
        chip = dm.index.meta.get("tile_size") if dm.index is not None else None
        if chip is not None and int(chip) != self.config.tile_size:
            raise TrainingConfigError(
                f"the dataset at {dm.root} has {chip} px chips but the model's tile_size is {self.config.tile_size}; "
                f"set model.tile_size: {chip} (the runtime serves the artifact at that tile size)"
            )
        for h in self.head_names:
            if h not in data_classes:
                raise TrainingConfigError(f"head {h!r} has no labels in the dataset at {dm.root} "
                                          f"(it has {sorted(data_classes)})")
            if list(data_classes[h]) != self.classes[h]:
                raise TrainingConfigError(
                    f"head {h!r}: the dataset's classes {data_classes[h]} differ from the model's {self.classes[h]} "
                    "(names and order must match)"
                )
        self._labels_fed = bool(getattr(dm, "labels", True))
        if getattr(dm, "soft_targets", None):
            from .teachers import read_manifest

            taught = read_manifest(dm.soft_targets).get("classes", {})
            for h in self.head_names:
                if h in taught and list(taught[h]) != self.classes[h]:
                    raise TrainingConfigError(f"head {h!r}: the teacher's classes {taught[h]} differ from the "
                                              f"student's {self.classes[h]}")
        if stage == "fit":
            dm.verify(("train", "val"))
        if self._label_weight() == 0.0 and getattr(dm, "soft_targets", None):
            return  # the teachers alone: no label loss, no class weights to count
        auto = [h for h, loss in self.losses.items() if getattr(loss, "auto_weights", False)]
        if auto:
            if any(h not in dm.class_counts for h in auto):
                dm.verify(("train",))
            for h in auto:
                w = auto_class_weights(dm.class_counts[h])
                cast(Any, self.losses[h]).set_weights(w)
                log.info("head %s: class weights from the training split %s", h, [round(v, 3) for v in w])

    # --- forward --------------------------------------------------------------------------
    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits per head at input resolution."""
        return modelconfig.forward(self.network, inputs)

    @torch.no_grad()
    def predict_probabilities(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Softmax probabilities per head (eval mode is the caller's business)."""
        return {h: v.float().softmax(dim=1) for h, v in self(inputs).items()}

    def _label_weight(self) -> float:
        lw = self.distill["label_weight"]
        return (1.0 if self._labels_fed else 0.0) if lw is None else float(lw)

    def _head_loss(self, h: str, out: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        soft = targets.get(f"soft_{h}")
        if soft is None:
            return self.losses[h](out, targets[h])  # type: ignore[no-any-return]
        kd = soft_cross_entropy(out, soft, targets["soft_valid"], temperature=float(self.distill["temperature"]))
        loss = float(self.distill["weight"]) * kd
        lw = self._label_weight()
        if lw > 0:
            loss = loss + lw * self.losses[h](out, targets[h])
        return loss

    def _losses(self, out: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {h: self._head_loss(h, out[h], targets) for h in self.head_names}
        total = sum((self.loss_weights[h] * parts[h] for h in self.head_names), torch.zeros((), device=self.device))
        return total, parts

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        out = self(inputs)
        loss, parts = self._losses(out, targets)
        bs = next(iter(targets.values())).shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for h, v in parts.items():
            self.log(f"train/{h}_loss", v, batch_size=bs)
        return loss

    def _eval_step(self, stage: str, batch: Any) -> torch.Tensor:
        inputs, targets = batch
        out = self(inputs)
        loss, parts = self._losses(out, targets)
        bs = next(iter(targets.values())).shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=bs, sync_dist=True)
        for h, v in parts.items():
            self.log(f"{stage}/{h}_loss", v, batch_size=bs, sync_dist=True)
            pred = out[h].argmax(dim=1)
            self._head_metrics(stage, h).update(pred, targets[h])
            soft = targets.get(f"soft_{h}")
            if soft is not None:
                valid = targets["soft_valid"]
                same = ((pred == soft.argmax(dim=1)) & valid).sum().float() / valid.sum().clamp_min(1)
                self.log(f"{stage}/{h}_agreement", same, batch_size=int(valid.sum().item()) or 1, sync_dist=True)
        return loss

    def _head_metrics(self, stage: str, head: str) -> HeadMetrics:
        return cast(HeadMetrics, self.metrics[f"{stage}_{head}"])

    def _eval_epoch_end(self, stage: str) -> None:
        for h in self.head_names:
            m = self._head_metrics(stage, h)
            scores = m.compute()
            scores.pop(f"{h}_pixels", None)
            self.log_dict({f"{stage}/{k}": v for k, v in scores.items()}, sync_dist=False)
            m.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # --- LoRA: the merged encoder that eval mode runs follows the trained factors ----------------
    def _merge_lora(self) -> None:
        if self.uses_lora:
            self.network.merge_lora()

    def on_validation_epoch_start(self) -> None:
        self._merge_lora()

    def on_test_epoch_start(self) -> None:
        self._merge_lora()

    def on_predict_epoch_start(self) -> None:
        self._merge_lora()

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._merge_lora()
        return result

    # --- optimisation ---------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW parameter groups from the live module: encoder vs everything else (neck + heads)."""
        enc_ids = {id(p) for p in modelconfig.encoder_of(self.network).parameters()}
        enc = [p for p in self.network.parameters() if id(p) in enc_ids and p.requires_grad]
        rest = [p for p in self.network.parameters() if id(p) not in enc_ids and p.requires_grad]
        groups = []
        if enc:
            groups.append({"params": enc, "lr": self.hparams["lr_encoder"], "name": "encoder"})
        groups.append({"params": rest, "lr": self.hparams["lr_heads"], "name": "heads"})
        return groups

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.param_groups(), weight_decay=self.hparams["weight_decay"])
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=self.hparams["scheduler_factor"],
                                                           patience=self.hparams["scheduler_patience"])
        # strict=False: epochs without validation (check_val_every_n_epoch > 1) leave the schedule alone
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "monitor": "val/loss", "interval": "epoch", "strict": False}}

    def configure_callbacks(self) -> list[Any]:
        from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

        from .energy import EnergyCallback

        cbs: list[Any] = []
        checkpointing = self._trainer is None or bool(self.trainer.checkpoint_callbacks)
        if checkpointing:  # replaces Lightning's default checkpoint callback (not added when it is disabled)
            cbs.append(ModelCheckpoint(monitor="val/loss", mode="min", filename="best", save_top_k=1,
                                       auto_insert_metric_name=False))
        if self.hparams["early_stopping_patience"] is not None:
            cbs.append(EarlyStopping(monitor="val/loss", mode="min", patience=self.hparams["early_stopping_patience"],
                                     check_on_train_epoch_end=False))
        if self._trainer is not None and self.trainer.logger is not None:
            cbs.append(LearningRateMonitor(logging_interval="epoch"))
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        cbs.append(EnergyCallback(stage="distill" if getattr(dm, "soft_targets", None) else "fit"))
        return cbs
