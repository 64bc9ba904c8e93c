"""The checkpoint config (``config.json``): a typed, versioned, validated :class:`ModelConfig`.

It says everything needed to rebuild, feed and interpret a checkpoint: encoder, modalities with
band order and standardisation statistics, heads with classes, colours and threshold, tile size,
T, the S2 offset rule, provenance and metrics, and the ONNX export record
(:mod:`terramind_nyc.model.onnx_record`). Reading and validating it needs neither torch nor
terratorch. Band orders and the offset rule come from :mod:`terramind_nyc.sensors`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointError
from ..sensors import DEM_BANDS, S1_BANDS, S2_BANDS, S2OffsetRule
from . import _schema as schema
from .onnx_record import OnnxExport, check_onnx_record
from .specs import (
    KNOWN_MODALITIES,
    LORA_TARGETS,
    SHARED_ENCODER,
    TRANSFORMS,
    EncoderSpec,
    HeadSpec,
    LoraSpec,
    ModalitySpec,
    validate_encoders,
    validate_heads,
    validate_modalities,
)

__all__ = ["DEFAULT_HEADS", "DEFAULT_MODALITIES", "DEFAULT_TILE_SIZE", "ENCODERS", "KNOWN_MODALITIES", "MAX_JSON_DEPTH",
           "READABLE_SCHEMA_VERSIONS", "SCHEMA_VERSION", "SHARED_ENCODER", "TEMPORAL_POOLINGS", "TRANSFORMS",
           "LORA_TARGETS", "EncoderSpec", "HeadSpec", "LoraSpec", "ModalitySpec", "ModelConfig", "S2OffsetRule"]

#: Version of the config.json schema this library writes. Version 2 added per-head encoder
#: variants (``encoders``, ``heads[].encoder``), ``temporal_repeat`` and ``modalities[].transform``.
SCHEMA_VERSION = 2
#: Versions it reads: a version-1 config is a version-2 one with a single shared encoder (its
#: weights name the neck ``neck.*``; :func:`~terramind_nyc.model.network.v1_weight_name` maps them).
READABLE_SCHEMA_VERSIONS = (1, 2)
#: The fields a version-1 config may hold.
_V1_FIELDS = frozenset({"schema_version", "name", "version", "encoder", "modalities", "heads", "timesteps",
                        "temporal_pooling", "tile_size", "decoder_channels", "neck_indices", "s2_offset", "license",
                        "training", "metrics", "onnx"})
#: TerraMind v1 encoder sizes: name -> (depth, token dimension).
ENCODERS: Mapping[str, tuple[int, int]] = {
    "terramind_v1_tiny": (12, 192), "terramind_v1_small": (12, 384), "terramind_v1_base": (12, 768),
    "terramind_v1_large": (24, 1024)}
TEMPORAL_POOLINGS = ("mean", "max", "concat")
DEFAULT_TILE_SIZE = 224  #: Side in pixels of one model tile (TerraMind v1 takes 224 x 224).

#: Deepest nesting of lists and objects a config.json may have (the schema needs 4).
MAX_JSON_DEPTH = 32
_FIX = "fix config.json or re-export the checkpoint (docs/checkpoint.md)"


#: TerraMind v1 pretraining statistics (terratorch ``terramind_register.py``; DESIGN section 2).
DEFAULT_MODALITIES: tuple[ModalitySpec, ...] = (
    ModalitySpec(
        "S2L2A", S2_BANDS,
        (1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988,
         2424.884, 1857.648),
        (2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379,
         1434.261, 1334.311),
        "DN (reflectance x 10000, baseline offset removed)",
    ),
    ModalitySpec("S1RTC", S1_BANDS, (-10.93, -17.329), (4.391, 4.459), "dB"),
    ModalitySpec("DEM", DEM_BANDS, (670.665,), (951.272,), "m"),
)
#: The default heads: ESA WorldCover-derived land cover and NYC building footprints.
DEFAULT_HEADS: tuple[HeadSpec, ...] = (
    HeadSpec(
        "lulc", ("water", "developed", "forest", "herbaceous", "other"),
        ("#1f78b4", "#e31a1c", "#33a02c", "#b2df8a", "#bdbdbd"),
        description="Land cover from ESA WorldCover 2021 v200: water 80/90/95, developed 50, forest 10/20, "
        "herbaceous 30/40, other 60/70/100",
        labels=("Water", "Built-up / developed", "Trees / forest", "Grass / crop", "Bare / other"),
    ),
    HeadSpec(
        "buildings", ("background", "building"), ("#000000", "#ff7f00"), threshold=0.5,
        description="Building footprint (NYC Open Data 5zhs-2jue rasterised on the chip grid)",
        labels=("Background", "Building footprint"),
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
    temporal_repeat: bool = False
    """T > 1 only: the weights were trained on T identical copies of one acquisition. Inputs are
    then single-date and each encoder runs once, its features repeated T times (exactly what
    terratorch's TemporalWrapper computes from T identical time steps, T times cheaper)."""
    encoders: tuple[EncoderSpec, ...] = (EncoderSpec(),)
    """Encoder variants, each with its own neck; heads name the one they decode."""
    tile_size: int = DEFAULT_TILE_SIZE
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

    def __post_init__(self) -> None:  # every field checked: CheckpointError naming the bad one
        _validate_config(self)

    # --- views -----------------------------------------------------------------------------
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
    def input_timesteps(self) -> int:
        """Time steps an input holds: 1 when :attr:`temporal_repeat`, else :attr:`timesteps`."""
        return 1 if self.temporal_repeat else self.timesteps

    @property
    def encoder_names(self) -> tuple[str, ...]:
        """Encoder variant keys in order."""
        return tuple(e.name for e in self.encoders)

    @property
    def kind(self) -> str:
        """``shared-encoder`` (one encoder pass per tile batch feeds every head) or
        ``per-head-encoders`` (one pass per encoder variant, e.g. the published LoRA adapters)."""
        return "shared-encoder" if len(self.encoders) == 1 else "per-head-encoders"

    def checkpoint_kind(self) -> dict[str, Any]:
        """``kind`` (:attr:`kind`), ``encoder_passes`` (encoder runs per tile batch) and
        ``config_sha256`` (:meth:`fingerprint`), for provenance and cache keys."""
        return {"kind": self.kind, "encoder_passes": len(self.encoders), "config_sha256": self.fingerprint()}

    def fingerprint(self) -> str:
        """sha256 of every field that changes what the weights compute from raw inputs (architecture,
        statistics, transforms, tile size, offset rule, thresholds); not names, provenance or the
        ONNX record. Two configs with the same weights and fingerprint give the same answers."""
        d = self.to_dict()
        for key in ("name", "version", "license", "training", "metrics", "onnx", "schema_version"):
            d.pop(key, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def encoder_spec(self, name: str) -> EncoderSpec:
        """The spec of encoder variant ``name`` (KeyError if absent)."""
        return {e.name: e for e in self.encoders}[name]

    def heads_of(self, encoder: str) -> tuple[str, ...]:
        """Names of the heads that decode encoder variant ``encoder``, in head order."""
        return tuple(h.name for h in self.heads if h.encoder == encoder)

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
        return {m.name: m for m in self.modalities}[name]

    def head(self, name: str) -> HeadSpec:
        """The spec of head ``name`` (KeyError if absent)."""
        return {h.name: h for h in self.heads}[name]

    def architecture(self) -> dict[str, Any]:
        """The fields that fix the network's structure (weights names and shapes)."""
        return {
            "encoder": self.encoder, "modalities": [(m.name, len(m.bands)) for m in self.modalities],
            "heads": [(h.name, len(h.classes), h.encoder) for h in self.heads], "timesteps": self.timesteps,
            "temporal_pooling": self.temporal_pooling if self.timesteps > 1 else None,
            "temporal_repeat": self.temporal_repeat if self.timesteps > 1 else None,
            "encoders": [(e.name, None if e.lora is None else (e.lora.rank, list(e.lora.targets))) for e in self.encoders],
            "decoder_channels": list(self.decoder_channels), "neck_indices": list(self.resolved_neck_indices),
        }

    def replace(self, **changes: Any) -> ModelConfig:
        """A validated copy with ``changes`` applied."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise CheckpointError(f"invalid model config change: {exc}") from None

    # --- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict, the content of ``config.json`` (a version-1 config keeps its version and fields)."""
        out = {
            "schema_version": self.schema_version, "name": self.name, "version": self.version, "encoder": self.encoder,
            "modalities": [_plain(m) for m in self.modalities], "heads": [_plain(h) for h in self.heads],
            "timesteps": self.timesteps, "temporal_pooling": self.temporal_pooling,
            "temporal_repeat": self.temporal_repeat, "encoders": [_plain_encoder(e) for e in self.encoders],
            "tile_size": self.tile_size,
            "decoder_channels": list(self.decoder_channels),
            "neck_indices": None if self.neck_indices is None else list(self.neck_indices),
            "s2_offset": dataclasses.asdict(self.s2_offset), "license": self.license,
            "training": schema.jsonable(self.training, "training"), "metrics": schema.jsonable(self.metrics, "metrics"),
            "onnx": None if self.onnx is None else self.onnx.to_dict(),
        }
        if self.schema_version == 1:
            out = {k: v for k, v in out.items() if k in _V1_FIELDS}
        return out

    def to_json(self) -> str:
        """``config.json`` text."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "config") -> ModelConfig:
        """Parse and validate ``config.json`` text; every defect is a CheckpointError naming ``source``."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise CheckpointError(f"{source} nests JSON too deeply to be a checkpoint config; {_FIX}") from None
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
            raise CheckpointError(f"{source} is not valid JSON ({str(exc)[:200]}); {_FIX}") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> ModelConfig:
        """Parse and validate a ``config.json`` dict; errors name ``source`` and the field."""
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{source}: expected a JSON object, got {type(data).__name__}; {_FIX}")
        if _deeper_than(data, MAX_JSON_DEPTH):
            raise CheckpointError(f"{source} nests lists and objects deeper than {MAX_JSON_DEPTH} levels; {_FIX}")
        version = data.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS or type(version) is not int:
            if version is None:
                raise CheckpointError(f"{source} has no schema_version; it is not a terramind_nyc checkpoint config")
            raise CheckpointError(f"{source} has schema_version {reprlib.repr(version)}; this terramind-nyc reads schema "
                                  f"versions {list(READABLE_SCHEMA_VERSIONS)}: upgrade terramind-nyc, or re-export the "
                                  "checkpoint with it")
        known = _V1_FIELDS if version == 1 else {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{source}: unknown field(s) {reprlib.repr(unknown)} for schema version {version}")
        try:
            return cls(schema_version=version, **_fields_of(data))
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}; {_FIX}") from None
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. a number too large for a float
            raise CheckpointError(f"{source}: a value is out of range ({str(exc)[:200]}); {_FIX}") from None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and mappings in ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (Mapping, list, tuple)):
            if depth > limit:
                return True
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, Mapping) else v))
    return False


