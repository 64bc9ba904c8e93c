"""Tiny TerraMind checkpoints with random weights, for tests, selfcheck and benchmarks.

    path = make_tiny_artifact(tmp_path / "artifact")
    settings = Settings(checkpoint=str(path))

The figures such a model gives are meaningless; the plumbing (config, weights, tiling,
heads) is the real thing. Needs the ``torch`` extra (torch + terratorch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..model.config import ModelConfig

__all__ = ["linear_runtime", "make_tiny_artifact", "make_tiny_network", "tiny_config"]


def tiny_config(**changes: Any) -> ModelConfig:
    """The default two-head config on ``terramind_v1_tiny`` (``changes`` override any field)."""
    fields: dict[str, Any] = {"encoder": "terramind_v1_tiny", "name": "terramind-nyc-tiny-random",
                              "version": "0.0.0+random", "license": "Apache-2.0 (random weights, for tests)"}
    fields.update(changes)
    return ModelConfig(**fields)


def make_tiny_network(config: ModelConfig | None = None, *, seed: int = 0) -> Any:
    """A :class:`~terramind_nyc.model.network.MultiHeadTerraMind` with seeded random weights, in eval mode."""
    import torch

    from ..model.network import build_network

    config = tiny_config() if config is None else config
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        net = build_network(config, pretrained=False)
    finally:
        torch.random.set_rng_state(state)
    return net.eval()


def make_tiny_artifact(directory: str | os.PathLike[str], *, config: ModelConfig | None = None, seed: int = 0,
                       overwrite: bool = True) -> Path:
    """Write a tiny random-weight artifact (``config.json`` + ``model.safetensors``) to ``directory``."""
    from ..model.artifact import save_artifact

    net = make_tiny_network(config, seed=seed)
    return save_artifact(net, None, directory, overwrite=overwrite)


def linear_runtime(seed: int = 0) -> Any:
    """A real :class:`~terramind_nyc.model.runtime.Runtime` (input checks, standardising, tiling,
    blending, softmax) on the tiny config whose network is a fixed random per-pixel linear map:
    milliseconds a tile, no torch. For tests and benchmarks of everything around the model."""
    import numpy as np

    from ..model.runtime import Runtime

    class LinearRuntime(Runtime):
        backend = "linear"
        weights: dict[str, Any] = {}

        def _forward(self, batch: Any) -> Any:
            x = np.concatenate([batch[m.name] for m in self.config.modalities if m.name in batch], axis=1)
            return {h: np.einsum("oc,kcij->koij", w[:, :x.shape[1]], x).astype(np.float32)
                    for h, w in self.weights.items()}

    cfg = tiny_config()
    rt = LinearRuntime(cfg, {"id": f"linear-{seed}", "revision": None, "name": "linear", "sha256": f"{seed:064d}"})
    rng = np.random.default_rng(seed)
    n_bands = sum(len(m.bands) for m in cfg.modalities)
    rt.weights = {h.name: rng.normal(size=(len(h.classes), n_bands)).astype(np.float32) for h in cfg.heads}
    return rt

