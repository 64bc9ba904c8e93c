"""Teachers for distillation: artifacts whose heads the student learns from, and their cached outputs.

A teacher is any ``terramind_nyc`` artifact (a directory or a hub id), typically the converted
published adapters (``terramind-nyc import-adapters``: one artifact, a ``lulc`` and a ``buildings``
head, each with its own LoRA encoder) or single-task artifacts exported from training runs::

    teachers = load_teachers(["artifacts/nyc-adapters"])                 # both heads from one artifact
    teachers = load_teachers(["lulc=runs/lulc/artifact", "buildings=runs/bld/artifact"])
    cache = cache_teacher_outputs(teachers, "data/nyc")                  # once; resumable

Each teacher runs through ``terramind_nyc``'s own runtime (torch, IEEE fp32), so its preprocessing
(statistics, Sentinel-1 units, offset rule, tile size, the tiled pass) is the one its config declares,
not the student's. The dataset's chips hold raw values (harmonised DN, S1 dB, DEM metres), exactly what
the runtime takes.

The cache is ``<data>/teachers/<fingerprint>/``: ``manifest.json`` (which artifact answers for which head,
with the sha256 of its weights, its classes and preprocessing) and one ``<chip_id>.safetensors`` per chip
holding ``<head>`` (float16 ``(C, H, W)`` softmax probabilities), ``argmax_<head>`` (uint8 ``(H, W)``,
the teacher's argmax taken in float32, so that rounding to float16 cannot flip a near tie) and ``valid``
(uint8 ``(H, W)``: 1 where every modality has data). The fingerprint hashes the teachers' identities and the dataset's chip size, so
other teachers (or a new cache layout) get another folder; a chip already cached is not computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetFileError, TrainingConfigError
from .layout import DatasetIndex, write_json_atomic

__all__ = ["CACHE_DIR", "MANIFEST", "Teachers", "cache_teacher_outputs", "load_teachers", "read_manifest", "read_soft_targets",
           "teacher_manifest"]

log = logging.getLogger(__name__)

CACHE_DIR = "teachers"
#: Layout version of a cache folder (part of its fingerprint: another layout gets another folder).
CACHE_SCHEMA = 2
MANIFEST = "manifest.json"
DEFAULT_HEADS = ("lulc", "buildings")


@dataclass(frozen=True)
class Teachers:
    """Which loaded artifact answers for which student head."""

    sources: Mapping[str, str]
    """Head -> the artifact (directory or hub id) that teaches it."""
    runtimes: Mapping[str, Any]
    """Head -> the loaded :class:`terramind_nyc.model.runtime.Runtime` (torch, fp32)."""

    def info(self, head: str) -> dict[str, Any]:
        """Identity of the teacher of ``head``: source, name, version, sha256, classes, threshold, preprocessing."""
        rt = self.runtimes[head]
        mi = rt.model_info()
        cfg = rt.config
        return {"source": self.sources[head], "name": mi.checkpoint.get("name"),
                "version": mi.checkpoint.get("version"), "sha256": mi.checkpoint.get("sha256"),
                "encoder": mi.checkpoint.get("encoder"), "classes": list(mi.heads[head]["classes"]),
                "threshold": mi.heads[head].get("threshold"), "tile_size": int(cfg.tile_size),
                "modalities": {m.name: list(m.bands) for m in cfg.modalities},
                "preprocessing": dict(cfg.training.get("preprocessing") or {}) if cfg.training else {}}

    def classes(self, head: str) -> list[str]:
        return list(self.runtimes[head].model_info().heads[head]["classes"])

    def threshold(self, head: str) -> float | None:
        t = self.runtimes[head].model_info().heads[head].get("threshold")
        return None if t is None else float(t)

    def fingerprint(self, tile_size: int) -> str:
        ident = {h: [self.sources[h], self.info(h)["sha256"]] for h in sorted(self.sources)}
        blob = json.dumps({"teachers": ident, "chip": int(tile_size), "schema": CACHE_SCHEMA}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _split_spec(spec: str) -> tuple[str | None, str]:
    head, sep, path = spec.partition("=")
    if sep and head in DEFAULT_HEADS:
        return head, path
    return None, spec


def load_teachers(specs: Sequence[str], heads: Sequence[str] = DEFAULT_HEADS, *, device: str = "cpu") -> Teachers:
    """Load the teachers of ``heads`` from ``specs`` (``PATH`` = every head it has, ``HEAD=PATH`` = that one).

    Raises :class:`TrainingConfigError` when a head has no teacher, two teachers, or a named head the
    artifact lacks; :class:`terramind_nyc.errors.CheckpointError` (from the loader) for an artifact
    that cannot be read.
    """
    from terramind_nyc.model.backends import load_runtime

    if not specs:
        raise TrainingConfigError("--teachers needs at least one artifact (PATH, or HEAD=PATH)")
    sources: dict[str, str] = {}
    runtimes: dict[str, Any] = {}
    for spec in specs:
        named, path = _split_spec(spec)
        rt = load_runtime(path, backend="torch", device=device, precision="fp32")
        have = list(rt.model_info().heads)
        wanted = [named] if named else [h for h in heads if h in have]
        if named and named not in have:
            raise TrainingConfigError(f"teacher {path!r} has no {named!r} head (it has {have})")
        if not wanted:
            raise TrainingConfigError(f"teacher {path!r} has none of the student's heads {list(heads)} (it has {have})")
        for h in wanted:
            if h in sources:
                raise TrainingConfigError(f"head {h!r} has two teachers, {sources[h]!r} and {path!r}; name one "
                                          f"with {h}=PATH")
            sources[h], runtimes[h] = path, rt
    missing = [h for h in heads if h not in sources]
    if missing:
        raise TrainingConfigError(f"no teacher for head(s) {missing}; give an artifact that has them "
                                  f"(teachers given: {list(specs)})")
    return Teachers(sources={h: sources[h] for h in heads}, runtimes={h: runtimes[h] for h in heads})


def _check_against(teachers: Teachers, index: DatasetIndex, root: Path) -> None:
    if index.timesteps != 1:
        raise TrainingConfigError(f"the dataset at {root} has {index.timesteps} timesteps; teachers are run on "
                                  "single-date chips (the runtime repeats a date itself where a model wants T)")
    data_bands = {m: list(b) for m, b in dict(index.meta.get("modalities") or {}).items()}
    for h in teachers.sources:
        info = teachers.info(h)
        if h in index.classes and index.classes[h] != info["classes"]:
            raise TrainingConfigError(f"head {h!r}: the teacher's classes {info['classes']} differ from the "
                                      f"dataset's {index.classes[h]} (names and order must match)")
        for m, bands in info["modalities"].items():
            if m in data_bands and data_bands[m] != bands:
                raise TrainingConfigError(f"teacher of {h!r} wants {m} bands {bands}; the dataset has "
                                          f"{data_bands[m]}")


def teacher_manifest(teachers: Teachers, index: DatasetIndex) -> dict[str, Any]:
    """What the cache records about its teachers and the data they ran on."""
    return {"schema": CACHE_SCHEMA, "teachers": {h: teachers.info(h) for h in teachers.sources},
            "classes": {h: teachers.classes(h) for h in teachers.sources},
            "tile_size": index.meta.get("tile_size"), "dtype": "float16", "valid": "all modalities present"}


def cache_teacher_outputs(teachers: Teachers, data: str | os.PathLike[str], *,
                          splits: Sequence[str] = ("train", "val", "test"), out: str | os.PathLike[str] | None = None,
                          progress: bool | None = None) -> Path:
    """Run every teacher once over the chips of ``splits``; return the cache folder (see module docstring)."""
    from safetensors.numpy import save_file
    from tqdm.auto import tqdm

    from .data import ChipDataset

    root = Path(data)
    index = DatasetIndex.load(root)
    _check_against(teachers, index, root)
    chip = int(index.meta.get("tile_size") or 0)
    folder = Path(out) if out is not None else root / CACHE_DIR / teachers.fingerprint(chip)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = teacher_manifest(teachers, index)
    write_json_atomic(folder / MANIFEST, manifest)
    bands = {m: len(b) for m, b in dict(index.meta.get("modalities") or {}).items()}
    chips = [c for s in splits for c in index.ok(s)]
    todo = [c for c in chips if not (folder / f"{c.id}.safetensors").is_file()]
    ds = ChipDataset(root, todo, bands=bands, heads=[], standardise=lambda a, v: a)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    for i in tqdm(range(len(ds)), desc="teachers", unit="chip", disable=not show, file=sys.stderr):
        arrays, _ = ds.read(i)
        masks = {m: np.isfinite(a).all(axis=0) for m, a in arrays.items()}
        valid = np.logical_and.reduce(list(masks.values()))
        tensors: dict[str, np.ndarray] = {"valid": valid.astype(np.uint8)}
        done: dict[int, Mapping[str, np.ndarray]] = {}
        for h, rt in teachers.runtimes.items():
            if id(rt) not in done:  # one artifact teaching both heads runs once
                done[id(rt)] = rt.predict({m: a for m, a in arrays.items() if m in rt.model_info().modalities},
                                          masks).probabilities
            tensors[h] = np.ascontiguousarray(done[id(rt)][h], dtype=np.float16)
            tensors[f"argmax_{h}"] = np.asarray(done[id(rt)][h].argmax(0), dtype=np.uint8)
        path = folder / f"{todo[i].id}.safetensors"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(tensors, str(tmp), metadata={"chip": todo[i].id})
        os.replace(tmp, path)
    log.info("teacher outputs for %d chips in %s (%d computed now)", len(chips), folder, len(todo))
    return folder


def read_soft_targets(cache: str | os.PathLike[str], chip_id: str) -> dict[str, np.ndarray]:
    """``{head: float32 (C, H, W) probabilities, "argmax_<head>": int64 (H, W), "valid": bool (H, W)}`` of one chip."""
    from safetensors.numpy import load_file

    path = Path(cache) / f"{chip_id}.safetensors"
    if not path.is_file():
        raise DatasetFileError(f"no teacher outputs for chip {chip_id} in {cache}; run `python -m training "
                               "distill` (it fills the cache) or check --data.soft_targets")
    raw = load_file(str(path))
    out = {k: v.astype(np.int64 if k.startswith("argmax_") else np.float32) for k, v in raw.items() if k != "valid"}
    out["valid"] = raw["valid"].astype(bool)
    return out


def read_manifest(cache: str | os.PathLike[str]) -> dict[str, Any]:
    """The cache's ``manifest.json``."""
    path = Path(cache) / MANIFEST
    if not path.is_file():
        raise DatasetFileError(f"{cache} is not a teacher cache (no {MANIFEST})")
    data: dict[str, Any] = json.loads(path.read_text())
    return data