def _plain(spec: ModalitySpec | HeadSpec) -> dict[str, Any]:
    """A spec as a JSON-ready dict (tuples as lists), keys in field order."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(spec).items()}


def _plain_encoder(e: EncoderSpec) -> dict[str, Any]:
    lora = None if e.lora is None else {"rank": e.lora.rank, "alpha": e.lora.alpha, "targets": list(e.lora.targets)}
    return {"name": e.name, "lora": lora, "description": e.description}


def _fields_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`ModelConfig` keywords of a ``config.json`` dict, each checked for its type."""
    kw: dict[str, Any] = {}
    for key in ("name", "version", "encoder", "temporal_pooling", "license"):
        if key in data:
            kw[key] = schema.expect(data[key], str, key)
    for key in ("timesteps", "tile_size"):
        if key in data:
            kw[key] = schema.expect(data[key], int, key)
    if "temporal_repeat" in data:
        kw["temporal_repeat"] = schema.expect(data["temporal_repeat"], bool, "temporal_repeat")
    for key, spec in (("modalities", ModalitySpec), ("heads", HeadSpec), ("encoders", EncoderSpec)):
        if key in data:
            kw[key] = tuple(spec.from_dict(v, f"{key}[{i}]") for i, v in enumerate(schema.expect(data[key], list, key)))
    if "decoder_channels" in data:
        kw["decoder_channels"] = schema.int_tuple(data["decoder_channels"], "decoder_channels")
    if data.get("neck_indices") is not None:
        kw["neck_indices"] = schema.int_tuple(data["neck_indices"], "neck_indices")
    if "s2_offset" in data:
        kw["s2_offset"] = _offset_rule(data["s2_offset"])
    for key in ("training", "metrics"):
        if data.get(key) is not None:
            kw[key] = dict(schema.expect(data[key], dict, key))
    if data.get("onnx") is not None:
        kw["onnx"] = OnnxExport.from_dict(data["onnx"], "onnx")
    return kw


