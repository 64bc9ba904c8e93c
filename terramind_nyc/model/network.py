"""The multi-head TerraMind network: encoder variants with their necks, one decoder + head per task.

    encoder   terratorch TerraMindViT (tiny/small/base/large), modalities and bands from the config;
              with T > 1 time steps wrapped in terratorch's TemporalWrapper, or (``temporal_repeat``)
              run once on one acquisition with its features repeated T times
    variants  per config encoder: the base weights, or a LoRA delta on them merged into a copy
              that shares every other tensor (``shared``: one variant all heads read)
    neck      per variant: SelectIndices -> ReshapeTokensToImage -> LearnedInterpolateToPyramidal
    heads     per config head: UNetDecoder [512, 256, 128, 64] -> SegmentationHead(classes),
              upsampled bilinearly to the input size, on its variant's features

It takes tensors and returns tensors: ``{modality: (B, C, H, W)}`` (``(B, C, T, H, W)`` when
T > 1 without ``temporal_repeat``) in, ``{head: logits (B, classes, H, W)}`` out; each encoder
variant runs once per call. Any non-empty subset of the configured
modalities may be given (TerraMind averages the tokens of the modalities present). Loading,
standardising and tiling live in :mod:`terramind_nyc.model.artifact`, :mod:`terramind_nyc.model.inputs`
and :mod:`terramind_nyc.model.tiling`.

terratorch's ``aux_heads`` reuse the main head's class count and target, so they cannot express
heads with different classes; this module is the project's own, built from terratorch parts so
that one head's path is the same computation as an ``EncoderDecoderFactory`` model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InvalidInputError
from .compat import terratorch_imports
from .config import SHARED_ENCODER, ModelConfig

__all__ = ["PATCH_SIZE", "LoraPair", "MultiHeadTerraMind", "build_network", "fold_repeated", "lora_key", "lora_target", "terratorch_bands",
           "transformer_blocks", "v1_weight_name"]

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


class LoraPair(nn.Module):
    """The LoRA factors of one linear layer: ``A`` ``(rank, in)`` and ``B`` ``(out, rank)``.

    ``A`` starts Kaiming-uniform and ``B`` at zero (the usual LoRA initialisation: the delta
    starts at zero); loaded artifacts overwrite both."""

    def __init__(self, rank: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=5 ** 0.5)

    def delta(self, scale: float) -> torch.Tensor:
        """``scale * B @ A``, the change of the layer's weight."""
        return scale * (self.lora_B @ self.lora_A)


def lora_key(target: str) -> str:
    """Module key of a LoRA target (``attn.qkv`` -> ``attn_qkv``: module names hold no dots)."""
    return target.replace(".", "_")


