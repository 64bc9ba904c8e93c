"""Inference runtimes: raw modality arrays on a grid in, per-head class probabilities out.

    rt = get_runtime(settings)                     # terramind_nyc.model.backends: loaded once per process
    p = rt.predict({"S2L2A": s2_dn, "S1RTC": s1_db, "DEM": dem_m},
                   masks={"S2L2A": s2_valid, ...})
    p.probabilities["buildings"]                   # float32 (2, H, W) on the input grid

:meth:`Runtime.predict` validates the arrays, standardises each band with the checkpoint's
statistics (nodata -> 0, the mean, after standardising), cuts the window into tiles of the
config's tile size with overlap (:mod:`terramind_nyc.model.tiling`), runs all tiles in batches of
``tile_batch``, blends the logits and returns softmax probabilities as numpy. The tiling,
standardisation and blending are backend-independent; a backend only implements
:meth:`Runtime._forward` on a batch of standardised tiles. Two backends:

- :class:`TorchRuntime`: the network of :mod:`terramind_nyc.model.network` (CPU, CUDA; ROCm builds of
  torch also report as ``cuda``).
- :class:`OnnxRuntime`: the artifact's ONNX export (:mod:`terramind_nyc.model.export_onnx`) in ONNX
  Runtime, with the execution providers of the ``onnx_providers`` setting (MIGraphX, ROCm,
  CUDA, CPU) filtered to those the installed onnxruntime offers. Neither torch nor terratorch
  is imported.
- :class:`~terramind_nyc.model.runtime_openvino.OpenVinoRuntime`: the same ONNX graphs compiled by
  OpenVINO for its CPU (or Intel GPU) device, torch-free as well.

Which backend a checkpoint gets, and loading it once per process, is :mod:`terramind_nyc.model.backends`
(``load_runtime``, ``get_runtime``).

Precision (:mod:`terramind_nyc.model.precision`): each runtime resolves the ``precision`` setting for
its backend and device once, at load (:attr:`Runtime.precision`), and every forward pass runs
in that precision only for its own duration; the caller's torch settings are never changed.

Runtimes are safe to call from several threads: the torch network is only read (eval mode,
under ``torch.inference_mode``), an ONNX Runtime session's ``run`` is thread-safe, and every
call keeps its own buffers.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from . import precision as precision_policy
from .artifact import Artifact, ModelConfig, OnnxFiles
from ..errors import (
    BackendError,
    CheckpointError,
    InvalidInputError,
    ProviderFallbackWarning,
    SettingsError,
)
from .precision import PrecisionChoice, resolve_precision, torch_numerics
from ..settings import Settings
from .tiling import TileBlender, TilePlan, cut_tiles, pad_to_canvas, plan_tiles, softmax, tile_geometry

if TYPE_CHECKING:  # pragma: no cover
    from .network import MultiHeadTerraMind

__all__ = [
    "ONNX_EXTRAS",
    "ORT_HINT",
    "OnnxGraphRuntime",
    "OnnxRuntime",
    "Prediction",
    "ProviderFallbackWarning",
    "Runtime",
    "TorchRuntime",
    "gpu_providers_offered",
    "resolve_device",
    "standardise",
    "torch_bf16_support",
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
    #: The precision that runs and why (backends resolve the ``precision`` setting at load).
    precision = PrecisionChoice("fp32", "fp32", "fp32 requested")

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
            "precision": self.precision.used,
            "precision_requested": self.precision.requested,
            "precision_reason": self.precision.reason,
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
        return plan_tiles(height, width, **tile_geometry(self.config.tile_size, self.tile_overlap))

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


# ----------------------------------------------------------------------------------------
# ONNX Runtime
# ----------------------------------------------------------------------------------------
#: The extras that install an onnxruntime package (exactly one of them: they share one module folder).
ONNX_EXTRAS: Mapping[str, str] = {
    "onnx": "onnxruntime",
    "gpu": "onnxruntime-gpu",
    "rocm": "onnxruntime-rocm",
    "migraphx": "onnxruntime-migraphx",
}
#: Execution provider -> the extra whose onnxruntime package offers it.
_PROVIDER_EXTRA: Mapping[str, str] = {
    "MIGraphXExecutionProvider": "migraphx",
    "ROCMExecutionProvider": "rocm",
    "CUDAExecutionProvider": "gpu",
    "TensorrtExecutionProvider": "gpu",
    "CPUExecutionProvider": "onnx",
}
_CPU = "CPUExecutionProvider"
ORT_HINT = (
    "pip install 'terramind-nyc[onnx]' for CPU, or instead exactly one of 'terramind-nyc[gpu]' (CUDA), "
    "'terramind-nyc[rocm]', 'terramind-nyc[migraphx]' (they all install the one `onnxruntime` module and must "
    "never be installed together; see docs/onnx.md)"
)
_warned: set[tuple[Any, ...]] = set()
_warn_lock = threading.Lock()


def _warn_once(key: tuple[Any, ...], message: str) -> None:
    """Emit a ProviderFallbackWarning once per process for ``key``."""
    with _warn_lock:
        if key in _warned:
            log.debug("%s", message)
            return
        _warned.add(key)
    warnings.warn(message, ProviderFallbackWarning, stacklevel=4)


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module; BackendError naming the extras when it is missing or broken."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(f"the ONNX Runtime backend needs onnxruntime ({exc}): {ORT_HINT}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. two onnxruntime packages mixed in one folder
        raise BackendError(
            f"onnxruntime is installed but does not import ({type(exc).__name__}: {exc}); two onnxruntime packages "
            f"installed together break each other: uninstall all of them, then {ORT_HINT}"
        ) from None
    return onnxruntime


def gpu_providers_offered(ort: Any) -> list[str]:
    """The GPU execution providers (MIGraphX, ROCm, CUDA, TensorRT) the installed onnxruntime offers."""
    return [p for p in ort.get_available_providers() if p in _PROVIDER_EXTRA and p != _CPU]


def _default_providers() -> tuple[str, ...]:
    default: tuple[str, ...] = Settings.__dataclass_fields__["onnx_providers"].default  # type: ignore[assignment]
    return tuple(default)


class OnnxGraphRuntime(Runtime):
    """Base of the backends that run the artifact's exported ONNX graphs (ONNX Runtime, OpenVINO).

    One compiled graph per modality subset, made on first use (the full set at load) by
    :meth:`_compile` and shared by every thread and every runtime of the process that uses the
    same loaded checkpoint (:func:`get_runtime`). A chip whose modalities have no graph in the
    export raises BackendError naming the subset and how to export it. Each compiled graph's
    inputs and outputs are checked against ``config.json`` (:meth:`check_graph_io`).
    """

    def __init__(self, files: OnnxFiles, *, threads: int | None = None, tile_overlap: int = 32,
                 tile_batch: int = 8) -> None:
        super().__init__(files.config, files.describe(), tile_overlap=tile_overlap, tile_batch=tile_batch)
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise SettingsError(f"threads must be a positive integer or None, got {threads!r}")
        self.threads = threads
        self.files = files
        self._label = f"checkpoint {files.source!r}"
        self._heads = list(files.config.head_names)
        self._compiled: dict[tuple[str, ...], Any] = {}
        self._compile_lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, checkpoint: str, *, revision: str | None = None, **kwargs: Any) -> Self:
        """Locate and verify ``checkpoint``'s ONNX export, then start the runtime (``kwargs`` as the constructor)."""
        from .artifact import locate_onnx

        return cls(locate_onnx(checkpoint, revision=revision), **kwargs)

    def _first_subset(self) -> tuple[str, ...]:
        names = self.files.config.modality_names
        return names if names in self.files.graphs else next(iter(self.files.graphs))

    def compiled_subsets(self) -> list[tuple[str, ...]]:
        """The modality subsets whose graphs are compiled so far."""
        return list(self._compiled)

    def _graph(self, modalities: tuple[str, ...]) -> Any:
        graph = self._compiled.get(modalities)
        if graph is not None:
            return graph
        path = self.files.graphs.get(modalities)
        if path is None:
            have = ", ".join("+".join(k) for k in self.files.graphs)
            raise BackendError(
                f"the ONNX export of {self._label} has no graph for the modalities {'+'.join(modalities)} "
                f"(it has: {have}); re-export with `terramind-nyc export-onnx {self.files.source} --subsets all` "
                f"(or a --subsets list that includes {'+'.join(modalities)}), or use backend torch"
            )
        with self._compile_lock:
            graph = self._compiled.get(modalities)
            if graph is None:
                graph = self._compile(path, modalities)
                self._compiled[modalities] = graph
        return graph

    def _compile(self, path: Path, modalities: tuple[str, ...]) -> Any:
        """The backend's runnable form of the graph at ``path`` (checked with :meth:`check_graph_io`)."""
        raise NotImplementedError

    def check_graph_io(self, name: str, modalities: tuple[str, ...],
                       inputs: Mapping[str, tuple[bool, str, list[Any]]], outputs: Mapping[str, list[Any]]) -> None:
        """A graph's inputs and outputs against config.json (names, bands, tile size, classes).

        ``inputs``: name -> (element type is float32, the backend's name of the type, shape);
        ``outputs``: name -> shape. A dimension is an int when fixed, anything else (a name,
        None) when dynamic.
        """
        c = self.config
        fix = f"the ONNX export does not match config.json: re-run `terramind-nyc export-onnx {self.files.source}`"
        if set(inputs) != set(modalities):
            raise CheckpointError(f"{self._label}: {name} takes inputs {sorted(inputs)}, config.json records it for "
                                  f"the modalities {list(modalities)}; {fix}")
        t = c.tile_size
        for m in modalities:
            spec = c.modality(m)
            want: list[Any] = ["batch", len(spec.bands), *([c.timesteps] if c.timesteps > 1 else []), t, t]
            is_float, type_name, got = inputs[m]
            ok = (is_float and len(got) == len(want) and not isinstance(got[0], int)
                  and all(g == w for g, w in zip(got[1:], want[1:])))
            if not ok:
                raise CheckpointError(
                    f"{self._label}: {name} input {m} is {type_name} {got}, config.json "
                    f"describes float {want} ({len(spec.bands)} bands: {', '.join(spec.bands)}; tile {t} px; "
                    f"dynamic batch); {fix}"
                )
        if set(outputs) != set(self._heads):
            raise CheckpointError(f"{self._label}: {name} outputs {sorted(outputs)}, config.json has the heads "
                                  f"{self._heads}; {fix}")
        for h in c.heads:
            got = list(outputs[h.name])
            if len(got) != 4 or (isinstance(got[1], int) and got[1] != len(h.classes)):
                raise CheckpointError(f"{self._label}: {name} output {h.name} is {got}, config.json gives that head "
                                      f"{len(h.classes)} classes ({', '.join(h.classes)}); {fix}")

    def model_info(self) -> dict[str, Any]:
        """As :meth:`Runtime.model_info`, plus ``onnx_subsets``: the exported modality subsets."""
        info = super().model_info()
        info["onnx_subsets"] = [list(k) for k in self.files.graphs]
        return info

    def tiled_logits(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # fail before any tiling work when the export lacks this modality subset
        self._graph(tuple(m for m in self.config.modality_names if m in inputs))
        return super().tiled_logits(inputs)


class OnnxRuntime(OnnxGraphRuntime):
    """The ONNX Runtime backend: the artifact's exported graphs, no torch.

    One ``InferenceSession`` per modality subset (:class:`OnnxGraphRuntime`).

    Args:
        files: the located, verified export (:func:`~terramind_nyc.model.artifact.locate_onnx`).
        providers: execution providers in priority order; those the installed onnxruntime does
            not offer are skipped (a ProviderFallbackWarning, once per process, when the list is
            not the default), and one that fails to start falls back to CPU (always warned).
        device: ``auto`` (the providers as given), ``cpu`` (CPU only) or ``cuda`` (GPU providers only).
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        precision: ONNX Runtime runs the graphs in the precision they were exported in (float32,
            or float16 for an ``fp16`` export); it has no bf16 mode, so ``bf16`` warns and runs
            fp32 (``auto`` quietly runs fp32).
    """

    backend = "onnx"

    def __init__(self, files: OnnxFiles, *, providers: Sequence[str] | None = None, device: str = "auto",
                 threads: int | None = None, precision: str = "fp32", tile_overlap: int = 32,
                 tile_batch: int = 8) -> None:
        super().__init__(files, threads=threads, tile_overlap=tile_overlap, tile_batch=tile_batch)
        ort = import_onnxruntime()
        self._ort = ort
        requested = tuple(_default_providers() if providers is None else providers)
        if not requested or not all(isinstance(p, str) and p for p in requested):
            raise SettingsError(f"onnx_providers must list execution provider names, got {requested!r}")
        if device == "cpu":
            requested = (_CPU,)
        elif device == "cuda" or device.startswith("cuda:"):
            requested = tuple(p for p in requested if p != _CPU)
        elif device != "auto":
            raise BackendError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'")
        available = list(ort.get_available_providers())
        chosen = [p for p in requested if p in available]
        skipped = [p for p in requested if p not in available]
        if not chosen:
            extras = sorted({_PROVIDER_EXTRA[p] for p in requested if p in _PROVIDER_EXTRA})
            raise BackendError(
                f"none of the ONNX Runtime execution providers asked for ({', '.join(requested) or 'none'}) is offered "
                f"by this onnxruntime {ort.__version__} ({', '.join(available)}); install the package of the "
                f"{', '.join(f'[{e}]' for e in extras) or 'matching'} extra instead of the current one, or add "
                f"{_CPU} to TERRAMIND_NYC_ONNX_PROVIDERS (or set TERRAMIND_NYC_DEVICE=auto)"
            )
        first_skipped = [p for p in skipped if requested.index(p) < requested.index(chosen[0])]
        if first_skipped:
            msg = (f"ONNX Runtime execution provider(s) {', '.join(first_skipped)} not offered by this onnxruntime "
                   f"{ort.__version__} (it has {', '.join(available)}); running on {chosen[0]}")
            if providers is not None and tuple(providers) != _default_providers():
                _warn_once(("skipped", tuple(first_skipped), chosen[0]), msg)
            else:
                log.info("%s", msg)
        self.requested_providers = requested
        self._providers = chosen
        self.providers: list[str] = []
        self._graph(self._first_subset())
        self.provider = self.providers[0]
        self.device = self.provider
        fp16 = files.export.precision == "float16"
        choice = resolve_precision(  # ONNX Runtime runs what the export holds; bf16 warns (once)
            precision, bf16_supported=False, where=f"ONNX Runtime ({self.provider})",
            why_not="the export is float16" if fp16 else
            "ONNX Runtime has no bf16 mode for float32 graphs; backend openvino or torch has one")
        self.precision = PrecisionChoice(precision, "fp16", "the ONNX export is float16") if fp16 else choice

    def model_info(self) -> dict[str, Any]:
        """As :meth:`OnnxGraphRuntime.model_info`; ``device`` is the execution provider that runs the model,
        ``providers`` every provider its session holds."""
        info = super().model_info()
        info.update(provider=self.provider, providers=list(self.providers), threads=self.threads)
        return info

    # --- sessions --------------------------------------------------------------------------
    def session(self, modalities: tuple[str, ...]) -> Any:
        """The ``InferenceSession`` of a modality subset (created on first use)."""
        return self._graph(modalities)

    def _compile(self, path: Path, modalities: tuple[str, ...]) -> Any:
        ort = self._ort
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3  # errors only; ORT's own warnings are about graph optimisation
        t0 = time.perf_counter()
        try:
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=self._providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            if self._providers == [_CPU]:
                raise CheckpointError(
                    f"{self._label}: ONNX Runtime cannot load {path.name} ({type(exc).__name__}: {str(exc)[:300]}); "
                    f"the file is corrupt or not a terramind-nyc export: re-run `terramind-nyc export-onnx "
                    f"{self.files.source}`"
                ) from None
            _warn_once(("failed", tuple(self._providers)),
                       f"ONNX Runtime could not start {', '.join(self._providers)} ({type(exc).__name__}: "
                       f"{str(exc)[:200]}); running on {_CPU}")
            self._providers = [_CPU]
            return self._compile(path, modalities)
        running = list(sess.get_providers())
        if not self.providers:
            self.providers = running
            if running[0] != self._providers[0]:
                _warn_once(("fallback", self._providers[0], running[0]),
                           f"ONNX Runtime execution provider {self._providers[0]} is installed but did not start "
                           f"(missing GPU libraries or device?); running on {running[0]}")
        self.check_graph_io(path.name, modalities,
                            {i.name: (i.type == "tensor(float)", i.type, list(i.shape)) for i in sess.get_inputs()},
                            {o.name: list(o.shape) for o in sess.get_outputs()})
        log.info("ONNX Runtime session for %s (%s) on %s in %.2f s", "+".join(modalities), path.name, running[0],
                 time.perf_counter() - t0)
        return sess

    # --- inference ---------------------------------------------------------------------------
    def _forward(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        key = tuple(m for m in self.config.modality_names if m in batch)
        out = self._graph(key).run(self._heads, {m: np.ascontiguousarray(batch[m], np.float32) for m in key})
        return dict(zip(self._heads, out))

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
