"""Inference runtimes: raw modality arrays on a grid in, per-head class probabilities out.

    rt = get_runtime(settings)                     # loads the checkpoint once per process
    p = rt.predict({"S2L2A": s2_dn, "S1RTC": s1_db, "DEM": dem_m},
                   masks={"S2L2A": s2_valid, ...})
    p.probabilities["buildings"]                   # float32 (2, H, W) on the input grid

:meth:`Runtime.predict` validates the arrays, standardises each band with the checkpoint's
statistics (nodata -> 0, the mean, after standardising), cuts the window into tiles of the
config's tile size with overlap (:mod:`terramind_nyc.tiling`), runs all tiles in batches of
``tile_batch``, blends the logits and returns softmax probabilities as numpy. The tiling,
standardisation and blending are backend-independent; a backend only implements
:meth:`Runtime._forward` on a batch of standardised tiles. Two backends:

- :class:`TorchRuntime`: the network of :mod:`terramind_nyc.network` (CPU, CUDA; ROCm builds of
  torch also report as ``cuda``).
- :class:`OnnxRuntime`: the artifact's ONNX export (:mod:`terramind_nyc.onnx_export`) in ONNX
  Runtime, with the execution providers of the ``onnx_providers`` setting (MIGraphX, ROCm,
  CUDA, CPU) filtered to those the installed onnxruntime offers. Neither torch nor terratorch
  is imported.

``backend="auto"`` takes ONNX Runtime when the artifact has an ONNX export and onnxruntime is
installed, else torch.

Runtimes are safe to call from several threads: the torch network is only read (eval mode,
under ``torch.inference_mode``), an ONNX Runtime session's ``run`` is thread-safe, and every
call keeps its own buffers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .artifact import Artifact, ModelConfig, OnnxFiles
from .errors import BackendError, CheckpointError, InvalidInputError, SettingsError, TerramindNYCWarning
from .settings import Settings
from .tiling import TileBlender, TilePlan, cut_tiles, pad_to_canvas, plan_tiles, softmax

if TYPE_CHECKING:  # pragma: no cover
    from .network import MultiHeadTerraMind

__all__ = [
    "ONNX_EXTRAS",
    "OnnxRuntime",
    "Prediction",
    "ProviderFallbackWarning",
    "Runtime",
    "TorchRuntime",
    "clear_runtimes",
    "get_runtime",
    "load_runtime",
    "resolve_device",
    "standardise",
    "validate_inputs",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The output of one :meth:`Runtime.predict` call."""

    probabilities: Mapping[str, np.ndarray]
    """Head -> float32 ``(classes, H, W)`` softmax probabilities on the input grid (classes in config order)."""
    modalities: tuple[str, ...]
    """Modalities the model ran on, in model order."""
    n_tiles: int
    """Tiles the window was cut into."""
    seconds: float
    """Wall time of the call."""


