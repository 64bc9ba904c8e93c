"""Checkpoint artifacts: a typed, versioned config plus safetensors weights.

An artifact is a directory, local or a Hugging Face model repo, holding::

    config.json         ModelConfig (schema_version, encoder, modalities + bands + statistics,
                        heads + classes + colours + threshold, tile size, S2 offset rule, ...)
    model.safetensors   the weights of the network the config describes (never a pickle)
    model.onnx          optional: the same network exported for ONNX Runtime (every modality)
    model.*.onnx        optional: one more graph per modality subset (``model.S2L2A-DEM.onnx``)
    model.onnx.data     the weights all those graphs read, stored once (ONNX external data)

:func:`load_artifact` resolves the directory (downloading and caching through huggingface_hub,
revision pinnable), validates ``config.json`` against the schema, builds the network the config
describes, checks every weight's name, shape and dtype against it *before* reading any data,
then reads the weights straight into the network while computing their sha256. Nothing is
unpickled: the safetensors header is JSON and the data is raw little-endian bytes.
:func:`save_artifact` writes the same format. ``docs/checkpoint.md`` describes the format.

Reading the config (:func:`read_config`, :class:`ModelConfig`) and locating and verifying an
ONNX export (:func:`locate_onnx`) need neither torch nor terratorch; loading the network does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import struct
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, CheckpointNotFoundError, InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .network import MultiHeadTerraMind

__all__ = [
    "CONFIG_FILE",
    "ENCODERS",
    "ONNX_DATA_FILE",
    "ONNX_FILE",
    "SCHEMA_VERSION",
    "WEIGHTS_FILE",
    "Artifact",
    "ArtifactFiles",
    "HeadSpec",
    "ModalitySpec",
    "ModelConfig",
    "OnnxExport",
    "OnnxFiles",
    "OnnxGraph",
    "S2OffsetRule",
    "has_onnx_export",
    "load_artifact",
    "locate_artifact",
    "locate_onnx",
    "onnx_graph_file",
    "read_config",
    "save_artifact",
    "weights_sha256",
]

log = logging.getLogger(__name__)

#: Version of the config.json schema this library reads and writes.
SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
#: The external-data file every exported graph reads its weights from.
ONNX_DATA_FILE = "model.onnx.data"
#: Precisions an ONNX export may have.
ONNX_PRECISIONS = ("float32", "float16")

#: TerraMind v1 encoder sizes: name -> (depth, token dimension).
ENCODERS: Mapping[str, tuple[int, int]] = {
    "terramind_v1_tiny": (12, 192),
    "terramind_v1_small": (12, 384),
    "terramind_v1_base": (12, 768),
    "terramind_v1_large": (24, 1024),
}
#: Raw (untokenised) modalities TerraMind v1 takes as input.
KNOWN_MODALITIES = ("S2L2A", "S2L1C", "S2RGB", "S1GRD", "S1RTC", "DEM")
TEMPORAL_POOLINGS = ("mean", "max", "concat")

_HEAD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_CHUNK = 8 << 20


# ----------------------------------------------------------------------------------------
# Config schema
# ----------------------------------------------------------------------------------------
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
    """What the raw values are (documentation: ``DN``, ``dB``, ``m``)."""


@dataclass(frozen=True)
class HeadSpec:
    """One segmentation head: its classes, display colours and decision threshold."""

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


@dataclass(frozen=True)
class S2OffsetRule:
    """How Sentinel-2 L2A DN are harmonised before standardisation (training and inference alike)."""

    offset_dn: int = 1000
    """DN subtracted from items that carry the processing-baseline offset (then clipped at ``clip_min``)."""
    from_baseline: str = "04.00"
    """Items whose ``s2:processing_baseline`` is at least this carry the offset (BOA_ADD_OFFSET)."""
    clip_min: float = 0.0
    """Lower clip after subtracting, in DN."""


def onnx_graph_file(modalities: Sequence[str], all_modalities: Sequence[str]) -> str:
    """File name of the exported graph for ``modalities``: ``model.onnx`` for all of them,
    else ``model.<names joined by ->.onnx`` (``model.S2L2A-DEM.onnx``), names in model order."""
    names = [m for m in all_modalities if m in modalities]
    if tuple(names) == tuple(all_modalities):
        return ONNX_FILE
    return f"model.{'-'.join(names)}.onnx"


@dataclass(frozen=True)
class OnnxGraph:
    """One exported ONNX graph: the network run on one subset of the modalities."""

    modalities: tuple[str, ...]
    """Its inputs, in model order; each ``(batch, bands, tile, tile)`` float32 (``(batch, bands, T,
    tile, tile)`` when T > 1), standardised, named after the modality. Its outputs are the head
    logits ``(batch, classes, tile, tile)``, named after the heads."""
    file: str
    """File name in the artifact directory (:func:`onnx_graph_file`)."""
    sha256: str
    """sha256 (hex) of that file."""


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`~terramind_nyc.model.export_onnx.export_onnx` wrote, recorded in ``config.json``."""

    graphs: tuple[OnnxGraph, ...]
    """One graph per exported modality subset; the one with every modality is ``model.onnx``."""
    data_sha256: str
    """sha256 (hex) of :attr:`data_file`, the weights every graph reads (stored once)."""
    source_sha256: str
    """sha256 (hex) of the ``model.safetensors`` the graphs were exported from."""
    opset: int
    """ONNX opset of the graphs."""
    exporter: str
    """Exporter and versions, e.g. ``torch.onnx torchscript (torch 2.13.0, onnx 1.23.2)``."""
    max_abs_diff: float
    """Largest absolute difference of ONNX Runtime's softmax probabilities from torch's (IEEE
    float32) over every graph, in the verification on random inputs at export time."""
    tolerance: float = 1e-4
    """The bound :attr:`max_abs_diff` was checked against."""
    argmax_agreement: float = 1.0
    """Smallest share (0..1) of pixels, over every graph and head, whose argmax class ONNX Runtime
    and torch agreed on in that verification."""
    precision: str = "float32"
    """Weights and arithmetic of the graphs: ``float32``, or ``float16`` (inputs and outputs
    stay float32; meant for GPU execution providers)."""
    data_file: str = ONNX_DATA_FILE
    """File name of the shared external-data (weights) file."""
    created: str = ""
    """When the export was made (ISO 8601 UTC)."""

    @property
    def subsets(self) -> tuple[tuple[str, ...], ...]:
        """The modality subsets a graph exists for."""
        return tuple(g.modalities for g in self.graphs)

    def graph_for(self, modalities: Sequence[str]) -> OnnxGraph | None:
        """The graph whose inputs are exactly ``modalities`` (any order), or None."""
        want = set(modalities)
        return next((g for g in self.graphs if set(g.modalities) == want), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the ``onnx`` entry of ``config.json``)."""
        return {
            "graphs": [{"modalities": list(g.modalities), "file": g.file, "sha256": g.sha256} for g in self.graphs],
            "data_file": self.data_file,
            "data_sha256": self.data_sha256,
            "source_sha256": self.source_sha256,
            "opset": self.opset,
            "exporter": self.exporter,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "argmax_agreement": self.argmax_agreement,
            "precision": self.precision,
            "created": self.created,
        }


_S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
#: TerraMind v1 pretraining statistics (terratorch ``terramind_register.py``; DESIGN section 2).
DEFAULT_MODALITIES: tuple[ModalitySpec, ...] = (
    ModalitySpec(
        "S2L2A", _S2_BANDS,
        (1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988,
         2424.884, 1857.648),
        (2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379,
         1434.261, 1334.311),
        "DN (reflectance x 10000, baseline offset removed)",
    ),
    ModalitySpec("S1RTC", ("vv", "vh"), (-10.93, -17.329), (4.391, 4.459), "dB"),
    ModalitySpec("DEM", ("data",), (670.665,), (951.272,), "m"),
)
#: The default heads: ESA WorldCover-derived land cover and NYC building footprints.
DEFAULT_HEADS: tuple[HeadSpec, ...] = (
    HeadSpec(
        "lulc", ("water", "developed", "forest", "herbaceous", "other"),
        ("#1f78b4", "#e31a1c", "#33a02c", "#b2df8a", "#bdbdbd"),
        description="Land cover from ESA WorldCover 2021 v200: water 80/90/95, developed 50, forest 10/20, "
        "herbaceous 30/40, other 60/70/100",
    ),
    HeadSpec(
        "buildings", ("background", "building"), ("#000000", "#ff7f00"), threshold=0.5,
        description="Building footprint (NYC Open Data 5zhs-2jue rasterised on the chip grid)",
    ),
)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild, feed and interpret a checkpoint (``config.json``).

    ``ModelConfig()`` is the default two-head base model. Construction validates every field
    and raises :class:`~terramind_nyc.errors.CheckpointError` naming the bad one.
    """

    name: str = "terramind-nyc-multihead"
    """Model name."""
    version: str = "0.0.0"
    """Model version (of the weights, not of this library)."""
    encoder: str = "terramind_v1_base"
    """TerraMind encoder: ``terramind_v1_{tiny,small,base,large}``."""
    modalities: tuple[ModalitySpec, ...] = DEFAULT_MODALITIES
    """Input modalities in model order; any non-empty subset can be given at inference."""
    heads: tuple[HeadSpec, ...] = DEFAULT_HEADS
    """Output heads in order, one UNet decoder + segmentation head each."""
    timesteps: int = 1
    """T: time steps per input (1 = single date; >1 runs the encoder through terratorch's TemporalWrapper)."""
    temporal_pooling: str = "mean"
    """How encoder features of the T time steps are pooled: ``mean``, ``max`` or ``concat``."""
    tile_size: int = 224
    """Side in pixels of the square tiles the model sees (multiple of 32)."""
    decoder_channels: tuple[int, ...] = (512, 256, 128, 64)
    """UNet decoder channels per head (four stages)."""
    neck_indices: tuple[int, ...] | None = None
    """Encoder blocks fed to the neck; None: [2, 5, 8, 11] (large: [5, 11, 17, 23])."""
    s2_offset: S2OffsetRule = S2OffsetRule()
    """Sentinel-2 DN harmonisation rule the weights were trained with."""
    license: str = "Apache-2.0"
    """Licence of the weights."""
    training: Mapping[str, Any] = field(default_factory=dict)
    """Training provenance (dataset, split, hyper-parameters, run); free-form, JSON-safe."""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    """Evaluation metrics (test split, threshold choice); free-form, JSON-safe."""
    onnx: OnnxExport | None = None
    """The ONNX export in the artifact (None: none); written by ``terramind-nyc export-onnx``."""
    schema_version: int = SCHEMA_VERSION
    """Version of this schema; only :data:`SCHEMA_VERSION` is read."""

    def __post_init__(self) -> None:
        _validate_config(self)

    # --- views -----------------------------------------------------------------------------
    @property
    def encoder_size(self) -> str:
        """``tiny``, ``small``, ``base`` or ``large``."""
        return self.encoder.removeprefix("terramind_v1_")

    @property
    def encoder_depth(self) -> int:
        """Number of transformer blocks of the encoder."""
        return ENCODERS[self.encoder][0]

    @property
    def resolved_neck_indices(self) -> tuple[int, ...]:
        """Encoder blocks fed to the neck (``neck_indices`` or the size's default)."""
        if self.neck_indices is not None:
            return self.neck_indices
        return (5, 11, 17, 23) if self.encoder_depth == 24 else (2, 5, 8, 11)

    @property
    def modality_names(self) -> tuple[str, ...]:
        """Modality keys in model order."""
        return tuple(m.name for m in self.modalities)

    @property
    def head_names(self) -> tuple[str, ...]:
        """Head keys in output order."""
        return tuple(h.name for h in self.heads)

    def modality(self, name: str) -> ModalitySpec:
        """The spec of modality ``name`` (KeyError if absent)."""
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(name)

    def head(self, name: str) -> HeadSpec:
        """The spec of head ``name`` (KeyError if absent)."""
        for h in self.heads:
            if h.name == name:
                return h
        raise KeyError(name)

    def architecture(self) -> dict[str, Any]:
        """The fields that fix the network's structure (weights names and shapes)."""
        return {
            "encoder": self.encoder,
            "modalities": [(m.name, len(m.bands)) for m in self.modalities],
            "heads": [(h.name, len(h.classes)) for h in self.heads],
            "timesteps": self.timesteps,
            "temporal_pooling": self.temporal_pooling if self.timesteps > 1 else None,
            "decoder_channels": list(self.decoder_channels),
            "neck_indices": list(self.resolved_neck_indices),
        }

    def replace(self, **changes: Any) -> ModelConfig:
        """A validated copy with ``changes`` applied."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise CheckpointError(f"invalid model config change: {exc}") from None

    # --- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict, the content of ``config.json``."""
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "encoder": self.encoder,
            "modalities": [
                {"name": m.name, "bands": list(m.bands), "mean": list(m.mean), "std": list(m.std), "units": m.units}
                for m in self.modalities
            ],
            "heads": [
                {"name": h.name, "classes": list(h.classes), "colors": list(h.colors), "threshold": h.threshold,
                 "description": h.description}
                for h in self.heads
            ],
            "timesteps": self.timesteps,
            "temporal_pooling": self.temporal_pooling,
            "tile_size": self.tile_size,
            "decoder_channels": list(self.decoder_channels),
            "neck_indices": None if self.neck_indices is None else list(self.neck_indices),
            "s2_offset": dataclasses.asdict(self.s2_offset),
            "license": self.license,
            "training": _jsonable(self.training, "training"),
            "metrics": _jsonable(self.metrics, "metrics"),
            "onnx": None if self.onnx is None else self.onnx.to_dict(),
        }

    def to_json(self) -> str:
        """``config.json`` text."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> ModelConfig:
        """Parse and validate a ``config.json`` dict; errors name ``source`` and the field."""
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            if version is None:
                raise CheckpointError(f"{source} has no schema_version; it is not a terramind_nyc checkpoint config")
            raise CheckpointError(
                f"{source} has schema_version {version!r}; this terramind-nyc reads schema version "
                f"{SCHEMA_VERSION}: upgrade terramind-nyc, or re-export the checkpoint with this version"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{source}: unknown field(s) {unknown} for schema version {SCHEMA_VERSION}")
        kw: dict[str, Any] = {}
        try:
            for key in ("name", "version", "encoder", "temporal_pooling", "license"):
                if key in data:
                    kw[key] = _expect(data[key], str, key)
            for key in ("timesteps", "tile_size"):
                if key in data:
                    kw[key] = _expect(data[key], int, key)
            if "modalities" in data:
                kw["modalities"] = tuple(_modality(m, f"modalities[{i}]")
                                         for i, m in enumerate(_expect(data["modalities"], list, "modalities")))
            if "heads" in data:
                kw["heads"] = tuple(_head(h, f"heads[{i}]")
                                    for i, h in enumerate(_expect(data["heads"], list, "heads")))
            if "decoder_channels" in data:
                kw["decoder_channels"] = _int_tuple(data["decoder_channels"], "decoder_channels")
            if data.get("neck_indices") is not None:
                kw["neck_indices"] = _int_tuple(data["neck_indices"], "neck_indices")
            if "s2_offset" in data:
                s2 = _expect(data["s2_offset"], dict, "s2_offset")
                extra = sorted(set(s2) - {f.name for f in dataclasses.fields(S2OffsetRule)})
                if extra:
                    raise CheckpointError(f"s2_offset: unknown field(s) {extra}")
                kw["s2_offset"] = S2OffsetRule(
                    offset_dn=_expect(s2.get("offset_dn", 1000), int, "s2_offset.offset_dn"),
                    from_baseline=_expect(s2.get("from_baseline", "04.00"), str, "s2_offset.from_baseline"),
                    clip_min=float(_expect(s2.get("clip_min", 0.0), (int, float), "s2_offset.clip_min")),
                )
            for key in ("training", "metrics"):
                if data.get(key) is not None:
                    kw[key] = dict(_expect(data[key], dict, key))
            if data.get("onnx") is not None:
                kw["onnx"] = _onnx_export(data["onnx"], "onnx")
            return cls(schema_version=version, **kw)
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}") from None


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kind is not bool and (kind is int or (isinstance(kind, tuple) and int in kind)):
        raise CheckpointError(f"`{where}` must be a number, got {value!r}")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise CheckpointError(f"`{where}` must be {names}, got {type(value).__name__} {value!r}"[:300])
    return value


def _int_tuple(value: Any, where: str) -> tuple[int, ...]:
    return tuple(_expect(v, int, f"{where}[{i}]") for i, v in enumerate(_expect(value, list, where)))


def _str_tuple(value: Any, where: str) -> tuple[str, ...]:
    return tuple(_expect(v, str, f"{where}[{i}]") for i, v in enumerate(_expect(value, list, where)))


def _float_tuple(value: Any, where: str) -> tuple[float, ...]:
    return tuple(float(_expect(v, (int, float), f"{where}[{i}]")) for i, v in enumerate(_expect(value, list, where)))


def _modality(d: Any, where: str) -> ModalitySpec:
    d = _expect(d, dict, where)
    extra = sorted(set(d) - {"name", "bands", "mean", "std", "units"})
    if extra:
        raise CheckpointError(f"{where}: unknown field(s) {extra}")
    for key in ("name", "bands", "mean", "std"):
        if key not in d:
            raise CheckpointError(f"{where}: missing `{key}`")
    return ModalitySpec(
        name=_expect(d["name"], str, f"{where}.name"),
        bands=_str_tuple(d["bands"], f"{where}.bands"),
        mean=_float_tuple(d["mean"], f"{where}.mean"),
        std=_float_tuple(d["std"], f"{where}.std"),
        units=_expect(d.get("units", ""), str, f"{where}.units"),
    )


def _head(d: Any, where: str) -> HeadSpec:
    d = _expect(d, dict, where)
    extra = sorted(set(d) - {"name", "classes", "colors", "threshold", "description"})
    if extra:
        raise CheckpointError(f"{where}: unknown field(s) {extra}")
    for key in ("name", "classes", "colors"):
        if key not in d:
            raise CheckpointError(f"{where}: missing `{key}`")
    thr = d.get("threshold")
    return HeadSpec(
        name=_expect(d["name"], str, f"{where}.name"),
        classes=_str_tuple(d["classes"], f"{where}.classes"),
        colors=_str_tuple(d["colors"], f"{where}.colors"),
        threshold=None if thr is None else float(_expect(thr, (int, float), f"{where}.threshold")),
        description=_expect(d.get("description", ""), str, f"{where}.description"),
    )


def _onnx_export(d: Any, where: str) -> OnnxExport:
    d = _expect(d, dict, where)
    known = {f.name for f in dataclasses.fields(OnnxExport)}
    extra = sorted(set(d) - known)
    if extra:
        raise CheckpointError(f"{where}: unknown field(s) {extra}")
    for key in ("graphs", "data_sha256", "source_sha256", "opset", "exporter", "max_abs_diff"):
        if key not in d:
            raise CheckpointError(f"{where}: missing `{key}`")
    graphs = []
    for i, g in enumerate(_expect(d["graphs"], list, f"{where}.graphs")):
        w = f"{where}.graphs[{i}]"
        g = _expect(g, dict, w)
        extra = sorted(set(g) - {"modalities", "file", "sha256"})
        if extra:
            raise CheckpointError(f"{w}: unknown field(s) {extra}")
        for key in ("modalities", "file", "sha256"):
            if key not in g:
                raise CheckpointError(f"{w}: missing `{key}`")
        graphs.append(OnnxGraph(_str_tuple(g["modalities"], f"{w}.modalities"), _expect(g["file"], str, f"{w}.file"),
                                _expect(g["sha256"], str, f"{w}.sha256")))
    return OnnxExport(
        graphs=tuple(graphs),
        data_sha256=_expect(d["data_sha256"], str, f"{where}.data_sha256"),
        source_sha256=_expect(d["source_sha256"], str, f"{where}.source_sha256"),
        opset=_expect(d["opset"], int, f"{where}.opset"),
        exporter=_expect(d["exporter"], str, f"{where}.exporter"),
        max_abs_diff=float(_expect(d["max_abs_diff"], (int, float), f"{where}.max_abs_diff")),
        tolerance=float(_expect(d.get("tolerance", 1e-4), (int, float), f"{where}.tolerance")),
        argmax_agreement=float(_expect(d.get("argmax_agreement", 1.0), (int, float), f"{where}.argmax_agreement")),
        precision=_expect(d.get("precision", "float32"), str, f"{where}.precision"),
        data_file=_expect(d.get("data_file", ONNX_DATA_FILE), str, f"{where}.data_file"),
        created=_expect(d.get("created", ""), str, f"{where}.created"),
    )


def _validate_onnx(c: ModelConfig) -> None:
    e = c.onnx
    if e is None:
        return
    if not isinstance(e, OnnxExport):
        raise CheckpointError(f"`onnx` must be an OnnxExport record, got {type(e).__name__}")
    if not e.graphs:
        raise CheckpointError("`onnx.graphs` must list at least one graph")
    names = c.modality_names
    files: list[str] = []
    subsets: list[frozenset[str]] = []
    for g in e.graphs:
        where = f"onnx graph {g.file!r}"
        if not g.modalities or any(m not in names for m in g.modalities):
            raise CheckpointError(f"{where}: modalities {list(g.modalities)} must be a non-empty subset of {list(names)}")
        if list(g.modalities) != [m for m in names if m in g.modalities]:
            raise CheckpointError(f"{where}: modalities {list(g.modalities)} must be in model order {list(names)}")
        if not _FILE_NAME.match(g.file) or not g.file.endswith(".onnx"):
            raise CheckpointError(f"{where}: the file must be a plain *.onnx file name in the artifact directory")
        if not _SHA256.match(g.sha256):
            raise CheckpointError(f"{where}: `sha256` must be 64 lower-case hex digits")
        files.append(g.file)
        subsets.append(frozenset(g.modalities))
    _unique(files, "onnx graph files")
    if len(set(subsets)) != len(subsets):
        raise CheckpointError("`onnx.graphs` lists a modality subset twice")
    if not _FILE_NAME.match(e.data_file) or e.data_file in files:
        raise CheckpointError(f"`onnx.data_file` must be a plain file name other than a graph's, got {e.data_file!r}")
    for key in ("data_sha256", "source_sha256"):
        if not isinstance(getattr(e, key), str) or not _SHA256.match(getattr(e, key)):
            raise CheckpointError(f"`onnx.{key}` must be 64 lower-case hex digits")
    if not isinstance(e.opset, int) or isinstance(e.opset, bool) or not 7 <= e.opset <= 99:
        raise CheckpointError(f"`onnx.opset` must be an ONNX opset number, got {e.opset!r}")
    for key in ("max_abs_diff", "tolerance"):
        v = getattr(e, key)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise CheckpointError(f"`onnx.{key}` must be a finite number >= 0, got {v!r}")
    if not isinstance(e.argmax_agreement, (int, float)) or not 0.0 <= e.argmax_agreement <= 1.0:
        raise CheckpointError(f"`onnx.argmax_agreement` is a fraction 0..1, got {e.argmax_agreement!r}")
    if e.precision not in ONNX_PRECISIONS:
        raise CheckpointError(f"`onnx.precision` must be one of {list(ONNX_PRECISIONS)}, got {e.precision!r}")


def _jsonable(value: Any, where: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"`{where}` must be JSON-safe (no NaN, numpy or tensors): {exc}") from None


def _unique(names: Sequence[str], where: str) -> None:
    dup = sorted({n for n in names if list(names).count(n) > 1})
    if dup:
        raise CheckpointError(f"`{where}` has duplicates: {dup}")


def _validate_config(c: ModelConfig) -> None:
    if c.schema_version != SCHEMA_VERSION:
        raise CheckpointError(f"schema_version must be {SCHEMA_VERSION}, got {c.schema_version!r}")
    for key in ("name", "version"):
        if not isinstance(getattr(c, key), str) or not getattr(c, key):
            raise CheckpointError(f"`{key}` must be a non-empty string")
    if c.encoder not in ENCODERS:
        raise CheckpointError(f"unknown encoder {c.encoder!r}; choose one of {sorted(ENCODERS)}")
    if not c.modalities:
        raise CheckpointError("`modalities` must list at least one modality")
    _unique([m.name for m in c.modalities], "modalities")
    for m in c.modalities:
        where = f"modality {m.name!r}"
        if m.name not in KNOWN_MODALITIES:
            raise CheckpointError(f"{where}: unknown modality; TerraMind takes {list(KNOWN_MODALITIES)}")
        if not m.bands or not all(isinstance(b, str) and b for b in m.bands):
            raise CheckpointError(f"{where}: `bands` must be a non-empty list of band names")
        _unique(m.bands, f"{where} bands")
        for key in ("mean", "std"):
            vals = getattr(m, key)
            if len(vals) != len(m.bands):
                raise CheckpointError(f"{where}: {len(vals)} `{key}` values for {len(m.bands)} bands")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
                raise CheckpointError(f"{where}: `{key}` values must be finite numbers")
        if not all(v > 0 for v in m.std):
            raise CheckpointError(f"{where}: every `std` must be > 0")
    if not c.heads:
        raise CheckpointError("`heads` must list at least one head")
    _unique([h.name for h in c.heads], "heads")
    for h in c.heads:
        where = f"head {h.name!r}"
        if not isinstance(h.name, str) or not _HEAD_NAME.match(h.name):
            raise CheckpointError(f"{where}: name must be a lower-case identifier (a-z, 0-9, _), up to 32 characters")
        if len(h.classes) < 2 or not all(isinstance(k, str) and k for k in h.classes):
            raise CheckpointError(f"{where}: `classes` must name at least two classes")
        _unique(h.classes, f"{where} classes")
        if len(h.colors) != len(h.classes) or not all(isinstance(k, str) and _COLOR.match(k) for k in h.colors):
            raise CheckpointError(f"{where}: `colors` must give one #rrggbb colour per class ({len(h.classes)})")
        if h.threshold is not None:
            if len(h.classes) != 2:
                raise CheckpointError(f"{where}: `threshold` applies to two-class heads only")
            if not (isinstance(h.threshold, (int, float)) and 0.0 < h.threshold < 1.0):
                raise CheckpointError(f"{where}: `threshold` must lie strictly between 0 and 1, got {h.threshold!r}")
    if not isinstance(c.timesteps, int) or isinstance(c.timesteps, bool) or c.timesteps < 1:
        raise CheckpointError(f"`timesteps` must be an integer >= 1, got {c.timesteps!r}")
    if c.temporal_pooling not in TEMPORAL_POOLINGS:
        raise CheckpointError(f"`temporal_pooling` must be one of {list(TEMPORAL_POOLINGS)}, got {c.temporal_pooling!r}")
    if not isinstance(c.tile_size, int) or isinstance(c.tile_size, bool) or c.tile_size < 64 or c.tile_size % 32:
        raise CheckpointError(f"`tile_size` must be a multiple of 32 and >= 64, got {c.tile_size!r}")
    if len(c.decoder_channels) != 4 or not all(isinstance(v, int) and v > 0 for v in c.decoder_channels):
        raise CheckpointError(f"`decoder_channels` must be four positive integers, got {list(c.decoder_channels)}")
    if c.neck_indices is not None:
        depth = ENCODERS[c.encoder][0]
        if len(c.neck_indices) != 4 or not all(isinstance(i, int) and 0 <= i < depth for i in c.neck_indices):
            raise CheckpointError(f"`neck_indices` must be four block indices in 0..{depth - 1}, got {c.neck_indices}")
    if not isinstance(c.s2_offset, S2OffsetRule) or c.s2_offset.offset_dn < 0:
        raise CheckpointError("`s2_offset.offset_dn` must be >= 0")
    for key in ("training", "metrics"):
        if not isinstance(getattr(c, key), Mapping):
            raise CheckpointError(f"`{key}` must be a JSON object")
    _validate_onnx(c)


# ----------------------------------------------------------------------------------------
# Locating an artifact
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtifactFiles:
    """Where an artifact's files are on this machine."""

    source: str
    """The checkpoint as given: a directory or a Hugging Face repo id."""
    revision: str | None
    """Hugging Face revision asked for (None: the default branch, or a local directory)."""
    directory: Path
    """Local directory holding the files (the hub cache snapshot for a repo id)."""
    config: Path
    """``config.json``."""
    weights: Path
    """``model.safetensors``."""
    onnx: Path | None
    """``model.onnx`` when the artifact has one (and it was asked for)."""


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOW_TO_FIX = (
    "point TERRAMIND_NYC_CHECKPOINT (or Settings(checkpoint=...)) at a local artifact directory holding "
    f"{CONFIG_FILE} and {WEIGHTS_FILE}, or train one with `python -m training` (see docs/checkpoint.md)"
)


