"""The torch backend: the network of :mod:`terramind_nyc.model.network` on the CPU or a GPU.

    rt = TorchRuntime.from_artifact(load_artifact("path/or/repo", device=resolve_device("auto")))

torch is imported only when a runtime is made (or a device resolved), never by importing this
module, so the torch-free backends can import :mod:`terramind_nyc.model.backends`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendError
from . import precision as precision_policy
from .precision import resolve_precision, torch_numerics
from .runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover
    from .artifact import Artifact
    from .network import MultiHeadTerraMind

__all__ = ["TorchRuntime", "resolve_device", "torch_bf16_support"]


class TorchRuntime(Runtime):
    """The torch backend: the network from :mod:`terramind_nyc.model.network` on CPU or a GPU.

    The network is prepared in place (:meth:`~terramind_nyc.model.network.MultiHeadTerraMind.prepare_for_inference`:
    eval mode, channels-last convolutions on CPU). ``precision`` (``fp32``, ``bf16``, ``auto``):
    bf16 runs the network under ``torch.autocast``; it is supported on CUDA / ROCm devices that
    report bf16 and on CPUs with AMX-BF16 / AVX512-BF16 units (elsewhere bf16 warns and fp32 runs).
    Every pass uses IEEE fp32 matmuls outside autocast, whatever the process-wide setting is.
    """

    backend = "torch"

    def __init__(self, network: MultiHeadTerraMind, *, checkpoint: Mapping[str, Any] | None = None,
                 device: str = "cpu", precision: str = "fp32", tile_overlap: int = 32, tile_batch: int = 8) -> None:
        super().__init__(network.config, checkpoint or {"id": None, "sha256": None}, tile_overlap=tile_overlap,
                         tile_batch=tile_batch)
        import torch

        self._torch = torch
        self.network = network.prepare_for_inference(device)
        self.device = str(device)
        self._torch_device = torch.device(device)
        self._device_type = self._torch_device.type
        self.precision = resolve_precision(precision, **torch_bf16_support(self._torch_device))

    @classmethod
    def from_artifact(cls, artifact: Artifact, **kwargs: Any) -> TorchRuntime:
        """A runtime around a loaded :class:`~terramind_nyc.model.artifact.Artifact`."""
        return cls(artifact.network, checkpoint=artifact.describe(), device=artifact.device, **kwargs)

    def _forward(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode(), torch_numerics(self.precision.used, self._device_type):
            x = {m: torch.from_numpy(a).to(self._torch_device) for m, a in batch.items()}
            out = self.network(x)
            return {h: v.float().cpu().contiguous().numpy() for h, v in out.items()}


def torch_bf16_support(device: Any) -> dict[str, Any]:
    """``resolve_precision`` keywords for torch on ``device`` (a ``torch.device``): CUDA / ROCm
    devices that report bf16, CPUs whose flags show AMX-BF16 or AVX512-BF16."""
    import torch

    if device.type == "cuda":
        ok = bool(torch.cuda.is_bf16_supported())
        return {"bf16_supported": ok, "where": f"torch on {torch.cuda.get_device_name(device)}",
                "why_not": "" if ok else "the GPU does not support bf16"}
    flags = precision_policy.cpu_bf16_flags()
    return {"bf16_supported": bool(flags) and device.type == "cpu", "where": f"torch on {device.type}",
            "why_not": "" if flags else "the CPU flags show neither amx_bf16 nor avx512_bf16"}



def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU (ROCm builds included), else ``cpu``; checks the rest."""
    import torch

    if not isinstance(device, str) or not device:
        raise BackendError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BackendError(
                f"device {device!r} requested but this torch ({torch.__version__}) sees no GPU: install a CUDA or "
                "ROCm build of torch, or set TERRAMIND_NYC_DEVICE=cpu (or auto)"
            )
        if ":" in device:
            try:
                index = int(device.split(":", 1)[1])
            except ValueError:
                raise BackendError(f"device {device!r}: the GPU index must be an integer") from None
            if not 0 <= index < torch.cuda.device_count():
                raise BackendError(f"device {device!r}: torch sees {torch.cuda.device_count()} GPU(s)")
        return device
    raise BackendError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'")