# ----------------------------------------------------------------------------------------
# Input validation and standardisation (backend-independent)
# ----------------------------------------------------------------------------------------
def validate_inputs(
    config: ModelConfig,
    arrays: Mapping[str, Any],
    masks: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], tuple[int, int]]:
    """Check raw inputs against the config; return (arrays, valid masks, (H, W)) in model order.

    ``arrays[m]`` is ``(bands, H, W)`` (``(bands, T, H, W)`` when T > 1; a single-band modality
    may be ``(H, W)``), any real number dtype, bands in the config's order. ``masks[m]`` is bool
    ``(H, W)`` (or ``(T, H, W)``), True where the pixel holds data; a modality without a mask is
    valid wherever all its bands are finite.
    """
    if not isinstance(arrays, Mapping) or not arrays:
        raise InvalidInputError(
            f"give a dict of at least one modality array, keys from {list(config.modality_names)}"
        )
    unknown = sorted(str(k) for k in arrays if k not in config.modality_names)
    if unknown:
        raise InvalidInputError(f"unknown modality {unknown}; this checkpoint takes {list(config.modality_names)}")
    masks = {} if masks is None else masks
    if not isinstance(masks, Mapping):
        raise InvalidInputError(f"masks must be a dict of modality -> bool array, got {type(masks).__name__}")
    stray = sorted(str(k) for k in masks if k not in arrays)
    if stray:
        raise InvalidInputError(f"masks given for modalities without arrays: {stray}")
    t = config.timesteps
    ndim = 3 if t == 1 else 4
    layout = "(bands, H, W)" if t == 1 else f"(bands, T={t}, H, W)"
    out: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    size: tuple[int, int] | None = None
    for m in config.modality_names:
        if m not in arrays:
            continue
        spec = config.modality(m)
        try:
            a = np.asarray(arrays[m])
        except Exception as exc:  # noqa: BLE001 - anything that is not array-like
            raise InvalidInputError(f"{m}: not an array ({type(arrays[m]).__name__}: {exc})") from None
        if a.dtype.kind not in "iuf":
            raise InvalidInputError(
                f"{m}: dtype {a.dtype} is not a real number type; pass float32 (or integer DN) values in {spec.units or 'the modality units'}"
            )
        if a.ndim == ndim - 1 and len(spec.bands) == 1:
            a = a[None]
        if a.ndim != ndim:
            raise InvalidInputError(f"{m}: expected a {ndim}-D array {layout}, got shape {a.shape}")
        if a.shape[0] != len(spec.bands):
            raise InvalidInputError(
                f"{m}: {a.shape[0]} bands, the checkpoint takes {len(spec.bands)} in this order: {', '.join(spec.bands)}"
            )
        if t > 1 and a.shape[1] != t:
            raise InvalidInputError(f"{m}: {a.shape[1]} time steps, the checkpoint takes {t}")
        hw = (int(a.shape[-2]), int(a.shape[-1]))
        if min(hw) < 1:
            raise InvalidInputError(f"{m}: empty window {hw}; windows need at least 1x1 px")
        if size is None:
            size = hw
        elif hw != size:
            raise InvalidInputError(f"modalities differ in size: {m} is {hw[0]}x{hw[1]}, another is {size[0]}x{size[1]}")
        finite = np.isfinite(a).all(axis=0) if a.dtype.kind == "f" else np.ones(a.shape[1:], bool)
        if m in masks and masks[m] is not None:
            mk = np.asarray(masks[m])
            if mk.dtype.kind not in "bui":
                raise InvalidInputError(f"{m} mask: dtype {mk.dtype}; pass a bool array, True where the pixel holds data")
            if mk.shape != hw and mk.shape != a.shape[1:]:
                raise InvalidInputError(f"{m} mask: shape {mk.shape} does not match the array's {hw}")
            finite = finite & mk.astype(bool)
        out[m] = a
        valid[m] = finite
    assert size is not None
    return out, valid, size