def _looks_like_repo_id(source: str) -> bool:
    return bool(_REPO_ID.match(source)) and ".." not in source


def locate_artifact(source: str | os.PathLike[str], *, revision: str | None = None,
                    onnx: bool = False) -> ArtifactFiles:
    """Find (and for a repo id, download into the Hugging Face cache) an artifact's files.

    ``source`` is an existing local directory, else a Hugging Face repo id ``owner/name``.
    ``revision`` pins a hub tag, branch or commit (ignored for local directories). ``onnx``
    also fetches ``model.onnx`` when the artifact has one. Raises CheckpointNotFoundError.
    """
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
        raise InvalidInputError(f"checkpoint must be a directory or a Hugging Face repo id, got {source!r}")
    src = os.fspath(source)
    path = Path(src).expanduser()
    if path.exists() or not _looks_like_repo_id(src):
        if not path.is_dir():
            raise CheckpointNotFoundError(f"checkpoint {src!r}: no such directory; {_HOW_TO_FIX}")
        if revision is not None:
            log.debug("revision %r ignored for local checkpoint %s", revision, path)
        files = {}
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            f = path / name
            if not f.is_file():
                raise CheckpointNotFoundError(
                    f"checkpoint {src!r} has no {name} (an artifact holds {CONFIG_FILE} and {WEIGHTS_FILE}); "
                    f"{_HOW_TO_FIX}"
                )
            files[name] = f
        onnx_path = path / ONNX_FILE if (path / ONNX_FILE).is_file() else None
        return ArtifactFiles(src, None, path, files[CONFIG_FILE], files[WEIGHTS_FILE], onnx_path)
    config = _hub_file(src, CONFIG_FILE, revision)
    weights = _hub_file(src, WEIGHTS_FILE, revision)
    assert config is not None and weights is not None  # not optional: missing raises
    onnx_path = _hub_file(src, ONNX_FILE, revision, optional=True) if onnx else None
    return ArtifactFiles(src, revision, config.parent, config, weights, onnx_path)


