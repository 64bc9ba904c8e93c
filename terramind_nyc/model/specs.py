"""The parts of a checkpoint config: modalities, heads and encoder variants, each validated.

:class:`ModalitySpec` (bands, statistics, units, transform), :class:`HeadSpec` (classes, colours,
threshold, the encoder variant it reads), :class:`LoraSpec` and :class:`EncoderSpec` (a variant
of the base encoder, with or without a LoRA delta). :mod:`terramind_nyc.model.config` puts them
together into a :class:`~terramind_nyc.model.config.ModelConfig` and re-exports them. No torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CheckpointError
from . import _schema as schema

__all__ = ["KNOWN_MODALITIES", "LORA_TARGETS", "SHARED_ENCODER", "TRANSFORMS", "EncoderSpec", "HeadSpec", "LoraSpec",
           "ModalitySpec", "validate_encoders", "validate_heads", "validate_modalities"]

#: Name of the encoder of a checkpoint with one shared encoder (every version-1 checkpoint).
SHARED_ENCODER = "shared"
#: What a modality's raw values go through before standardisation: nothing, or dB -> linear
#: power (``10 ** (x / 10)``: the library reads Sentinel-1 in dB).
TRANSFORMS = ("", "db_to_linear")
#: Raw (untokenised) modalities TerraMind v1 takes as input.
KNOWN_MODALITIES = ("S2L2A", "S2L1C", "S2RGB", "S1GRD", "S1RTC", "DEM")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality: its bands in model order and the statistics that standardise it."""

    name: str
    """Modality key as TerraMind names it: ``S2L2A``, ``S1RTC``, ``DEM`` (also S2L1C, S2RGB, S1GRD)."""
    bands: tuple[str, ...]
    """Band names in the order the model takes them (the order of axis 0 of the input array)."""
    mean: tuple[float, ...]
    """Per-band mean, in the input's units, subtracted before the model."""
    std: tuple[float, ...]
    """Per-band standard deviation (> 0), in the input's units, divided after the mean."""
    units: str = ""
    """What the values standardised with ``mean`` / ``std`` are (documentation: ``DN``, ``dB``, ``m``)."""
    transform: str = ""
    """Applied to the values the library reads before standardising (:data:`TRANSFORMS`): ``""``
    none; ``db_to_linear`` turns Sentinel-1 dB into linear power, for weights trained on linear backscatter."""

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ModalitySpec:
        """Parse one entry of ``modalities``; CheckpointError names the bad field."""
        d = schema.expect(d, dict, where)
        schema.no_unknown(d, {"name", "bands", "mean", "std", "units", "transform"}, where)
        schema.require(d, ("name", "bands", "mean", "std"), where)
        return cls(name=schema.expect(d["name"], str, f"{where}.name"), bands=schema.str_tuple(d["bands"], f"{where}.bands"),
                   mean=schema.float_tuple(d["mean"], f"{where}.mean"), std=schema.float_tuple(d["std"], f"{where}.std"),
                   units=schema.expect(d.get("units", ""), str, f"{where}.units"),
                   transform=schema.expect(d.get("transform", ""), str, f"{where}.transform"))