def transformer_blocks(encoder: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a TerraMind encoder (or of the TerraMindViT a TemporalWrapper wraps)."""
    # a TerraMindViT has patch embeddings; a TemporalWrapper holds one as ``encoder``
    vit = encoder if hasattr(encoder, "encoder_embeddings") else getattr(encoder, "encoder", None)
    if vit is None or not isinstance(getattr(vit, "encoder", None), nn.ModuleList):
        raise CheckpointError(f"cannot find the transformer blocks of {type(encoder).__name__}")
    blocks: nn.ModuleList = vit.encoder  # type: ignore[assignment]
    return blocks


def lora_target(block: nn.Module, target: str) -> nn.Linear:
    """The linear layer ``target`` (``attn.qkv``) of one transformer block."""
    module: Any = block
    for part in target.split("."):
        module = getattr(module, part, None)
    if not isinstance(module, nn.Linear):
        raise CheckpointError(f"a TerraMind block has no linear layer {target!r}")
    return module


class MultiHeadTerraMind(nn.Module):
    """TerraMind encoder variants, each with its neck, and one UNet decoder and segmentation head per head.

    A checkpoint with one shared encoder runs it once per batch and every head decodes its
    features. A checkpoint with per-head encoders (the published LoRA adapters) keeps the base
    encoder's weights once plus each variant's LoRA factors (``lora.<variant>.<block>.<target>``);
    each variant's weights ``W + (alpha / r) * B @ A`` are merged, in fp32, into a copy of the
    encoder that shares every other tensor with the base (:meth:`merge_lora`: at construction,
    after ``load_state_dict`` and device moves; :func:`~terramind_nyc.model.artifact.load_artifact`
    calls it after reading the weights). Each variant then runs once per batch.

    Args:
        config: the model config (encoder size and variants, modalities and bands, heads and classes, T).
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
        self.timesteps = config.input_timesteps
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
        channels: list[int] = list(vit.out_channels)
        if config.timesteps > 1 and not config.temporal_repeat:
            encoder = TemporalWrapper(vit, pooling=config.temporal_pooling, n_timestamps=config.timesteps)
            channels = list(encoder.out_channels)  # type: ignore[arg-type]
        self.encoder = encoder
        #: T when the neck reads T identical copies concatenated: folded into its weights (:func:`fold_repeated`)
        self.fold = config.timesteps if config.temporal_repeat and config.temporal_pooling == "concat" else 1

        blocks = transformer_blocks(encoder)
        self.lora = nn.ModuleDict()
        for e in config.encoders:
            if e.lora is not None:
                lo = e.lora
                self.lora[e.name] = nn.ModuleList(
                    nn.ModuleDict({lora_key(t): LoraPair(lo.rank, lora_target(b, t).in_features,
                                                         lora_target(b, t).out_features) for t in lo.targets})
                    for b in blocks)

        self.necks = nn.ModuleDict()
        for e in config.encoders:
            select = SelectIndices(channels, list(config.resolved_neck_indices))
            chans = select.process_channel_list(channels)
            # remove_cls_token=False: TerraMind has no class token (the default would drop a patch token
            # and then re-run itself after a warning)
            reshape = ReshapeTokensToImage(chans, remove_cls_token=False)
            chans = reshape.process_channel_list(chans)
            pyramid = LearnedInterpolateToPyramidal([c * self.fold for c in chans])
            if self.fold > 1:  # the first convolutions read one copy, their weights summed over the T copies
                for fpn, c in ((pyramid.fpn1, chans[0]), (pyramid.fpn2, chans[1])):
                    fpn[0] = nn.ConvTranspose2d(c, fpn[0].out_channels, 2, 2)
            chans = [c * self.fold for c in pyramid.process_channel_list(chans)]
            chans[2:] = [c // self.fold for c in chans[2:]]  # fpn3 / fpn4 pass their one copy on
            self.necks[e.name] = nn.ModuleList([select, reshape, pyramid])

        dec = list(config.decoder_channels)
        self.decoders = nn.ModuleDict({h.name: UNetDecoder(chans, dec) for h in config.heads})
        self.heads = nn.ModuleDict({h.name: SegmentationHead(dec[-1], num_classes=len(h.classes))
                                    for h in config.heads})
        self._merged: dict[str, nn.Module] = {}
        self.merge_lora()

    @property
    def neck(self) -> nn.ModuleList:
        """The neck of the first encoder variant (the only one of a shared-encoder checkpoint)."""
        neck: nn.ModuleList = self.necks[self.config.encoders[0].name]  # type: ignore[assignment]
        return neck

    # ------------------------------------------------------------------------------------
    @torch.no_grad()
    def merge_lora(self) -> None:
        """(Re)build each LoRA variant's encoder: a copy of the base sharing every tensor but the
        targets, whose weights are ``W + (alpha / r) * B @ A`` (fp32, the adapters' own formula)."""
        self._merged = merged = {}  # the old copies go first: never two sets in memory
        for e in self.config.encoders:
            if e.lora is None:
                continue
            shared = {id(t): t for t in (*self.encoder.parameters(), *self.encoder.buffers())}
            copy_ = copy.deepcopy(self.encoder, memo=shared)
            for block, pairs in zip(transformer_blocks(copy_), self._pairs(e.name), strict=True):
                for t in e.lora.targets:
                    lin = lora_target(block, t)
                    pair: LoraPair = pairs[lora_key(t)]  # type: ignore[index]
                    w = lin.weight.float() + pair.delta(e.lora.scale).float()
                    lin.weight = nn.Parameter(w.to(lin.weight.dtype), requires_grad=False)
            copy_.train(self.training)
            merged[e.name] = copy_

    def _pairs(self, variant: str) -> nn.ModuleList:
        """Per block: target key -> :class:`LoraPair` of a LoRA variant."""
        pairs: nn.ModuleList = self.lora[variant]  # type: ignore[assignment]
        return pairs

    def merged_encoders(self) -> dict[str, nn.Module]:
        """Variant -> its encoder with the LoRA delta merged (only LoRA variants; not part of the
        state dict). The ONNX export registers them so their weights become initializers."""
        return dict(self._merged)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.merge_lora()
        return result

    def _apply(self, fn: Any, recurse: bool = True) -> MultiHeadTerraMind:
        super()._apply(fn, recurse)
        if hasattr(self, "_merged"):
            self.merge_lora()
        return self

    def train(self, mode: bool = True) -> MultiHeadTerraMind:
        super().train(mode)
        for m in getattr(self, "_merged", {}).values():
            m.train(mode)
        return self

    def prepare_for_inference(self, device: str | torch.device = "cpu") -> MultiHeadTerraMind:
        """Eval mode and, on CPU, the convolutional part in channels-last memory format.

        oneDNN runs the neck's and the decoders' convolutions about a third faster on
        channels-last tensors (the encoder, linear layers, is unaffected); results equal the
        default layout's to float rounding (~1e-6 on the logits). Other devices keep the
        default layout. Returns ``self``.
        """
        self.eval()
        if torch.device(device).type == "cpu":
            for part in (self.necks, self.decoders, self.heads):
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

    def encode(self, variant: str, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Encoder tokens per block of encoder variant ``variant``.

        With ``temporal_repeat`` and ``concat`` pooling these are one copy of what terratorch's
        TemporalWrapper would concatenate T times from T identical steps; the layers that read them
        hold the T copies' weights summed (:func:`fold_repeated`), which computes the same, T times
        cheaper."""
        x = {m: inputs[m] for m in self.modalities if m in inputs}  # config order, whatever the dict's order
        spec = self.config.encoder_spec(variant)
        if spec.lora is None:
            feats = self.encoder(x)
        elif self.training:  # differentiable: the merged weights as a function of the factors
            feats = self._encode_lora_functional(variant, x)
        else:
            feats = self._merged[variant](x)
        return list(feats)  # with temporal_repeat, one copy: the neck's weights are folded

    def _encode_lora_functional(self, variant: str, x: Mapping[str, torch.Tensor]) -> Any:
        spec = self.config.encoder_spec(variant)
        assert spec.lora is not None
        names = {id(m): n for n, m in self.encoder.named_modules()}
        params: dict[str, torch.Tensor] = {}
        for block, pairs in zip(transformer_blocks(self.encoder), self._pairs(variant), strict=True):
            for t in spec.lora.targets:
                lin = lora_target(block, t)
                pair: LoraPair = pairs[lora_key(t)]  # type: ignore[index]
                params[f"{names[id(lin)]}.weight"] = lin.weight + pair.delta(spec.lora.scale)
        return torch.func.functional_call(self.encoder, params, (x,))

    def _features(self, variant: str, inputs: Mapping[str, torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        """Encoder variant + its neck: the feature pyramid its heads decode."""
        neck: nn.ModuleList = self.necks[variant]  # type: ignore[assignment]
        feats = neck[0](self.encode(variant, inputs))
        feats = neck[1](feats, image_size=size)
        return neck[2](feats)  # type: ignore[no-any-return]

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits per head, ``(B, classes, H, W)`` at the input resolution, in config head order.

        Each encoder variant runs once; its heads read the same features (no clone needed: the
        decoders do not modify them)."""
        size = self.check_inputs(inputs)
        out: dict[str, torch.Tensor] = {}
        for e in self.config.encoders:
            feats = self._features(e.name, inputs, size)
            for name in self.config.heads_of(e.name):
                logits = self.heads[name](self.decoders[name](feats))
                if logits.shape[-2:] != size:
                    logits = F.interpolate(logits, size=size, mode="bilinear")
                out[name] = logits
        return {h: out[h] for h in self.config.head_names}


def fold_repeated(weight: torch.Tensor, shape: Sequence[int], copies: int, dim: int) -> torch.Tensor:
    """``weight`` of a layer that read ``copies`` identical inputs concatenated (time-major, as
    TemporalWrapper's ``concat`` lays them out: ``t * dim + d``), as the weight of the same layer
    reading one copy: summed over the copies along the one axis where ``weight`` is ``copies`` times
    ``shape``; segments of ``dim`` channels (a convolution reading two concatenated feature maps)
    fold separately. Exact: ``W @ [x; x; x; x] = (sum_t W_t) @ x``."""
    axes = [a for a, (n, m) in enumerate(zip(weight.shape, shape, strict=True)) if n != m]
    if len(weight.shape) != len(shape) or len(axes) != 1 or weight.shape[axes[0]] != copies * shape[axes[0]] \
            or shape[axes[0]] % dim:
        raise CheckpointError(f"a weight of shape {list(weight.shape)} cannot be folded into {list(shape)}")
    a = axes[0]
    w = weight.reshape(*weight.shape[:a], shape[a] // dim, copies, dim, *weight.shape[a + 1:])
    return w.sum(dim=a + 1).reshape(tuple(shape))


def v1_weight_name(name: str) -> str:
    """The name a version-1 artifact gives weight ``name`` of this network (its only neck was ``neck.*``)."""
    prefix = f"necks.{SHARED_ENCODER}."
    return "neck." + name[len(prefix):] if name.startswith(prefix) else name


def build_network(config: ModelConfig, *, pretrained: bool | str = False) -> MultiHeadTerraMind:
    """The network ``config`` describes (see :class:`MultiHeadTerraMind` for ``pretrained``)."""
    try:
        return MultiHeadTerraMind(config, pretrained=pretrained)
    except (InvalidInputError, CheckpointError):
        raise
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise CheckpointError(f"terratorch cannot build the network the config describes: {exc}") from exc