_PROBE_TTL_S = 30.0
_probes: dict[str, tuple[bool, float]] = {}  # endpoint -> (reachable, valid until)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The exception types meaning "no answer from the server" in huggingface_hub's HTTP stack."""
    import importlib

    errors: list[type[BaseException]] = [OSError]  # requests' ConnectionError / Timeout are OSErrors
    for name in ("httpx2", "httpx"):  # huggingface_hub 2.x / 1.x
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _hub_reachable(repo_id: str, filename: str, revision: str | None) -> bool:
    """False when the hub gives no answer at all (offline mode, DNS, refused, timeout), from one
    HEAD request without retries. The answer is kept for 30 s per endpoint, so the files of one
    load cost one probe. Any HTTP answer, errors included, counts as reachable (the download
    then reports it)."""
    import time as _time

    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = constants.ENDPOINT
    known = _probes.get(endpoint)
    if known is not None and known[1] > _time.monotonic():
        return known[0]
    reachable = True
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=10)
    except HfHubHTTPError:  # an HTTP answer (404, 401, 5xx, ...): an OSError too, so caught first
        pass
    except _transport_errors() as exc:
        log.info("the Hugging Face hub at %s is not reachable (%s); using the local cache only",
                 endpoint, type(exc).__name__)
        reachable = False
    except Exception:  # noqa: BLE001 - anything else (a malformed id, ...): hf_hub_download reports it
        pass
    _probes[endpoint] = (reachable, _time.monotonic() + _PROBE_TTL_S)
    return reachable


