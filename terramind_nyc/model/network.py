"""The multi-head TerraMind network: one shared encoder and neck, one decoder + head per task.

    encoder   terratorch TerraMindViT (tiny/small/base/large), modalities and bands from the config;
              with T > 1 time steps wrapped in terratorch's TemporalWrapper
    neck      SelectIndices -> ReshapeTokensToImage -> LearnedInterpolateToPyramidal (shared)
    heads     per config head: UNetDecoder [512, 256, 128, 64] -> SegmentationHead(classes),
              upsampled bilinearly to the input size

It takes tensors and returns tensors: ``{modality: (B, C, H, W)}`` (``(B, C, T, H, W)`` when
T > 1) in, ``{head: logits (B, classes, H, W)}`` out. Any non-empty subset of the configured
modalities may be given (TerraMind averages the tokens of the modalities present). Loading,
standardising and tiling live in :mod:`terramind_nyc.model.artifact`, :mod:`terramind_nyc.model.inputs`
and :mod:`terramind_nyc.model.tiling`.

terratorch's ``aux_heads`` reuse the main head's class count and target, so they cannot express
heads with different classes; this module is the project's own, built from terratorch parts so
that one head's path is the same computation as an ``EncoderDecoderFactory`` model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InvalidInputError
from .compat import terratorch_imports
from .config import ModelConfig

__all__ = ["PATCH_SIZE", "MultiHeadTerraMind", "build_network", "terratorch_bands"]

#: TerraMind's patch size: input sides must be multiples of it.
PATCH_SIZE = 16

#: Band names of this project -> terratorch's pretrained band names (to pick patch-embedding weights).
_BAND_ALIASES: Mapping[str, str] = {
    "B01": "COASTAL_AEROSOL", "B02": "BLUE", "B03": "GREEN", "B04": "RED", "B05": "RED_EDGE_1",
    "B06": "RED_EDGE_2", "B07": "RED_EDGE_3", "B08": "NIR_BROAD", "B8A": "NIR_NARROW", "B09": "WATER_VAPOR",
    "B10": "CIRRUS", "B11": "SWIR_1", "B12": "SWIR_2", "vv": "VV", "vh": "VH", "data": "DEM",
    "elevation": "DEM", "dem": "DEM", "red": "RED", "green": "GREEN", "blue": "BLUE",
}


def terratorch_bands(config: ModelConfig) -> dict[str, list[str]] | None:
    """``bands`` argument for terratorch's TerraMind builder, or None when every modality has
    TerraMind's pretrained band list (then the pretrained patch embeddings are used as they are)."""
    with terratorch_imports():
        from terratorch.models.backbones.terramind.model.terramind_register import PRETRAINED_BANDS

    keys = {"S2L2A": "untok_sen2l2a@224", "S2L1C": "untok_sen2l1c@224", "S2RGB": "untok_sen2rgb@224",
            "S1GRD": "untok_sen1grd@224", "S1RTC": "untok_sen1rtc@224", "DEM": "untok_dem@224"}
    out: dict[str, list[str]] = {}
    differs = False
    for m in config.modalities:
        names = [_BAND_ALIASES.get(b, _BAND_ALIASES.get(b.lower(), b.upper())) for b in m.bands]
        out[m.name] = names
        differs |= names != list(PRETRAINED_BANDS.get(keys[m.name], []))
    return out if differs else None


