"""Synthetic stand-ins for the published NYC adapters and their TerraMind base, in the published layout.

    base_dir, adapters_dir = write_synthetic_adapters(tmp / "repos", encoder="terramind_v1_tiny")
    hub.add_repo("ibm-esa-geospatial/TerraMind-1.0-tiny", base_dir)
    hub.add_repo("msradam/TerraMind-NYC-Adapters", adapters_dir)

Random tensors with the names and shapes of the real files (DESIGN section 9), so the importer,
its checks and the equivalence with the authors' way of building the model can be tested
without the hub:

- base repo: ``TerraMind_v1_<size>.pt``, a flat torch state dict of the whole TerraMind model
  as terratorch's builder reads it (the encoder's tensors plus tensors it does not use: other
  modalities' patch embeddings, a decoder);
- adapters repo, one folder per head (``lulc_nyc/``, ``buildings_nyc/``): ``adapter_config.json``
  (hand-written fields: ``r``, ``lora_alpha``, ``target_modules``, ``base_model_name_or_path``,
  ``num_classes``, ...), ``adapter_model.safetensors`` (LoRA factors, keys
  ``encoder.encoder.encoder.{i}.attn.{qkv|proj}.lora_{A|B}.default.weight``) and
  ``decoder_head.safetensors`` (``neck.*``, ``decoder.*``, ``head.*`` of terratorch's
  ``PixelWiseModel``, BatchNorm buffers included).

:func:`reference_model` builds one head's model the way the adapters' own loader does
(terratorch's factory: TerraMind backbone in a TemporalWrapper, T = 4, concat pooling, the neck,
UNet decoder and head; LoRA merged as ``W + (alpha / r) * B @ A``; loaded strictly).
Needs torch and terratorch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..model.adapters import HEAD_FOLDERS, base_file_name
from ..model.config import DEFAULT_HEADS

__all__ = ["ADAPTER_TIMESTEPS", "NECKS", "reference_model", "write_synthetic_adapters"]

#: Time steps the adapters were trained with (four copies of one acquisition).
ADAPTER_TIMESTEPS = 4
#: The neck the adapters were trained with, as terratorch factory arguments.
NECKS: tuple[dict[str, Any], ...] = (
    {"name": "SelectIndices", "indices": [2, 5, 8, 11]},
    {"name": "ReshapeTokensToImage", "remove_cls_token": False},
    {"name": "LearnedInterpolateToPyramidal"},
)
_CLASSES = {h.name: len(h.classes) for h in DEFAULT_HEADS}
_MODALITIES = ["S2L2A", "S1RTC", "DEM"]


def reference_model(encoder: str, num_classes: int, decoder_channels: Sequence[int]) -> Any:
    """One adapter's model built the way the adapters were trained (random weights, eval mode)."""
    from ..model.compat import terratorch_imports

    with terratorch_imports():
        from terratorch.models import EncoderDecoderFactory

    return EncoderDecoderFactory().build_model(
        task="segmentation", backbone=encoder, backbone_modalities=list(_MODALITIES), backbone_pretrained=False,
        backbone_use_temporal=True, backbone_temporal_pooling="concat",
        backbone_temporal_n_timestamps=ADAPTER_TIMESTEPS, necks=[dict(n) for n in NECKS], decoder="UNetDecoder",
        decoder_channels=list(decoder_channels), num_classes=num_classes, head_dropout=0.1,
    ).eval()


def write_synthetic_adapters(root: str | Path, *, encoder: str = "terramind_v1_tiny", rank: int = 16,
                             alpha: float = 32.0, decoder_channels: Sequence[int] = (512, 256, 128, 64),
                             seed: int = 0, lora_std: float = 0.05) -> tuple[Path, Path]:
    """Write a base repo folder and an adapters repo folder under ``root``; return both paths.

    Every tensor is random (seeded) at a scale that keeps activations alive through the network
    (norm scales near 1, variance-preserving linear and convolution weights), and the LoRA ``B``
    factors are non-zero, so that logits depend on the encoder and on the merge. The base file holds the encoder of the three modalities plus tensors the encoder
    does not use, as the published one does.
    """
    import torch
    from safetensors.torch import save_file

    root = Path(root)
    base_dir, adapters_dir = root / "base", root / "adapters"
    base_dir.mkdir(parents=True, exist_ok=True)
    adapters_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)

    def randomise(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in sd.items():
            if k.endswith("num_batches_tracked"):
                out[k] = v.clone()
            elif k.endswith("running_var"):
                out[k] = torch.rand(v.shape, generator=gen) + 0.5
            elif v.is_floating_point() and k.endswith(".weight") and v.ndim == 1:  # norm scales near 1
                out[k] = (1 + 0.1 * torch.randn(v.shape, generator=gen)).to(v.dtype)
            elif v.is_floating_point() and k.endswith(".weight"):  # linear / conv: variance-preserving
                out[k] = (torch.randn(v.shape, generator=gen) / v[0].numel() ** 0.5).to(v.dtype)
            elif v.is_floating_point():
                out[k] = (torch.randn(v.shape, generator=gen) * 0.05).to(v.dtype)
            else:
                out[k] = v.clone()
        return out

    model = reference_model(encoder, 5, decoder_channels)
    vit = model.encoder.encoder  # TemporalWrapper -> TerraMindViT
    base = randomise(vit.state_dict())
    base["decoder.0.weight"] = torch.randn(8, 8, generator=gen)  # a part of TerraMind the encoder does not use
    base["encoder_embeddings.untok_sen2l1c@224.proj.weight"] = torch.randn(4, 4, generator=gen)
    torch.save(base, base_dir / base_file_name(encoder))
    (base_dir / "README.md").write_text(f"Synthetic stand-in for {encoder} (random weights, for tests).\n")

    targets = ("attn.qkv", "attn.proj")
    for head, folder in HEAD_FOLDERS.items():
        n_classes = _CLASSES[head]
        d = adapters_dir / folder
        d.mkdir(exist_ok=True)
        m = reference_model(encoder, n_classes, decoder_channels)
        lora: dict[str, torch.Tensor] = {}
        for i, block in enumerate(m.encoder.encoder.encoder):
            for t in targets:
                lin = block.attn.qkv if t == "attn.qkv" else block.attn.proj
                key = f"encoder.encoder.encoder.{i}.{t}"
                lora[f"{key}.lora_A.default.weight"] = torch.randn(rank, lin.in_features, generator=gen) * lora_std
                lora[f"{key}.lora_B.default.weight"] = torch.randn(lin.out_features, rank, generator=gen) * lora_std
        save_file(lora, str(d / "adapter_model.safetensors"))
        rest = randomise({k: v for k, v in m.state_dict().items() if k.startswith(("neck.", "decoder.", "head."))})
        save_file(rest, str(d / "decoder_head.safetensors"))
        (d / "adapter_config.json").write_text(json.dumps({
            "base_model_name_or_path": "ibm-esa-geospatial/TerraMind-1.0-" + encoder.rsplit("_", 1)[-1],
            "peft_type": "LORA", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.05,
            "target_modules": list(targets), "num_classes": n_classes, "task": head,
        }, indent=2))
    (adapters_dir / "README.md").write_text("Synthetic stand-in for the NYC adapters (random weights, for tests).\n")
    return base_dir, adapters_dir