def _hub_file(repo_id: str, filename: str, revision: str | None, *, optional: bool = False) -> Path | None:
    """One file of a hub repo through huggingface_hub's cache (offline use works once cached)."""
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    where = f"{repo_id}@{revision}" if revision else repo_id
    # huggingface_hub retries a failed connection for ~25 s per file; ask once without retries
    # first and, when the hub cannot be reached at all, use only the local cache.
    offline = not _hub_reachable(repo_id, filename, revision)
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision,
                                                    local_files_only=offline))
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as exc:
        raise CheckpointNotFoundError(
            f"checkpoint {where!r} is not a local directory and the Hugging Face hub has no such "
            f"{'revision' if isinstance(exc, hf_errors.RevisionNotFoundError) else 'repository'} "
            f"({type(exc).__name__}); {_HOW_TO_FIX}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - offline, timeouts, HTTP errors: all mean "not available"
        # LocalEntryNotFoundError (offline or the hub unreachable, the file not cached) derives
        # from EntryNotFoundError in some huggingface_hub versions: it is not "the repo lacks it".
        no_answer = isinstance(exc, hf_errors.LocalEntryNotFoundError)
        if optional:
            log.debug("optional %s of %s not available: %s", filename, where, exc)
            return None
        if isinstance(exc, hf_errors.EntryNotFoundError) and not no_answer:
            reason = f"the Hugging Face hub has no {filename} in it"
        elif no_answer:
            reason = (f"{filename} is not in the local Hugging Face cache and the hub could not be reached "
                      "(offline, HF_HUB_OFFLINE=1, or a network error)")
        else:
            reason = (f"{filename} is not in the local Hugging Face cache and could not be downloaded "
                      f"({type(exc).__name__}: {str(exc)[:200]})")
        raise CheckpointNotFoundError(f"checkpoint {where!r}: {reason}; {_HOW_TO_FIX}") from None


def read_config(source: str | os.PathLike[str], *, revision: str | None = None) -> ModelConfig:
    """The validated :class:`ModelConfig` of an artifact directory, repo id, or config.json path."""
    path = Path(os.fspath(source)).expanduser()
    if path.is_file():
        return _read_config_file(path, str(path))
    files = locate_artifact(source, revision=revision)
    return _read_config_file(files.config, f"{files.source}: {CONFIG_FILE}")


def _read_config_file(path: Path, label: str) -> ModelConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"{label}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{label}: cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{label} is not valid JSON ({exc}); re-download or re-export the checkpoint") from None
    return ModelConfig.from_dict(data, source=label)