@dataclass(frozen=True)
class HeadSpec:
    """One segmentation head: its classes, display labels and colours, and decision threshold."""

    name: str
    """Head key (lower-case identifier), e.g. ``lulc``, ``buildings``; the output dict's key."""
    classes: tuple[str, ...]
    """Class names in output-channel order (at least two)."""
    colors: tuple[str, ...]
    """Display colour per class, ``#rrggbb``."""
    threshold: float | None = None
    """Two-class heads: probability of class 1 at or above which a pixel is class 1 (0..1)."""
    description: str = ""
    """What the head predicts and where its labels came from."""
    encoder: str = SHARED_ENCODER
    """The encoder variant (:class:`EncoderSpec` name) whose features this head decodes."""
    labels: tuple[str, ...] = ()
    """Display label per class for people (reports, the Riprap views), e.g. ``Trees / forest`` for
    ``forest``; empty: the class names."""

    @property
    def display_labels(self) -> tuple[str, ...]:
        """:attr:`labels`, or the class names when the config gives none."""
        return self.labels or self.classes

    @classmethod
    def from_dict(cls, d: Any, where: str) -> HeadSpec:
        """Parse one entry of ``heads``; CheckpointError names the bad field."""
        d = schema.expect(d, dict, where)
        schema.no_unknown(d, {"name", "classes", "colors", "threshold", "description", "encoder", "labels"}, where)
        schema.require(d, ("name", "classes", "colors"), where)
        thr = d.get("threshold")
        return cls(name=schema.expect(d["name"], str, f"{where}.name"),
                   classes=schema.str_tuple(d["classes"], f"{where}.classes"),
                   colors=schema.str_tuple(d["colors"], f"{where}.colors"),
                   threshold=None if thr is None else float(schema.expect(thr, (int, float), f"{where}.threshold")),
                   description=schema.expect(d.get("description", ""), str, f"{where}.description"),
                   encoder=schema.expect(d.get("encoder", SHARED_ENCODER), str, f"{where}.encoder"),
                   labels=schema.str_tuple(d.get("labels", []), f"{where}.labels"))


#: The attention layers a LoRA delta may target (those of TerraMind's transformer blocks).
LORA_TARGETS = ("attn.qkv", "attn.proj")


@dataclass(frozen=True)
class LoraSpec:
    """A low-rank delta on the encoder's attention weights: ``W + (alpha / rank) * B @ A`` per target."""

    rank: int
    """r: the inner dimension of the factors (A is ``(r, in)``, B ``(out, r)``)."""
    alpha: float
    """lora_alpha; the delta is scaled by ``alpha / rank``."""
    targets: tuple[str, ...] = LORA_TARGETS
    """Linear layers of every transformer block that carry a delta."""

    @property
    def scale(self) -> float:
        """``alpha / rank``, the factor of ``B @ A``."""
        return self.alpha / self.rank

    @classmethod
    def from_dict(cls, d: Any, where: str) -> LoraSpec:
        d = schema.expect(d, dict, where)
        schema.no_unknown(d, {"rank", "alpha", "targets"}, where)
        schema.require(d, ("rank", "alpha"), where)
        return cls(rank=schema.expect(d["rank"], int, f"{where}.rank"),
                   alpha=float(schema.expect(d["alpha"], (int, float), f"{where}.alpha")),
                   targets=schema.str_tuple(d.get("targets", list(LORA_TARGETS)), f"{where}.targets"))


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder variant: the base TerraMind encoder, optionally with a LoRA delta, and its own neck.

    A jointly trained checkpoint has one (:data:`SHARED_ENCODER`, no delta) that every head reads;
    the published NYC adapters have one per head. Each variant runs once per batch of tiles.
    """

    name: str = SHARED_ENCODER
    """Variant key (lower-case identifier); heads name it in ``encoder``."""
    lora: LoraSpec | None = None
    """The delta on the base encoder's weights (None: the base weights as they are)."""
    description: str = ""
    """Where the variant comes from."""

    @classmethod
    def from_dict(cls, d: Any, where: str) -> EncoderSpec:
        d = schema.expect(d, dict, where)
        schema.no_unknown(d, {"name", "lora", "description"}, where)
        schema.require(d, ("name",), where)
        lora = d.get("lora")
        return cls(name=schema.expect(d["name"], str, f"{where}.name"),
                   lora=None if lora is None else LoraSpec.from_dict(lora, f"{where}.lora"),
                   description=schema.expect(d.get("description", ""), str, f"{where}.description"))


def _listed(items: Any, kind: type, field: str, what: str) -> None:
    """CheckpointError unless ``items`` is a non-empty tuple of ``kind`` with unique names."""
    if not items or not isinstance(items, tuple) or not all(isinstance(i, kind) for i in items):
        raise CheckpointError(f"`{field}` must list at least one {what} (a tuple of {kind.__name__})")
    schema.unique([i.name for i in items], field)


