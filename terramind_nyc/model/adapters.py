"""The published NYC adapters (msradam/TerraMind-NYC-Adapters) converted into a normal artifact.

    adapters_config()                               # the converted config (what training used)
    preprocessing_variant(config, stats="pretraining", s1="db", chip=224)

The conversion (``import_adapters``) is :mod:`terramind_nyc.model.convert_adapters`, the default
checkpoint built from it :mod:`terramind_nyc.model.default_checkpoint`.

The adapters are two LoRA fine-tunes of TerraMind-1.0-base (``lulc_nyc``: 5 land-cover classes,
``buildings_nyc``: background / building), each folder holding ``adapter_config.json``,
``adapter_model.safetensors`` (LoRA factors of every block's ``attn.qkv`` and ``attn.proj``)
and ``decoder_head.safetensors`` (neck, UNet decoder, segmentation head). They are not a PEFT
save, and their authors' loaders accept any key mismatch silently (``strict=False``). Here
every tensor is accounted for: each name and shape is checked against the network the
converted config describes, nothing is missing, nothing is left over (the only tensors not
used are the training-only ``aux_heads.*``, which are named in the record), else a
:class:`~terramind_nyc.errors.CheckpointError` lists them.

The converted artifact (schema version 2, DESIGN section 4) holds the base encoder once, each
adapter's LoRA factors (~0.9 M parameters each, merged into the attention weights when the
artifact is loaded: :class:`~terramind_nyc.model.network.MultiHeadTerraMind`) and each head's
own neck, decoder and head. Its config records the preprocessing the adapters were trained
with, and where each fact comes from (:data:`PREPROCESSING_SOURCES`): ImpactMesh-Flood
statistics, Sentinel-1 as linear power standardised with dB-valued statistics, 256 px chips,
four identical time steps concatenated (one encoder pass, features repeated:
``temporal_repeat``), this project's land-cover order, building threshold 0.5.
``terramind-nyc sniff`` checks those choices against ten NYC areas
(:mod:`terramind_nyc.sniff`).

The base weights are a torch pickle (``TerraMind_v1_base.pt``); it is read with
``torch.load(weights_only=True)`` only, which refuses anything but tensors.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidInputError
from .config import DEFAULT_HEADS, DEFAULT_MODALITIES, EncoderSpec, LoraSpec, ModalitySpec, ModelConfig

__all__ = [
    "ADAPTERS_REPO",
    "ADAPTER_FILES",
    "BASE_REPO",
    "CHIP_CHOICES",
    "FLOOD_STATS",
    "HEAD_FOLDERS",
    "PREPROCESSING_SOURCES",
    "S1_CHOICES",
    "STATS_CHOICES",
    "adapters_config",
    "base_file_name",
    "is_adapters_source",
    "preprocessing_variant",
]

log = logging.getLogger(__name__)

#: The Hugging Face repo of the published adapters.
ADAPTERS_REPO = "msradam/TerraMind-NYC-Adapters"
#: The TerraMind base they were trained on.
BASE_REPO = "ibm-esa-geospatial/TerraMind-1.0-base"
#: Head of the converted artifact -> folder of the adapters repo.
HEAD_FOLDERS: Mapping[str, str] = {"lulc": "lulc_nyc", "buildings": "buildings_nyc"}
#: The files of each adapter folder.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "decoder_head.safetensors")
#: Decoder channels of the adapters' UNet decoder.
ADAPTER_DECODER_CHANNELS = (512, 256, 128, 64)  # read from the weights' shapes at import
#: ImpactMesh-Flood statistics (IBM/ImpactMesh ``impactmesh_datamodule.py``, the fallback its
#: datamodule uses), with which the adapters were trained. S1 values are in dB.
FLOOD_STATS: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "S2L2A": ((1223.128, 1251.355, 1423.443, 1408.984, 1786.818, 2448.316, 2685.642, 2745.795, 2817.936, 3194.081,
               1964.659, 1399.317),
              (2358.709, 2227.598, 2082.363, 2068.519, 2086.682, 2003.085, 2019.494, 2060.309, 2014.732, 2992.644,
               1414.951, 1218.357)),
    "S1RTC": ((-9.98, -15.968), (4.24, 4.105)),
    "DEM": ((141.786,), (189.363,)),
}
STATS_CHOICES = ("flood", "pretraining")
S1_CHOICES = ("linear", "db")
CHIP_CHOICES = (224, 256)
#: Where each preprocessing fact of the adapters comes from (DESIGN section 9).
PREPROCESSING_SOURCES: Mapping[str, str] = {
    "statistics": "ImpactMesh-Flood statistics: IBM/ImpactMesh impactmesh/impactmesh_datamodule.py (the datamodule's "
                  "fallback, which the adapters' training used); TerraMind pretraining statistics were used only by "
                  "the adapters' own evaluation harness",
    "s1_units": "linear power standardised with dB-valued statistics: msradam/riprap experiments/05_terramind_nyc_"
                "finetune/data/slice_and_label_nyc.py writes S1 without a dB conversion (strong evidence, not proof)",
    "chip_size": "256 x 256 sub-chips (slice_and_label_nyc.py; the adapters' docs say 224, both run)",
    "timesteps": "TemporalWrapper T = 4, concat pooling, fed 4 identical copies of one acquisition "
                 "(msradam/riprap experiments/18_terramind_nyc_lora/)",
    "s2": "raw DN 0-10000, 20/60 m bands nearest-upsampled; the +1000 offset of baseline >= 04.00 was not handled "
          "in training (this library removes it before the model)",
    "lulc_classes": "0 water (80, 90, 95), 1 developed (50), 2 forest (10, 20), 3 herbaceous (30, 40), 4 other "
                    "(60, 70, 100): the training code's order; the adapters' README calls class 4 'building', which "
                    "their own sniff test contradicts",
    "buildings": "0 background, 1 building, argmax (threshold 0.5); a sweep found IoU 0.349 at 0.5, 0.365 at 0.6",
    "nodata": "-9999 / NaN -> 0 before standardising (this library sets nodata to the mean, 0 after standardising)",
}


def base_file_name(encoder: str) -> str:
    """``terramind_v1_base`` -> ``TerraMind_v1_base.pt``, the file name of the published base weights."""
    return "TerraMind_v1_" + encoder.rsplit("_", 1)[-1] + ".pt"


def is_adapters_source(source: str) -> bool:
    """Whether ``source`` names the published adapters repo (then it is converted, not read as an artifact)."""
    return source.lower() == ADAPTERS_REPO.lower()


# ----------------------------------------------------------------------------------------
# the config
# ----------------------------------------------------------------------------------------
def adapters_config(encoder: str = "terramind_v1_base", *, loras: Mapping[str, LoraSpec] | None = None,
                    decoder_channels: Sequence[int] = ADAPTER_DECODER_CHANNELS, stats: str = "flood",
                    s1: str = "linear", chip: int = 256, training: Mapping[str, Any] | None = None) -> ModelConfig:
    """The config of the converted adapters: two heads, each with its own LoRA encoder variant.

    ``stats``, ``s1`` and ``chip`` choose the preprocessing (:func:`preprocessing_variant`);
    the defaults are what training used, as far as its code shows.
    """
    loras = dict(loras or {h: LoraSpec(16, 32.0) for h in HEAD_FOLDERS})
    heads = tuple(dataclasses.replace(h, encoder=h.name) for h in DEFAULT_HEADS if h.name in HEAD_FOLDERS)
    encoders = tuple(EncoderSpec(h.name, loras[h.name], f"LoRA adapter {ADAPTERS_REPO}/{HEAD_FOLDERS[h.name]}")
                     for h in heads)
    config = ModelConfig(
        name="terramind-nyc-adapters", version="1.0.0", encoder=encoder, heads=heads, encoders=encoders,
        timesteps=4, temporal_pooling="concat", temporal_repeat=True, tile_size=256,
        decoder_channels=tuple(decoder_channels), license="Apache-2.0",
        training=dict(training or {}) | {"preprocessing": dict(PREPROCESSING_SOURCES)},
    )
    return preprocessing_variant(config, stats=stats, s1=s1, chip=chip)


def preprocessing_variant(config: ModelConfig, *, stats: str | None = None, s1: str | None = None,
                          chip: int | None = None) -> ModelConfig:
    """``config`` with other preprocessing: ``stats`` ``flood`` (ImpactMesh-Flood) or ``pretraining``
    (TerraMind's), ``s1`` ``linear`` (dB read -> linear power before standardising) or ``db``,
    ``chip`` the tile size (224 or 256). None keeps the config's choice."""
    if stats is not None and stats not in STATS_CHOICES:
        raise InvalidInputError(f"stats must be one of {list(STATS_CHOICES)}, got {stats!r}")
    if s1 is not None and s1 not in S1_CHOICES:
        raise InvalidInputError(f"s1 must be one of {list(S1_CHOICES)}, got {s1!r}")
    if chip is not None and chip not in CHIP_CHOICES:
        raise InvalidInputError(f"chip must be one of {list(CHIP_CHOICES)}, got {chip!r}")
    pretraining = {m.name: m for m in DEFAULT_MODALITIES}
    modalities: list[ModalitySpec] = []
    for m in config.modalities:
        if stats is not None:
            mean, std = FLOOD_STATS[m.name] if stats == "flood" else (pretraining[m.name].mean, pretraining[m.name].std)
            m = dataclasses.replace(m, mean=mean, std=std)
        if s1 is not None and m.name == "S1RTC":
            m = dataclasses.replace(m, transform="db_to_linear" if s1 == "linear" else "",
                                    units="linear power (the library's dB converted), dB-valued statistics"
                                    if s1 == "linear" else "dB")
        modalities.append(m)
    training = dict(config.training)
    chosen = dict(training.get("preprocessing_choice", {}))
    chosen.update({k: v for k, v in (("stats", stats), ("s1", s1), ("chip", chip)) if v is not None})
    training["preprocessing_choice"] = chosen
    return config.replace(modalities=tuple(modalities), tile_size=chip or config.tile_size, training=training)