# ----------------------------------------------------------------------------------------
# The ONNX export, located and verified without torch
# ----------------------------------------------------------------------------------------
_EXPORT_HINT = "create it with `terramind-nyc export-onnx {src}` (needs the torch extra), or use backend torch"


@dataclass(frozen=True)
class OnnxFiles:
    """Where an artifact's ONNX export is on this machine, and what ``config.json`` says of it."""

    source: str
    """The checkpoint as given: a directory or a Hugging Face repo id."""
    revision: str | None
    """Hugging Face revision asked for (None: the default branch, or a local directory)."""
    config: ModelConfig
    """The artifact's validated config (its ``onnx`` record is not None)."""
    graphs: Mapping[tuple[str, ...], Path]
    """Modality subset (model order) -> graph file."""
    data: Path
    """The shared external-data (weights) file."""

    @property
    def export(self) -> OnnxExport:
        """The export record of ``config.json``."""
        assert self.config.onnx is not None
        return self.config.onnx

    def describe(self) -> dict[str, Any]:
        """JSON-safe identity of the checkpoint (same keys as :meth:`Artifact.describe`, plus ``onnx``).

        ``sha256`` is that of the ``model.safetensors`` the graphs were exported from, so that
        results of both backends name the same weights."""
        c, e = self.config, self.export
        main = e.graph_for(c.modality_names) or e.graphs[0]
        return {
            "id": self.source,
            "revision": self.revision,
            "name": c.name,
            "version": c.version,
            "encoder": c.encoder,
            "schema_version": c.schema_version,
            "sha256": e.source_sha256,
            "license": c.license,
            "onnx": {"opset": e.opset, "exporter": e.exporter, "sha256": main.sha256, "data_sha256": e.data_sha256},
        }