def _identifier(name: Any, where: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CheckpointError(f"{where}: name must be a lower-case identifier (a-z, 0-9, _), up to 32 characters")


def validate_encoders(encoders: tuple[EncoderSpec, ...], heads: Sequence[HeadSpec]) -> None:
    """CheckpointError naming the first bad encoder variant, or a head naming none, or a variant no head reads."""
    _listed(encoders, EncoderSpec, "encoders", "encoder variant")
    for e in encoders:
        where = f"encoder {e.name!r}"
        _identifier(e.name, where)
        if e.lora is not None:
            lo = e.lora
            if not isinstance(lo.rank, int) or isinstance(lo.rank, bool) or not 1 <= lo.rank <= 1024:
                raise CheckpointError(f"{where}: `lora.rank` must be an integer in 1..1024, got {lo.rank!r}")
            if not (isinstance(lo.alpha, (int, float)) and math.isfinite(lo.alpha) and lo.alpha > 0):
                raise CheckpointError(f"{where}: `lora.alpha` must be a positive number, got {lo.alpha!r}")
            bad = sorted(set(lo.targets) - set(LORA_TARGETS))
            if not lo.targets or bad:
                raise CheckpointError(f"{where}: `lora.targets` must be a non-empty subset of {list(LORA_TARGETS)}"
                                      + (f" ({bad} unknown)" if bad else ""))
            schema.unique(lo.targets, f"{where} lora.targets")
    names = {e.name for e in encoders}
    for h in heads:
        if h.encoder not in names:
            raise CheckpointError(f"head {h.name!r} names encoder {h.encoder!r}; the config has {sorted(names)}")
    unused = [e.name for e in encoders if not any(h.encoder == e.name for h in heads)]
    if unused:
        raise CheckpointError(f"encoder(s) {unused} feed no head; remove them or name them in a head's `encoder`")


def validate_modalities(modalities: tuple[ModalitySpec, ...]) -> None:
    _listed(modalities, ModalitySpec, "modalities", "modality")
    for m in modalities:
        where = f"modality {m.name!r}"
        if m.name not in KNOWN_MODALITIES:
            raise CheckpointError(f"{where}: unknown modality; TerraMind takes {list(KNOWN_MODALITIES)}")
        if not m.bands or not all(isinstance(b, str) and b for b in m.bands):
            raise CheckpointError(f"{where}: `bands` must be a non-empty list of band names")
        schema.unique(m.bands, f"{where} bands")
        for key in ("mean", "std"):
            vals = getattr(m, key)
            if len(vals) != len(m.bands):
                raise CheckpointError(f"{where}: {len(vals)} `{key}` values for {len(m.bands)} bands")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
                raise CheckpointError(f"{where}: `{key}` values must be finite numbers")
        if not all(v > 0 for v in m.std):
            raise CheckpointError(f"{where}: every `std` must be > 0")
        if m.transform not in TRANSFORMS:
            raise CheckpointError(f"{where}: `transform` must be one of {list(TRANSFORMS)}, got {m.transform!r}")


def validate_heads(heads: tuple[HeadSpec, ...]) -> None:
    _listed(heads, HeadSpec, "heads", "head")
    for h in heads:
        where = f"head {h.name!r}"
        _identifier(h.name, where)
        if len(h.classes) < 2 or not all(isinstance(k, str) and k for k in h.classes):
            raise CheckpointError(f"{where}: `classes` must name at least two classes")
        schema.unique(h.classes, f"{where} classes")
        if len(h.colors) != len(h.classes) or not all(isinstance(k, str) and _COLOR.match(k) for k in h.colors):
            raise CheckpointError(f"{where}: `colors` must give one #rrggbb colour per class ({len(h.classes)})")
        if h.labels and (len(h.labels) != len(h.classes) or not all(isinstance(k, str) and k.strip() for k in h.labels)):
            raise CheckpointError(f"{where}: `labels` must give one non-empty display label per class "
                                  f"({len(h.classes)}), or be left out")
        schema.unique(h.labels, f"{where} labels")
        if h.threshold is not None:
            if len(h.classes) != 2:
                raise CheckpointError(f"{where}: `threshold` applies to two-class heads only")
            if not (isinstance(h.threshold, (int, float)) and 0.0 < h.threshold < 1.0):
                raise CheckpointError(f"{where}: `threshold` must lie strictly between 0 and 1, got {h.threshold!r}")