class MultiHeadTerraMind(nn.Module):
    """TerraMind encoder + shared neck + one UNet decoder and segmentation head per config head.

    Args:
        config: the model config (encoder size, modalities and bands, heads and classes, T).
        pretrained: False for random weights (weights then come from an artifact); True for
            TerraMind's pretrained encoder from the Hugging Face hub (terratorch downloads it);
            a path to a TerraMind ``.pt`` file for the same weights offline (training only:
            terratorch reads it with ``torch.load(weights_only=True)``).
    """

    def __init__(self, config: ModelConfig, *, pretrained: bool | str = False) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise InvalidInputError(f"config must be a ModelConfig, got {type(config).__name__}")
        with terratorch_imports():
            from terratorch.models.decoders.unet_decoder import UNetDecoder
            from terratorch.models.heads.segmentation_head import SegmentationHead
            from terratorch.models.necks import LearnedInterpolateToPyramidal, ReshapeTokensToImage, SelectIndices
            from terratorch.models.utils import TemporalWrapper
            from terratorch.registry import BACKBONE_REGISTRY

        self.config = config
        self.modalities: tuple[str, ...] = config.modality_names
        self.band_counts: dict[str, int] = {m.name: len(m.bands) for m in config.modalities}
        self.timesteps = config.timesteps
        self.tile_size = config.tile_size

        kwargs: dict[str, Any] = {"modalities": list(self.modalities), "pretrained": False}
        if isinstance(pretrained, (str, bytes)) or hasattr(pretrained, "__fspath__"):
            kwargs["ckpt_path"] = str(pretrained)
        elif pretrained:
            kwargs["pretrained"] = True
        bands = terratorch_bands(config)
        if bands is not None:
            kwargs["bands"] = bands
        vit = BACKBONE_REGISTRY.build(config.encoder, **kwargs)
        encoder: nn.Module = vit
        if config.timesteps > 1:
            encoder = TemporalWrapper(vit, pooling=config.temporal_pooling, n_timestamps=config.timesteps)
        self.encoder = encoder

        channels: list[int] = list(encoder.out_channels)  # type: ignore[arg-type]
        select = SelectIndices(channels, list(config.resolved_neck_indices))
        channels = select.process_channel_list(channels)
        # remove_cls_token=False: TerraMind has no class token (the default would drop a patch token
        # and then re-run itself after a warning)
        reshape = ReshapeTokensToImage(channels, remove_cls_token=False)
        channels = reshape.process_channel_list(channels)
        pyramid = LearnedInterpolateToPyramidal(channels)
        channels = pyramid.process_channel_list(channels)
        self.neck = nn.ModuleList([select, reshape, pyramid])

        dec = list(config.decoder_channels)
        self.decoders = nn.ModuleDict({h.name: UNetDecoder(channels, dec) for h in config.heads})
        self.heads = nn.ModuleDict({h.name: SegmentationHead(dec[-1], num_classes=len(h.classes))
                                    for h in config.heads})

    # ------------------------------------------------------------------------------------
    def prepare_for_inference(self, device: str | torch.device = "cpu") -> MultiHeadTerraMind:
        """Eval mode and, on CPU, the convolutional part in channels-last memory format.

        oneDNN runs the neck's and the decoders' convolutions about a third faster on
        channels-last tensors (the encoder, linear layers, is unaffected); results equal the
        default layout's to float rounding (~1e-6 on the logits). Other devices keep the
        default layout. Returns ``self``.
        """
        self.eval()
        if torch.device(device).type == "cpu":
            for part in (self.neck, self.decoders, self.heads):
                part.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return self

    def check_inputs(self, inputs: Mapping[str, torch.Tensor]) -> tuple[int, int]:
        """Validate the input dict; return (H, W). Messages say how to fix the input."""
        if not isinstance(inputs, Mapping) or not inputs:
            raise InvalidInputError(f"give a dict of at least one modality tensor, keys from {list(self.modalities)}")
        unknown = sorted(set(inputs) - set(self.modalities))
        if unknown:
            raise InvalidInputError(f"unknown modality {unknown}; this model takes {list(self.modalities)}")
        ndim = 4 if self.timesteps == 1 else 5
        layout = "(B, C, H, W)" if ndim == 4 else f"(B, C, T={self.timesteps}, H, W)"
        size: tuple[int, int] | None = None
        for m, x in inputs.items():
            if not isinstance(x, torch.Tensor):
                raise InvalidInputError(f"{m}: expected a torch.Tensor, got {type(x).__name__}")
            if x.ndim != ndim:
                raise InvalidInputError(f"{m}: expected a {ndim}-D tensor {layout}, got shape {tuple(x.shape)}")
            if x.shape[1] != self.band_counts[m]:
                raise InvalidInputError(
                    f"{m}: {x.shape[1]} bands, the model takes {self.band_counts[m]} "
                    f"({', '.join(self.config.modality(m).bands)})"
                )
            if ndim == 5 and x.shape[2] != self.timesteps:
                raise InvalidInputError(f"{m}: {x.shape[2]} time steps, the model takes {self.timesteps}")
            hw = (int(x.shape[-2]), int(x.shape[-1]))
            if size is None:
                size = hw
            elif hw != size:
                raise InvalidInputError(f"modalities differ in size: {m} is {hw}, another is {size}")
        assert size is not None
        if size[0] % PATCH_SIZE or size[1] % PATCH_SIZE or min(size) < 2 * PATCH_SIZE:
            raise InvalidInputError(
                f"input of {size[0]}x{size[1]} px: sides must be multiples of {PATCH_SIZE} and >= {2 * PATCH_SIZE}; "
                f"the runtime tiles windows of any size into {self.tile_size}x{self.tile_size} tiles"
            )
        return size

    def _features(self, inputs: Mapping[str, torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        """The shared part: encoder + neck, giving the feature pyramid every head decodes."""
        # config order, whatever the dict's insertion order
        x = {m: inputs[m] for m in self.modalities if m in inputs}
        feats = self.encoder(x)
        feats = self.neck[0](feats)
        feats = self.neck[1](feats, image_size=size)
        return self.neck[2](feats)  # type: ignore[no-any-return]

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits per head, ``(B, classes, H, W)`` at the input resolution, in config head order."""
        size = self.check_inputs(inputs)
        feats = self._features(inputs, size)
        out: dict[str, torch.Tensor] = {}
        for name in self.decoders:
            # the decoders read the shared features without modifying them (no clone needed)
            logits = self.heads[name](self.decoders[name](feats))
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear")
            out[name] = logits
        return out


def build_network(config: ModelConfig, *, pretrained: bool | str = False) -> MultiHeadTerraMind:
    """The network ``config`` describes (see :class:`MultiHeadTerraMind` for ``pretrained``)."""
    try:
        return MultiHeadTerraMind(config, pretrained=pretrained)
    except (InvalidInputError, CheckpointError):
        raise
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise CheckpointError(f"terratorch cannot build the network the config describes: {exc}") from exc
