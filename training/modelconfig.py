"""The training side of terramind_nyc's model modules: one config, one network, one standardisation.

Everything model-shaped comes from ``terramind_nyc``: the config schema and its defaults
(:class:`terramind_nyc.model.config.ModelConfig`: classes, colours, bands, statistics, offset rule),
the network (:func:`terramind_nyc.model.network.build_network`), the standardisation
(:func:`terramind_nyc.model.inputs.validate_inputs` + :func:`terramind_nyc.model.inputs.standardise`, the
functions inference runs), the artifact writer (:func:`terramind_nyc.model.artifact.save_artifact`) and
the runtime that serves it (:func:`terramind_nyc.model.backends.load_runtime`). This module only selects
and converts; it holds no second copy of any of them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from terramind_nyc.model.config import ENCODERS, ModelConfig
from terramind_nyc.errors import CheckpointError

from .errors import TrainingConfigError

__all__ = [
    "band_counts",
    "build_network",
    "default_classes_and_bands",
    "default_config",
    "encoder_of",
    "finalise_config",
    "forward",
    "head_classes",
    "load_runtime",
    "lora_spec",
    "make_config",
    "runtime_probabilities",
    "save_artifact",
    "standardiser",
]


def default_config() -> ModelConfig:
    """terramind_nyc's default model config (two heads, three modalities, TerraMind v1 statistics)."""
    return ModelConfig()


def default_classes_and_bands() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Head -> class names and modality -> band names of the default config, in model order."""
    c = default_config()
    return {h.name: list(h.classes) for h in c.heads}, {m.name: list(m.bands) for m in c.modalities}


def lora_spec(lora: Mapping[str, Any] | None) -> Any:
    """``{rank, alpha, targets}`` (targets default ``attn.qkv``, ``attn.proj``) as a LoraSpec, or None."""
    from terramind_nyc.model.specs import LORA_TARGETS, LoraSpec

    if lora is None:
        return None
    unknown = sorted(set(lora) - {"rank", "alpha", "targets"})
    if unknown or "rank" not in lora:
        raise TrainingConfigError(f"model.lora takes rank, alpha and targets, got {dict(lora)}")
    rank, alpha = lora["rank"], lora.get("alpha", 2 * lora["rank"])
    targets = tuple(lora.get("targets") or LORA_TARGETS)
    if not isinstance(rank, int) or rank < 1 or not float(alpha) > 0 or not set(targets) <= set(LORA_TARGETS):
        raise TrainingConfigError(f"model.lora needs rank >= 1, alpha > 0 and targets among {list(LORA_TARGETS)}, "
                                  f"got {dict(lora)}")
    return LoraSpec(rank=rank, alpha=float(alpha), targets=targets)


def make_config(*, encoder: str, heads: Sequence[str] | None, tile_size: int, timesteps: int,
                modalities: Sequence[str] | None, decoder_channels: Sequence[int] | None,
                temporal_pooling: str = "mean", lora: Mapping[str, Any] | None = None) -> ModelConfig:
    """The default config restricted to ``heads`` and ``modalities``, with the given architecture.

    ``lora``: the shared encoder carries a trainable low-rank delta on its attention weights (the
    mechanism the published adapters use, :class:`terramind_nyc.model.specs.LoraSpec`).

    Raises :class:`TrainingConfigError` for an unknown encoder, head or modality, or any field
    the config schema refuses.
    """
    base = default_config()
    if encoder not in ENCODERS:
        raise TrainingConfigError(f"unknown encoder {encoder!r}; choose one of {sorted(ENCODERS)}")
    known_heads = {h.name: h for h in base.heads}
    names = list(known_heads) if heads is None else list(heads)
    if not names:
        raise TrainingConfigError(f"heads must name at least one of {list(known_heads)}")
    unknown = [h for h in names if h not in known_heads]
    if unknown:
        raise TrainingConfigError(f"unknown head(s) {unknown}; the model config has {list(known_heads)}")
    if len(set(names)) != len(names):
        raise TrainingConfigError(f"heads are listed twice: {names}")
    known_mods = {m.name: m for m in base.modalities}
    mods = list(known_mods) if modalities is None else list(modalities)
    unknown = [m for m in mods if m not in known_mods]
    if unknown or not mods:
        raise TrainingConfigError(f"unknown or no modalities {unknown or mods}; choose from {list(known_mods)}")
    name = "terramind-nyc-multihead" if len(names) > 1 else f"terramind-nyc-{names[0]}"
    spec = lora_spec(lora)
    try:
        return base.replace(
            encoders=tuple(dataclasses.replace(e, lora=spec) for e in base.encoders),
            name=name, encoder=encoder, heads=tuple(known_heads[h] for h in names),
            modalities=tuple(known_mods[m] for m in mods), tile_size=int(tile_size), timesteps=int(timesteps),
            temporal_pooling=temporal_pooling,
            decoder_channels=tuple(int(v) for v in (decoder_channels or base.decoder_channels)),
        )
    except CheckpointError as exc:
        raise TrainingConfigError(f"invalid model config: {exc}") from None


def head_classes(config: ModelConfig) -> dict[str, list[str]]:
    """Head -> class names in output order."""
    return {h.name: list(h.classes) for h in config.heads}


def band_counts(config: ModelConfig) -> dict[str, int]:
    """Modality -> number of bands (per time step), in model order."""
    return {m.name: len(m.bands) for m in config.modalities}


def _standardise(config: ModelConfig, arrays: Mapping[str, np.ndarray],
                 valid: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    from terramind_nyc.model.inputs import standardise, validate_inputs

    checked, ok, _ = validate_inputs(config, arrays, valid)
    return standardise(config, checked, ok)


def standardiser(config: ModelConfig) -> Any:
    """``(arrays, valid) -> standardised arrays`` exactly as the runtime does it (picklable for workers)."""
    return functools.partial(_standardise, config)


def build_network(config: ModelConfig, *, pretrained: bool | str) -> Any:
    """terramind_nyc's multi-head network for ``config`` (pretrained encoder from the hub or a local file)."""
    from terramind_nyc.model.network import build_network as _build

    if isinstance(pretrained, str) and not Path(pretrained).is_file():
        raise TrainingConfigError(
            f"pretrained encoder weights {pretrained!r} not found; give TerraMind's .pt file, true (download "
            "from the Hugging Face hub) or false (random initialisation)"
        )
    try:
        return _build(config, pretrained=pretrained)
    except CheckpointError as exc:
        raise TrainingConfigError(str(exc)) from None