def _config_only(source: str | os.PathLike[str], revision: str | None) -> tuple[str, Path, bool, ModelConfig]:
    """(source, local path, is local, config) reading only ``config.json`` (downloading only it)."""
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
        raise InvalidInputError(f"checkpoint must be a directory or a Hugging Face repo id, got {source!r}")
    src = os.fspath(source)
    path = Path(src).expanduser()
    local = path.exists() or not _looks_like_repo_id(src)
    if local:
        if not path.is_dir():
            raise CheckpointNotFoundError(f"checkpoint {src!r}: no such directory; {_HOW_TO_FIX}")
        config_path: Path = path / CONFIG_FILE
        if not config_path.is_file():
            raise CheckpointNotFoundError(f"checkpoint {src!r} has no {CONFIG_FILE}; {_HOW_TO_FIX}")
    else:
        got = _hub_file(src, CONFIG_FILE, revision)
        assert got is not None
        config_path = got
    return src, path, local, _read_config_file(config_path, f"checkpoint {src!r}: {CONFIG_FILE}")


def has_onnx_export(source: str | os.PathLike[str], *, revision: str | None = None) -> bool:
    """Whether the artifact's ``config.json`` records an ONNX export (and, for a local directory,
    its ``model.onnx`` is there). Reads only the config; an invalid config gives False (the torch
    path then reports it); a missing artifact raises CheckpointNotFoundError."""
    try:
        _, path, local, config = _config_only(source, revision)
    except CheckpointNotFoundError:
        raise  # no artifact at all: the torch path would only ask the hub again
    except CheckpointError:
        return False
    if config.onnx is None:
        return False
    return not local or (path / ONNX_FILE).is_file()