def standardise(config: ModelConfig, arrays: Mapping[str, np.ndarray],
                valid: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float32 ``(x - mean) / std`` per band with the config's statistics; invalid pixels -> 0.

    ``arrays`` and ``valid`` as :func:`validate_inputs` returns them.
    """
    out: dict[str, np.ndarray] = {}
    for m, a in arrays.items():
        spec = config.modality(m)
        shape = (-1,) + (1,) * (a.ndim - 1)
        mean = np.asarray(spec.mean, np.float32).reshape(shape)
        std = np.asarray(spec.std, np.float32).reshape(shape)
        x = a.astype(np.float32, copy=True)
        x -= mean
        x /= std
        bad = ~valid[m]
        if bad.any():
            x[:, np.broadcast_to(bad, x.shape[1:])] = 0.0
        out[m] = x
    return out


# ----------------------------------------------------------------------------------------
# Runtimes
# ----------------------------------------------------------------------------------------
class Runtime:
    """A loaded checkpoint behind one backend. Subclasses implement :meth:`_forward`.

    Args:
        config: the checkpoint's config.
        checkpoint: its identity (id, revision, name, version, sha256, ...) for provenance.
        tile_overlap: overlap in px between neighbouring tiles; a quarter of it is dropped at
            each tile edge, the rest blended (224 tiles, 32 px: stride 192, delta 8, which are
            terratorch's ``tiled_inference`` defaults).
        tile_batch: tiles per forward pass.
    """

    backend = "none"

    def __init__(self, config: ModelConfig, checkpoint: Mapping[str, Any], *, tile_overlap: int = 32,
                 tile_batch: int = 8) -> None:
        if not isinstance(tile_overlap, int) or not 0 <= tile_overlap < config.tile_size:
            raise SettingsError(
                f"tile_overlap_px must be an integer in 0..{config.tile_size - 1} (the checkpoint's tile is "
                f"{config.tile_size} px), got {tile_overlap!r}"
            )
        if not isinstance(tile_batch, int) or tile_batch < 1:
            raise SettingsError(f"tile_batch must be a positive integer, got {tile_batch!r}")
        self.config = config
        self.checkpoint = dict(checkpoint)
        self.tile_overlap = tile_overlap
        self.tile_batch = tile_batch
        self.device = "cpu"

    # --- what callers read ----------------------------------------------------------------
    def model_info(self) -> dict[str, Any]:
        """Checkpoint identity, modalities, heads (classes, colours, threshold), backend, device."""
        c = self.config
        heads = {h.name: {"classes": h.classes, "colors": h.colors, "threshold": h.threshold} for h in c.heads}
        lulc = heads.get("lulc", {})
        bld = heads.get("buildings", {})
        s2 = next((m.bands for m in c.modalities if m.name == "S2L2A"), ())
        return {
            "checkpoint": dict(self.checkpoint),
            "backend": self.backend,
            "device": self.device,
            "modalities": c.modality_names,
            "heads": heads,
            "lulc_classes": lulc.get("classes", ()),
            "lulc_colors": lulc.get("colors", ()),
            "building_threshold": bld.get("threshold"),
            "s2_bands": s2,
            "tile_size": c.tile_size,
            "timesteps": c.timesteps,
        }

    def plan(self, height: int, width: int) -> TilePlan:
        """The tile plan for a window of ``height`` x ``width`` px."""
        return plan_tiles(height, width, tile=self.config.tile_size, stride=self.config.tile_size - self.tile_overlap,
                          delta=self.tile_overlap // 4)

    def predict(self, arrays: Mapping[str, Any], masks: Mapping[str, Any] | None = None) -> Prediction:
        """Probabilities per head for raw modality arrays on one grid.

        Args:
            arrays: modality -> ``(bands, H, W)`` raw values (S2L2A harmonised DN, S1RTC dB,
                DEM metres), bands in the config's order; any non-empty subset of the
                checkpoint's modalities; any window of at least 1x1 px.
            masks: modality -> bool ``(H, W)``, True where the pixel holds data (optional;
                non-finite values are nodata either way).

        Raises InvalidInputError for wrong modalities, band counts, dtypes or shapes.
        """
        t0 = time.perf_counter()
        arrays_, valid, _ = validate_inputs(self.config, arrays, masks)
        x = standardise(self.config, arrays_, valid)
        probs = self.predict_standardised(x)
        return Prediction(probs, tuple(x), self.plan(*next(iter(x.values())).shape[-2:]).n_tiles,
                          time.perf_counter() - t0)

    def predict_standardised(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Softmax probabilities per head for already standardised float32 inputs (one window)."""
        return {h: softmax(v, axis=0) for h, v in self.tiled_logits(inputs).items()}

    def tiled_logits(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Blended logits per head ``(classes, H, W)`` for standardised float32 inputs (one window)."""
        first = next(iter(inputs.values()))
        plan = self.plan(int(first.shape[-2]), int(first.shape[-1]))
        canvases = {m: pad_to_canvas(np.asarray(a, np.float32), plan) for m, a in inputs.items()}
        blenders = {h.name: TileBlender(plan, len(h.classes)) for h in self.config.heads}
        for start in range(0, plan.n_tiles, self.tile_batch):
            stop = min(start + self.tile_batch, plan.n_tiles)
            batch = {m: cut_tiles(c, plan, start, stop) for m, c in canvases.items()}
            out = self._forward(batch)
            for h, b in blenders.items():
                b.add(start, out[h])
        return {h: b.result() for h, b in blenders.items()}

    def _forward(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """Logits per head ``(k, classes, tile, tile)`` float32 for a batch of standardised tiles."""
        raise NotImplementedError

    def with_tiling(self, *, tile_overlap: int, tile_batch: int) -> Runtime:
        """A runtime sharing this one's loaded model, with other tiling parameters."""
        import copy

        other = copy.copy(self)
        Runtime.__init__(other, self.config, self.checkpoint, tile_overlap=tile_overlap, tile_batch=tile_batch)
        other.device = self.device
        return other


class TorchRuntime(Runtime):
    """The torch backend: the network from :mod:`terramind_nyc.network` on CPU or a GPU.

    The network is prepared in place (:meth:`~terramind_nyc.network.MultiHeadTerraMind.prepare_for_inference`:
    eval mode, channels-last convolutions on CPU).
    """

    backend = "torch"

    def __init__(self, network: MultiHeadTerraMind, *, checkpoint: Mapping[str, Any] | None = None,
                 device: str = "cpu", tile_overlap: int = 32, tile_batch: int = 8) -> None:
        super().__init__(network.config, checkpoint or {"id": None, "sha256": None}, tile_overlap=tile_overlap,
                         tile_batch=tile_batch)
        import torch

        self._torch = torch
        self.network = network.prepare_for_inference(device)
        self.device = str(device)
        self._torch_device = torch.device(device)

    @classmethod
    def from_artifact(cls, artifact: Artifact, **kwargs: Any) -> TorchRuntime:
        """A runtime around a loaded :class:`~terramind_nyc.artifact.Artifact`."""
        return cls(artifact.network, checkpoint=artifact.describe(), device=artifact.device, **kwargs)

    def _forward(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            x = {m: torch.from_numpy(a).to(self._torch_device) for m, a in batch.items()}
            out = self.network(x)
            return {h: v.float().cpu().contiguous().numpy() for h, v in out.items()}


# ----------------------------------------------------------------------------------------
# Loading, once per process
# ----------------------------------------------------------------------------------------
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


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("terratorch") is not None


def load_runtime(
    checkpoint: str,
    *,
    revision: str | None = None,
    backend: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    tile_overlap: int = 32,
    tile_batch: int = 8,
) -> Runtime:
    """Load ``checkpoint`` behind a backend (no caching: see :func:`get_runtime`).

    ``backend``: ``torch``, or ``auto`` (torch; the ONNX Runtime backend is not part of this
    version). ``threads`` sets torch's intra-op threads for the whole process.
    """
    from .artifact import load_artifact

    if backend not in ("auto", "torch", "onnx"):
        raise BackendError(f"unknown backend {backend!r}; use 'auto', 'torch' or 'onnx'")
    if backend == "onnx":
        raise BackendError(
            "the ONNX Runtime backend is not available in this version of terramind-nyc; "
            "set TERRAMIND_NYC_BACKEND=torch (or auto)"
        )
    if not _torch_available():
        raise BackendError(
            "the torch backend needs torch and terratorch: pip install -c constraints.txt 'terramind-nyc[torch]'"
        )
    dev = resolve_device(device)
    if threads is not None:
        import torch

        if not isinstance(threads, int) or threads < 1:
            raise SettingsError(f"threads must be a positive integer or None, got {threads!r}")
        torch.set_num_threads(threads)
    artifact = load_artifact(checkpoint, revision=revision, device=dev)
    return TorchRuntime.from_artifact(artifact, tile_overlap=tile_overlap, tile_batch=tile_batch)


_lock = threading.Lock()
_models: dict[tuple[Any, ...], Runtime] = {}
_runtimes: dict[tuple[Any, ...], Runtime] = {}


def get_runtime(settings: Settings | None = None) -> Runtime:
    """The runtime for ``settings`` (default ``Settings.from_env()``), loaded once per process.

    Runtimes that differ only in tiling share one loaded model. A failed load caches nothing;
    the next call tries again.
    """
    s = Settings.from_env() if settings is None else settings
    if not isinstance(s, Settings):
        raise InvalidInputError(f"settings must be a Settings, got {type(s).__name__}")
    key = (s.checkpoint, s.checkpoint_revision, s.backend, s.device, s.threads, s.tile_overlap_px, s.tile_batch)
    rt = _runtimes.get(key)
    if rt is not None:
        return rt
    with _lock:
        rt = _runtimes.get(key)
        if rt is not None:
            return rt
        mkey = (s.checkpoint, s.checkpoint_revision, s.backend, s.device, s.threads)
        model = _models.get(mkey)
        if model is None:
            model = load_runtime(s.checkpoint, revision=s.checkpoint_revision, backend=s.backend, device=s.device,
                                 threads=s.threads, tile_overlap=s.tile_overlap_px, tile_batch=s.tile_batch)
            _models[mkey] = model
        rt = model.with_tiling(tile_overlap=s.tile_overlap_px, tile_batch=s.tile_batch)
        _runtimes[key] = rt
        return rt


def clear_runtimes() -> None:
    """Forget every loaded runtime (the next :func:`get_runtime` loads again)."""
    with _lock:
        _models.clear()
        _runtimes.clear()