def _offset_rule(value: Any) -> S2OffsetRule:
    s2 = schema.expect(value, dict, "s2_offset")
    schema.no_unknown(s2, {f.name for f in dataclasses.fields(S2OffsetRule)}, "s2_offset")
    default = S2OffsetRule()
    return S2OffsetRule(
        offset_dn=schema.expect(s2.get("offset_dn", default.offset_dn), int, "s2_offset.offset_dn"),
        from_baseline=schema.expect(s2.get("from_baseline", default.from_baseline), str, "s2_offset.from_baseline"),
        clip_min=float(schema.expect(s2.get("clip_min", default.clip_min), (int, float), "s2_offset.clip_min")))


# ----------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------
def _validate_config(c: ModelConfig) -> None:
    if c.schema_version not in READABLE_SCHEMA_VERSIONS:
        raise CheckpointError(f"schema_version must be one of {list(READABLE_SCHEMA_VERSIONS)}, got {c.schema_version!r}")
    for key in ("name", "version"):
        if not isinstance(getattr(c, key), str) or not getattr(c, key):
            raise CheckpointError(f"`{key}` must be a non-empty string")
    if not isinstance(c.encoder, str) or c.encoder not in ENCODERS:
        raise CheckpointError(f"unknown encoder {c.encoder!r}; choose one of {sorted(ENCODERS)}")
    validate_modalities(c.modalities)
    validate_heads(c.heads)
    if not isinstance(c.timesteps, int) or isinstance(c.timesteps, bool) or not 1 <= c.timesteps <= 64:
        raise CheckpointError(f"`timesteps` must be an integer in 1..64, got {c.timesteps!r}")
    if c.schema_version == 1 and (c.temporal_repeat or c.encoders != (EncoderSpec(),)):
        raise CheckpointError("schema_version 1 has one shared encoder and no temporal_repeat; use schema_version "
                              f"{SCHEMA_VERSION} for encoder variants")
    if not isinstance(c.temporal_repeat, bool):
        raise CheckpointError(f"`temporal_repeat` must be true or false, got {c.temporal_repeat!r}")
    if c.temporal_repeat and c.timesteps == 1:
        raise CheckpointError("`temporal_repeat` needs `timesteps` > 1 (it repeats one acquisition T times)")
    validate_encoders(c.encoders, c.heads)
    if c.temporal_pooling not in TEMPORAL_POOLINGS:
        raise CheckpointError(f"`temporal_pooling` must be one of {list(TEMPORAL_POOLINGS)}, got {c.temporal_pooling!r}")
    if not isinstance(c.tile_size, int) or isinstance(c.tile_size, bool) or not 64 <= c.tile_size <= 2048 \
            or c.tile_size % 32:
        raise CheckpointError(f"`tile_size` must be a multiple of 32 in 64..2048, got {c.tile_size!r}")
    if len(c.decoder_channels) != 4 or not all(isinstance(v, int) and 0 < v <= 4096 for v in c.decoder_channels):
        raise CheckpointError(f"`decoder_channels` must be four integers in 1..4096, got {list(c.decoder_channels)}")
    if c.neck_indices is not None:
        depth = ENCODERS[c.encoder][0]
        if len(c.neck_indices) != 4 or not all(isinstance(i, int) and 0 <= i < depth for i in c.neck_indices):
            raise CheckpointError(f"`neck_indices` must be four block indices in 0..{depth - 1}, got {c.neck_indices}")
    if not isinstance(c.s2_offset, S2OffsetRule) or c.s2_offset.offset_dn < 0:
        raise CheckpointError("`s2_offset.offset_dn` must be >= 0")
    for key in ("training", "metrics"):
        if not isinstance(getattr(c, key), Mapping) or _deeper_than(getattr(c, key), MAX_JSON_DEPTH - 1):
            raise CheckpointError(f"`{key}` must be a JSON object nested at most {MAX_JSON_DEPTH - 1} levels deep")
    if c.onnx is not None:
        check_onnx_record(c.onnx, c.modality_names)