def encoder_of(network: Any) -> Any:
    """The encoder module (its parameters form the encoder learning-rate group)."""
    return network.encoder


def forward(network: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Logits per head at input resolution."""
    return network(inputs)  # type: ignore[no-any-return]


def finalise_config(config: ModelConfig, *, building_threshold: float | None, provenance: Mapping[str, Any],
                    metrics: Mapping[str, Any], version: str | None = None) -> ModelConfig:
    """The artifact's config: the buildings threshold, training provenance and test metrics filled in."""
    import dataclasses

    heads = tuple(
        dataclasses.replace(h, threshold=float(building_threshold))
        if h.name == "buildings" and building_threshold is not None else h
        for h in config.heads
    )
    changes: dict[str, Any] = {"heads": heads, "training": dict(provenance), "metrics": dict(metrics)}
    if version is not None:
        changes["version"] = version
    return config.replace(**changes)


def save_artifact(network: Any, config: ModelConfig, out: str | Path) -> Path:
    """Write the artifact with terramind_nyc's own writer (replacing an existing one)."""
    from terramind_nyc.model.artifact import save_artifact as _save

    return _save(network, config, out, overwrite=True)


def load_runtime(path: str | Path, device: str = "cpu") -> Any:
    """terramind_nyc's torch runtime over an artifact directory."""
    from terramind_nyc.model.backends import load_runtime as _load

    return _load(str(path), backend="torch", device=device)


def runtime_probabilities(runtime: Any, raw: Mapping[str, np.ndarray], valid: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-head probabilities from the runtime for raw arrays and validity masks."""
    return dict(runtime.predict(raw, valid).probabilities)