def locate_onnx(source: str | os.PathLike[str], *, revision: str | None = None, verify: bool = True) -> OnnxFiles:
    """Find (for a repo id: download) an artifact's ONNX export and check it against ``config.json``.

    Only ``config.json`` and the ONNX files are read (``model.safetensors`` is not needed).
    ``verify`` compares every file's sha256 with the record, so a truncated or corrupted graph
    or weights file is refused before ONNX Runtime sees it.

    Raises CheckpointNotFoundError when the artifact or its export is missing (the message says
    how to export) and CheckpointError for a bad config or a file that does not match its record.
    """
    src, path, local, config = _config_only(source, revision)
    if local:
        revision = None
    label = f"checkpoint {src!r}"
    export = config.onnx
    hint = _EXPORT_HINT.format(src=src)
    if export is None:
        stray = " (it holds a model.onnx, but from another tool or an older export)" if (
            local and (path / ONNX_FILE).exists()) else ""
        raise CheckpointNotFoundError(
            f"{label} has no ONNX export: {CONFIG_FILE} records none{stray}; {hint}"
        )

    def fetch(name: str) -> Path:
        if local:
            f = path / name
            if not f.is_file():
                raise CheckpointNotFoundError(f"{label}: {name} is missing although {CONFIG_FILE} records it; {hint}")
            return f
        got = _hub_file(src, name, revision)
        assert got is not None
        return got

    graphs = {g.modalities: fetch(g.file) for g in export.graphs}
    data = fetch(export.data_file)
    if verify:
        checks = [(g.file, graphs[g.modalities], g.sha256) for g in export.graphs]
        checks.append((export.data_file, data, export.data_sha256))
        for name, f, want in checks:
            try:
                got_sha = weights_sha256(f)
                size = f.stat().st_size
            except OSError as exc:
                raise CheckpointError(f"{label}: {name} cannot be read: {exc}") from None
            if got_sha != want:
                raise CheckpointError(
                    f"{label}: {name} is corrupt or truncated ({size} bytes, sha256 {got_sha[:12]}..., "
                    f"{CONFIG_FILE} records {want[:12]}...); re-download the artifact or re-run "
                    f"`terramind-nyc export-onnx {src}`"
                )
    return OnnxFiles(src, revision, config, graphs, data)


# ----------------------------------------------------------------------------------------
# safetensors, read without unpickling and without a second copy
# ----------------------------------------------------------------------------------------
#: safetensors dtype -> bytes per element.
_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_MAX_HEADER = 100 << 20


@dataclass(frozen=True)
class _Entry:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class _Header:
    entries: dict[str, _Entry]
    data_start: int
    metadata: dict[str, str]


