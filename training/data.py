"""The datamodule: chips from the dataset layout -> ``(inputs, targets)`` batches.

``inputs`` is ``{modality: float32 tensor (B, C, H, W)}`` (``(B, C, T, H, W)`` with T > 1
timesteps) standardised by ``terramind_nyc.model.inputs``'s own function with the model config's
statistics (one implementation for training and inference; nodata -> 0 after standardising);
``targets`` is ``{head: int64 tensor (B, H, W)}`` with -1 = ignore.

Training batches get a random element of the dihedral group D4 (8 rotations/flips) applied
identically to every input and both masks (and to the teachers' probabilities when distilling).

Distillation (``soft_targets``: a teacher cache of :mod:`training.teachers`) adds to ``targets``
``soft_<head>`` (float32 ``(B, C, H, W)`` teacher probabilities) and ``soft_valid`` (bool
``(B, H, W)``). With ``labels: false`` no mask is read: ``targets[head]`` is then the teacher's
decision (argmax, -1 where the teacher had no data), so the logged IoUs measure agreement with
the teacher. Before any training step :meth:`NYCDataModule.setup`
checks that every file the index names exists, that the index's timesteps match, and that every
mask value lies in its head's class range (:class:`~training.errors.LabelError` otherwise); it
also counts the training split's class pixels (for ``weighted_ce`` with ``weights: auto``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from terramind_nyc.model.compat import ensure_torchvision_importable

from .errors import DatasetError, DatasetFileError, TrainingConfigError
from .labels import IGNORE_INDEX, check_mask
from .layout import MASK_FILES, ChipRecord, DatasetIndex, read_raster

ensure_torchvision_importable()
import lightning.pytorch as L

__all__ = ["ChipDataset", "NYCDataModule", "Standardiser", "d4"]

log = logging.getLogger(__name__)

#: ``(arrays, valid) -> standardised arrays``; arrays ``{modality: (C, H, W)}`` raw units,
#: valid ``{modality: (H, W) bool}``.
Standardiser = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def d4(arr: np.ndarray, k: int) -> np.ndarray:
    """Element ``k`` (0..7) of D4 on the last two axes: ``k % 4`` quarter turns, then a flip if ``k >= 4``."""
    out = np.rot90(arr, k % 4, axes=(-2, -1))
    if k >= 4:
        out = np.flip(out, axis=-1)
    return np.ascontiguousarray(out)


def _target_dtype(name: str, a: np.ndarray) -> np.ndarray:
    if name.startswith("soft_"):
        return np.ascontiguousarray(a, dtype=bool if name == "soft_valid" else np.float32)
    return a.astype(np.int64)


class ChipDataset(Dataset[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]):
    """Chips of one split, read from their GeoTIFFs and standardised on the fly."""

    def __init__(self, root: str | Path, chips: Sequence[ChipRecord], *, bands: Mapping[str, int],
                 heads: Sequence[str], standardise: Standardiser, timesteps: int = 1,
                 augment: bool = False, cache: bool = False, soft_targets: str | Path | None = None,
                 labels: bool = True) -> None:
        self.root = Path(root)
        self.chips = list(chips)
        self.bands = dict(bands)
        self.heads = list(heads)
        self.standardise = standardise
        self.timesteps = int(timesteps)
        self.augment = augment
        self.cache = cache
        self.soft_targets = None if soft_targets is None else Path(soft_targets)
        self.labels = labels
        if not labels and self.soft_targets is None:
            raise TrainingConfigError("labels: false needs soft_targets (a teacher cache) to learn from")
        self._cache: dict[int, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}

    def __len__(self) -> int:
        return len(self.chips)

    def read(self, i: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Raw arrays ``{modality: (T*C, H, W)}`` (NaN = nodata) and int8 masks ``{head: (H, W)}``."""
        c = self.chips[i]
        h, w = int(c.height or 0), int(c.width or 0)
        arrays: dict[str, np.ndarray] = {}
        for m, n in self.bands.items():
            rel = c.files.get(m)
            if rel is None:  # modality unavailable for this chip: all nodata (standardised to 0)
                arrays[m] = np.full((n * self.timesteps, h, w), np.nan, dtype=np.float32)
                continue
            a = read_raster(self.root / rel).astype(np.float32, copy=False)
            if a.shape[0] != n * self.timesteps:
                raise DatasetError(f"{self.root / rel}: {a.shape[0]} bands, expected {n} x {self.timesteps} timesteps")
            arrays[m] = a
        if not self.labels:
            return arrays, {}
        masks = {hd: read_raster(self.root / c.files[hd])[0].astype(np.int8, copy=False) for hd in self.heads}
        return arrays, masks

    def targets(self, i: int, masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Label masks plus, when distilling, ``soft_<head>`` and ``soft_valid`` of chip ``i``."""
        if self.soft_targets is None:
            return dict(masks)
        from .teachers import read_soft_targets

        soft = read_soft_targets(self.soft_targets, self.chips[i].id)
        out: dict[str, np.ndarray] = dict(masks)
        for hd in self.heads:
            if hd not in soft:
                raise DatasetError(f"the teacher cache {self.soft_targets} has no {hd!r} outputs")
            out[f"soft_{hd}"] = soft[hd]
            if not self.labels:  # the teacher's decision stands in for the label
                out[hd] = np.where(soft["valid"], soft[f"argmax_{hd}"], -1).astype(np.int8)
        out["soft_valid"] = soft["valid"]
        return out

    def inputs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Standardise raw arrays with the runtime's function: ``(C, H, W)``, or ``(C, T, H, W)`` when T > 1."""
        raw, valid = {}, {}
        t = self.timesteps
        for m, a in arrays.items():
            x = a if t == 1 else a.reshape(t, self.bands[m], *a.shape[-2:]).transpose(1, 0, 2, 3)
            finite = np.isfinite(x)
            valid[m] = finite.all(axis=0)  # (H, W), or (T, H, W)
            raw[m] = np.where(finite, x, 0.0).astype(np.float32)
        return {m: np.asarray(v, dtype=np.float32) for m, v in self.standardise(raw, valid).items()}

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        if self.cache and i in self._cache:
            x, masks = self._cache[i]
        else:
            arrays, masks = self.read(i)
            x = self.inputs(arrays)
            masks = self.targets(i, masks)
            if self.cache:
                self._cache[i] = (x, masks)
        if self.augment:
            k = int(torch.randint(0, 8, ()).item())
            x = {m: d4(a, k) for m, a in x.items()}
            masks = {h: d4(a, k) for h, a in masks.items()}
        return ({m: torch.from_numpy(np.ascontiguousarray(a)) for m, a in x.items()},
                {h: torch.from_numpy(_target_dtype(h, a)) for h, a in masks.items()})


class NYCDataModule(L.LightningDataModule):
    """Lightning datamodule over a dataset built by ``python -m training build-dataset``.

    Args:
        root: dataset root (holds ``index.json``).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size (default ``batch_size``).
        num_workers: DataLoader worker processes (0 = load in the main process).
        timesteps: T; must match the dataset's ``timesteps``.
        augment: random D4 on training batches.
        modalities: modalities to feed (default: the model config's).
        check_labels: read every mask in ``setup`` and refuse values outside the class range.
        pin_memory: DataLoader ``pin_memory`` (useful on GPU).
        cache: keep each chip's standardised arrays in memory after the first read (per worker;
            about 3 MB per 224 px chip).
        soft_targets: a teacher cache folder (:func:`training.teachers.cache_teacher_outputs`; set by
            ``python -m training distill``): batches carry the teachers' probabilities.
        labels: read the label masks (False: learn from the teachers only; needs ``soft_targets``).
    """

    def __init__(self, root: str, batch_size: int = 8, eval_batch_size: int | None = None, num_workers: int = 0,
                 timesteps: int = 1, augment: bool = True, modalities: list[str] | None = None,
                 check_labels: bool = True, pin_memory: bool = False, cache: bool = False,
                 soft_targets: str | None = None, labels: bool = True) -> None:
        super().__init__()
        if not labels and not soft_targets:
            raise TrainingConfigError("data.labels: false needs data.soft_targets (a teacher cache); "
                                      "`python -m training distill` sets it")
        if batch_size < 1:
            raise TrainingConfigError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise TrainingConfigError(f"num_workers must be >= 0, got {num_workers}")
        if timesteps < 1:
            raise TrainingConfigError(f"timesteps must be >= 1, got {timesteps}")
        self.root = Path(root)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.timesteps = timesteps
        self.augment = augment
        self.modalities = list(modalities) if modalities else None
        self.check_labels = check_labels
        self.pin_memory = pin_memory
        self.cache = cache
        self.soft_targets = soft_targets
        self.labels = labels
        self.index: DatasetIndex | None = None
        self.class_counts: dict[str, list[int]] = {}
        self._standardise: Standardiser | None = None
        self._bands: dict[str, int] | None = None
        self._datasets: dict[str, ChipDataset] = {}
        self._checked = False

    # --- configuration from the model ------------------------------------------------------
    def configure_inputs(self, *, bands: Mapping[str, int], standardise: Standardiser) -> None:
        """Set the modalities (with band counts) and the standardisation (the model config's)."""
        self._bands = {m: int(n) for m, n in bands.items() if self.modalities is None or m in self.modalities}
        if self.modalities:
            unknown = sorted(set(self.modalities) - set(bands))
            if unknown:
                raise TrainingConfigError(f"datamodule modalities {unknown} are not in the model's {sorted(bands)}")
        self._standardise = standardise
        self._datasets = {}

    def _inputs_from_trainer(self) -> None:
        if self._standardise is not None:
            return
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        if module is None or not hasattr(module, "input_spec"):
            raise TrainingConfigError("NYCDataModule needs configure_inputs(...) or a TerraMindTask on the trainer")
        bands, standardise = module.input_spec()
        self.configure_inputs(bands=bands, standardise=standardise)

    @property
    def classes(self) -> dict[str, list[str]]:
        """Head -> class names recorded in the dataset index."""
        return self._load_index().classes

    def _load_index(self) -> DatasetIndex:
        if self.index is None:
            self.index = DatasetIndex.load(self.root)
            if self.index.timesteps != self.timesteps:
                raise TrainingConfigError(
                    f"the dataset at {self.root} has {self.index.timesteps} timestep(s); the datamodule asks for "
                    f"{self.timesteps}"
                )
        return self.index

    # --- checks before training ------------------------------------------------------------
    def verify(self, splits: Sequence[str] = ("train", "val", "test")) -> None:
        """Check files and label ranges of ``splits``; count training class pixels. Raises before training."""
        index = self._load_index()
        heads = list(index.classes)
        if not heads:
            raise DatasetError(f"dataset index at {self.root} lists no heads/classes")
        for split in splits:
            chips = index.ok(split)
            index.check_files(self.root, chips, required=[*MASK_FILES] if self.labels else [])
            if self.soft_targets is not None:
                missing = [c.id for c in chips if not (Path(self.soft_targets) / f"{c.id}.safetensors").is_file()]
                if missing:
                    raise DatasetFileError(f"the teacher cache {self.soft_targets} lacks {len(missing)} {split} "
                                           f"chip(s), e.g. {missing[0]}; rerun `python -m training distill`")
            if self.check_labels and self.labels:
                for c in chips:
                    for h in heads:
                        mask = read_raster(self.root / c.files[h])
                        check_mask(mask, len(index.classes[h]), name=h, where=f"chip {c.id} ({c.files[h]})")
                        if split == "train":
                            counts = np.bincount(mask[mask != IGNORE_INDEX].ravel().astype(np.int64),
                                                 minlength=len(index.classes[h]))
                            prev = self.class_counts.get(h, [0] * len(counts))
                            self.class_counts[h] = [int(a + b) for a, b in zip(prev, counts, strict=True)]
        self._checked = True

    # --- Lightning hooks -------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(
            stage or "fit", ("train", "val", "test"))
        self._inputs_from_trainer()
        if not self._checked:
            self.verify(splits)
        index = self._load_index()
        for split in splits:
            chips = index.ok(split)
            if not chips:
                raise DatasetError(f"the {split} split of {self.root} is empty; rebuild with other split fractions")
            self._datasets[split] = self.dataset(split)

    def dataset(self, split: str) -> ChipDataset:
        """The dataset of one split (no augmentation outside ``train``)."""
        self._inputs_from_trainer()
        assert self._bands is not None and self._standardise is not None
        index = self._load_index()
        return ChipDataset(self.root, index.ok(split), bands=self._bands, heads=list(index.classes),
                           standardise=self._standardise, timesteps=self.timesteps,
                           augment=self.augment and split == "train", cache=self.cache,
                           soft_targets=self.soft_targets, labels=self.labels)

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader[Any]:
        ds = self._datasets.get(split) or self.dataset(split)
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0,
                          drop_last=shuffle and len(ds) > batch_size)

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader("test", False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader[Any]:
        return self._loader("test", False, self.eval_batch_size)