def _read_header(path: Path) -> _Header:
    """Parse and validate a safetensors header (the checks the safetensors library makes)."""
    label = f"{path.name} ({path})"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{label} is truncated ({size} bytes): re-download or re-export the artifact")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                raise CheckpointError(
                    f"{label} is truncated or not a safetensors file (header of {n} bytes, file of {size} bytes): "
                    "re-download or re-export the artifact"
                )
            raw = f.read(n)
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"{label}: file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{label} cannot be read: {exc}") from None

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):
            raise CheckpointError(f"{label}: the header names a tensor twice")
        return d

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{label} has a corrupt header ({exc}): re-download or re-export the artifact") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{label} has a corrupt header (not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    entries: dict[str, _Entry] = {}
    for name, e in header.items():
        try:
            dtype, shape, (begin, end) = e["dtype"], tuple(e["shape"]), e["data_offsets"]
            ok = (dtype in _DTYPE_SIZES and all(isinstance(s, int) and s >= 0 for s in shape)
                  and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{label}: header entry {name!r} is malformed: {str(e)[:200]}")
        if (end - begin) != math.prod(shape) * _DTYPE_SIZES[dtype]:
            raise CheckpointError(f"{label}: tensor {name!r} of shape {list(shape)} {dtype} does not fit its "
                                  f"{end - begin} bytes")
        entries[name] = _Entry(dtype, shape, begin, end)
    data_start = 8 + n
    expected = 0
    for name, e in sorted(entries.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if e.begin != expected:
            raise CheckpointError(f"{label}: tensor data is not contiguous at {name!r} (corrupt file)")
        expected = e.end
    if data_start + expected != size:
        what = "truncated" if data_start + expected > size else "longer than its header says"
        raise CheckpointError(
            f"{label} is {what}: the header describes {expected} bytes of tensor data after byte {data_start}, "
            f"the file has {size} bytes; re-download or re-export the artifact"
        )
    return _Header(entries, data_start, {str(k): str(v) for k, v in meta.items()})


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a weights file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _torch_dtype_name(dtype: torch.dtype) -> str:
    import torch

    names = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL"}
    return names.get(dtype, str(dtype))


def _check_weights(header: _Header, expected: Mapping[str, torch.Tensor], config: ModelConfig, label: str) -> None:
    """Every weight's name, shape and dtype against the network the config describes."""
    have, want = set(header.entries), set(expected)
    missing, unexpected = sorted(want - have), sorted(have - want)
    shapes, dtypes = [], []
    for k in sorted(have & want):
        e, t = header.entries[k], expected[k]
        if e.shape != tuple(t.shape):
            shapes.append(f"{k} {list(e.shape)} (expected {list(t.shape)})")
        elif e.dtype != _torch_dtype_name(t.dtype):
            dtypes.append(f"{k} {e.dtype} (expected {_torch_dtype_name(t.dtype)})")
    if not (missing or unexpected or shapes or dtypes):
        return
    parts = []

    def some(items: Sequence[str]) -> str:
        return ", ".join(items[:6]) + (f", ... ({len(items) - 6} more)" if len(items) > 6 else "")

    # name the cause where it is a head's class count, the usual mismatch
    for h in config.heads:
        for k in sorted(have & want):
            if k.startswith(f"heads.{h.name}.") and k.endswith(".weight") and header.entries[k].shape != tuple(expected[k].shape):
                n = header.entries[k].shape[0] if header.entries[k].shape else "?"
                parts.append(f"head {h.name!r} has {n} classes in the weights but {len(h.classes)} in {CONFIG_FILE}")
                break
    if missing:
        parts.append(f"{len(missing)} weight(s) missing: {some(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weight(s): {some(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} weight(s) of another shape: {some(shapes)}")
    if dtypes:
        parts.append(f"{len(dtypes)} weight(s) of another dtype: {some(dtypes)}")
    raise CheckpointError(
        f"{label}: {WEIGHTS_FILE} does not match the network {CONFIG_FILE} describes ({config.encoder}, heads "
        f"{list(config.head_names)}, modalities {list(config.modality_names)}): " + "; ".join(parts)
    )


def _read_into(path: Path, header: _Header, targets: Mapping[str, torch.Tensor], label: str) -> str:
    """Read every tensor straight into ``targets`` (CPU) in file order; return the file's sha256."""
    import torch

    h = hashlib.sha256()
    order = sorted(header.entries.items(), key=lambda kv: kv[1].begin)
    try:
        with open(path, "rb") as f:
            h.update(f.read(header.data_start))
            for name, e in order:
                t = targets[name]
                direct = t.is_contiguous() and t.device.type == "cpu"
                dst = t if direct else torch.empty(t.shape, dtype=t.dtype)
                buf = dst.reshape(-1).view(torch.uint8).numpy()
                mv = memoryview(buf).cast("B")  # type: ignore[arg-type]
                got = 0
                while got < len(mv):
                    n = f.readinto(mv[got:])
                    if not n:
                        raise CheckpointError(f"{label}: {WEIGHTS_FILE} ended inside tensor {name!r} (truncated)")
                    got += n
                h.update(mv)
                if sys.byteorder != "little" and t.element_size() > 1:  # pragma: no cover - big-endian hosts
                    dst.copy_(torch.from_numpy(dst.numpy().byteswap()))
                if not direct:
                    t.copy_(dst)
    except OSError as exc:
        raise CheckpointError(f"{label}: {WEIGHTS_FILE} cannot be read: {exc}") from None
    return h.hexdigest()


# ----------------------------------------------------------------------------------------
# Loading and saving
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Artifact:
    """A loaded checkpoint: its config, the network with its weights, and where it came from."""

    config: ModelConfig
    """The validated config."""
    network: MultiHeadTerraMind
    """The network, weights loaded, prepared for inference (eval mode; see
    :meth:`~terramind_nyc.model.network.MultiHeadTerraMind.prepare_for_inference`), on ``device``."""
    sha256: str
    """sha256 (hex) of ``model.safetensors``."""
    files: ArtifactFiles
    """Where the files are."""
    device: str
    """Torch device the network is on."""

    @property
    def source(self) -> str:
        """The checkpoint as given (directory or repo id)."""
        return self.files.source

    def describe(self) -> dict[str, Any]:
        """JSON-safe identity of the checkpoint (for provenance and cache keys)."""
        return {
            "id": self.files.source,
            "revision": self.files.revision,
            "name": self.config.name,
            "version": self.config.version,
            "encoder": self.config.encoder,
            "schema_version": self.config.schema_version,
            "sha256": self.sha256,
            "license": self.config.license,
        }


def _publish(tmp: str | os.PathLike[str], dest: Path) -> None:
    """Give a temporary file the mode a new file would have (tempfile makes them 0600), then
    move it over ``dest`` atomically."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, dest)


def _onnx_files_in(directory: Path) -> list[Path]:
    """The ONNX export files in an artifact directory (graphs and external data)."""
    names = {ONNX_FILE, ONNX_DATA_FILE}
    return sorted(p for p in directory.iterdir() if p.is_file() and (
        p.name in names or (p.name.startswith("model.") and p.name.endswith(".onnx"))))


def load_artifact(source: str | os.PathLike[str], *, revision: str | None = None, device: str = "cpu") -> Artifact:
    """Load a checkpoint: validate the config, verify the weights, build the network.

    Args:
        source: a local artifact directory or a Hugging Face repo id (downloaded and cached by
            huggingface_hub; offline use works once cached).
        revision: hub tag, branch or commit to pin (ignored for a local directory).
        device: torch device to put the network on (``cpu``, ``cuda``, ``cuda:1``, ...).

    Raises CheckpointNotFoundError (missing directory, repo or file) and CheckpointError (bad
    config, unknown schema version, truncated or corrupt weights, weights that do not match the
    network the config describes). Nothing half-loaded is returned or kept.
    """
    files = locate_artifact(source, revision=revision)
    label = f"checkpoint {files.source!r}"
    config = _read_config_file(files.config, f"{label}: {CONFIG_FILE}")
    header = _read_header(files.weights)

    from .network import build_network

    # prepared (eval; channels-last convolutions on CPU) before the weights are read, so the
    # layout change never holds two copies of those weights
    network = build_network(config, pretrained=False).prepare_for_inference(device)
    targets = network.state_dict()
    _check_weights(header, targets, config, label)
    sha = _read_into(files.weights, header, targets, label)
    network.eval()
    if device != "cpu":
        network.to(device)
    log.info("loaded %s (%s %s, sha256 %s) on %s", files.source, config.name, config.version, sha[:12], device)
    return Artifact(config=config, network=network, sha256=sha, files=files, device=device)


def save_artifact(network: MultiHeadTerraMind, config: ModelConfig | None, directory: str | os.PathLike[str],
                  *, overwrite: bool = False) -> Path:
    """Write ``network``'s weights and ``config`` as an artifact directory; return its path.

    ``config`` defaults to the network's own; when given it may change anything but the
    architecture (names, version, class names, colours, threshold, statistics, provenance,
    metrics). An existing artifact is replaced only with ``overwrite=True``; a stale ONNX
    export (``model.onnx``, ``model.*.onnx``, ``model.onnx.data``) is then removed and the
    config's ``onnx`` record dropped, since they no longer match the weights (re-export with
    ``terramind-nyc export-onnx``). Files are written to temporary names first, so a failed
    save leaves no half-written artifact.
    """
    from safetensors.torch import save_file

    from .network import MultiHeadTerraMind

    if not isinstance(network, MultiHeadTerraMind):
        raise InvalidInputError(f"save_artifact needs a MultiHeadTerraMind network, got {type(network).__name__}")
    config = network.config if config is None else config
    if not isinstance(config, ModelConfig):
        raise InvalidInputError(f"config must be a ModelConfig, got {type(config).__name__}")
    if config.architecture() != network.config.architecture():
        raise InvalidInputError(
            "config describes another network than the one given: "
            f"{config.architecture()} vs the network's {network.config.architecture()}"
        )
    out = Path(os.fspath(directory)).expanduser()
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} exists and is not a directory")
    if config.onnx is not None:
        config = config.replace(onnx=None)
    existing = [n for n in (CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE) if (out / n).exists()]
    if existing and not overwrite:
        raise InvalidInputError(f"{out} already holds an artifact ({', '.join(existing)}); pass overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    text = config.to_json()
    tmp_w = tempfile.NamedTemporaryFile(dir=out, prefix=".model.", suffix=".tmp", delete=False)
    tmp_c = tempfile.NamedTemporaryFile(dir=out, prefix=".config.", suffix=".tmp", delete=False, mode="w")
    try:
        tmp_w.close()
        save_file(tensors, tmp_w.name, metadata={"format": "pt", "schema_version": str(SCHEMA_VERSION)})
        with tmp_c:
            tmp_c.write(text)
        for stale in _onnx_files_in(out):
            log.info("removing stale %s from %s", stale.name, out)
            stale.unlink()
        _publish(tmp_w.name, out / WEIGHTS_FILE)
        _publish(tmp_c.name, out / CONFIG_FILE)
    finally:
        for name in (tmp_w.name, tmp_c.name):
            if os.path.exists(name):
                os.unlink(name)
    log.info("saved artifact %s (%s %s)", out, config.name, config.version)
    return out
