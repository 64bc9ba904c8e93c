"""Inference runtimes: raw modality arrays on a grid in, per-head class probabilities out.

    rt = get_runtime(settings)                     # terramind_nyc.model.backends: loaded once per process
    p = rt.predict({"S2L2A": s2_dn, "S1RTC": s1_db, "DEM": dem_m},
                   masks={"S2L2A": s2_valid, ...})
    p.probabilities["buildings"]                   # float32 (2, H, W) on the input grid
    rt.model_info().lulc_classes                   # what the checkpoint and the backend are (ModelInfo)

:meth:`Runtime.predict` validates the arrays and standardises each band with the checkpoint's
statistics (:mod:`terramind_nyc.model.inputs`; nodata -> 0, the mean, after standardising),
cuts the window into tiles of the config's tile size with overlap (:mod:`terramind_nyc.model.tiling`),
runs all tiles in batches of ``tile_batch``, blends the logits and returns softmax probabilities
as numpy. All of that is backend-independent; a backend only implements :meth:`Runtime._forward`
on a batch of standardised tiles:

- :class:`~terramind_nyc.model.runtime_torch.TorchRuntime`: the network of
  :mod:`terramind_nyc.model.network` (CPU, CUDA; ROCm builds of torch also report as ``cuda``).
- :class:`~terramind_nyc.model.runtime_onnx.OnnxRuntime`: the artifact's ONNX export in ONNX
  Runtime (MIGraphX, ROCm, CUDA, CPU execution providers); torch-free.
- :class:`~terramind_nyc.model.runtime_openvino.OpenVinoRuntime`: the same ONNX graphs compiled by
  OpenVINO for its CPU (or Intel GPU) device, torch-free as well.

Which backend a checkpoint gets, and loading it once per process, is :mod:`terramind_nyc.model.backends`.

Precision (:mod:`terramind_nyc.model.precision`): each runtime resolves the ``precision`` setting for
its backend and device once, at load (:attr:`Runtime.precision`), and every forward pass runs
in that precision only for its own duration; the caller's torch settings are never changed.

Runtimes are safe to call from several threads: the torch network is only read (eval mode,
under ``torch.inference_mode``), an ONNX Runtime session's ``run`` is thread-safe, and every
call keeps its own buffers.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..errors import SettingsError
from ..jsonsafe import json_safe
from .config import ModelConfig
from .inputs import standardise, validate_inputs
from .precision import PrecisionChoice
from .tiling import PartPlan, TileBlender, TilePlan, cut_tiles, pad_to_canvas, plan_tiles, softmax, tile_geometry

__all__ = ["ModelInfo", "Prediction", "Runtime"]


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


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded runtime is: the checkpoint, the backend that runs it, and how to read its outputs.

    Backends extend it with :func:`dataclasses.replace` (the optional fields at the end).
    """

    checkpoint: Mapping[str, Any]
    """Identity of the checkpoint: ``id`` (directory or repo id), ``revision``, ``name``, ``version``,
    ``encoder``, ``schema_version``, ``sha256`` (of ``model.safetensors``), ``license``; ONNX
    backends add ``onnx`` (opset, exporter, graph and data sha256)."""
    backend: str
    """The backend that runs the model: ``torch``, ``onnx`` or ``openvino``."""
    device: str
    """Where it runs: the torch device (``cpu``, ``cuda:0``), the ONNX Runtime execution provider,
    or the OpenVINO device (``CPU``, ``GPU``)."""
    precision: str
    """The precision that runs: ``fp32``, ``bf16`` or ``fp16`` (a float16 ONNX export)."""
    precision_requested: str
    """The ``precision`` setting asked for: ``fp32``, ``bf16`` or ``auto``."""
    precision_reason: str
    """One sentence on why :attr:`precision` runs (hardware, backend)."""
    modalities: tuple[str, ...]
    """The checkpoint's modalities, in model order."""
    heads: Mapping[str, Mapping[str, Any]]
    """Head -> ``classes`` (names in output order), ``labels`` (display label per class), ``colors``
    (``#rrggbb`` per class), ``threshold`` (two-class heads: probability of class 1 from which a pixel
    is class 1, else None) and ``encoder`` (the encoder variant it decodes)."""
    lulc_classes: tuple[str, ...]
    """Land-cover class names in output order (empty without a ``lulc`` head)."""
    lulc_colors: tuple[str, ...]
    """Display colour (``#rrggbb``) per land-cover class."""
    building_threshold: float | None
    """Probability (0..1) of ``building`` from which a pixel counts as building (None without a
    ``buildings`` head, or when it has no threshold)."""
    s2_bands: tuple[str, ...]
    """Sentinel-2 band names in the order the model takes them (empty without S2L2A)."""
    tile_size: int
    """Side in pixels of the square tiles the model sees."""
    timesteps: int
    """T: time steps per input (1 = single date, also for weights trained on T repeated copies of one)."""
    threads: int | None = None
    """Intra-op threads per compiled graph (ONNX Runtime, OpenVINO; None: the library default or torch)."""
    provider: str | None = None
    """ONNX Runtime: the execution provider that runs the model (also :attr:`device`)."""
    providers: tuple[str, ...] = ()
    """ONNX Runtime: every execution provider its session holds, in priority order."""
    onnx_subsets: tuple[tuple[str, ...], ...] = ()
    """ONNX backends: the modality subsets the export has a graph for (model order)."""
    openvino_version: str | None = None
    """OpenVINO: the version of the openvino package."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists) with one key per field."""
        out: dict[str, Any] = json_safe({f.name: getattr(self, f.name) for f in fields(self)})
        return out


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
    def model_info(self) -> ModelInfo:
        """Checkpoint identity, modalities, heads (classes, colours, threshold), backend, device, precision."""
        c = self.config
        heads = {h.name: {"classes": h.classes, "labels": h.display_labels, "colors": h.colors, "threshold": h.threshold,
                          "encoder": h.encoder} for h in c.heads}
        lulc = next((h for h in c.heads if h.name == "lulc"), None)
        bld = next((h for h in c.heads if h.name == "buildings"), None)
        s2 = next((m.bands for m in c.modalities if m.name == "S2L2A"), ())
        return ModelInfo(
            checkpoint=dict(self.checkpoint),
            backend=self.backend,
            device=self.device,
            precision=self.precision.used,
            precision_requested=self.precision.requested,
            precision_reason=self.precision.reason,
            modalities=c.modality_names,
            heads=heads,
            lulc_classes=lulc.classes if lulc else (),
            lulc_colors=lulc.colors if lulc else (),
            building_threshold=bld.threshold if bld else None,
            s2_bands=s2,
            tile_size=c.tile_size,
            timesteps=c.input_timesteps,
        )

    def plan(self, height: int, width: int) -> TilePlan:
        """The tile plan for a window of ``height`` x ``width`` px."""
        return plan_tiles(height, width, **tile_geometry(self.config.tile_size, self.tile_overlap))

    def predict(self, arrays: Mapping[str, Any], masks: Mapping[str, Any] | None = None, *,
                part: PartPlan | None = None) -> Prediction:
        """Probabilities per head for raw modality arrays on one grid.

        Args:
            arrays: modality -> ``(bands, H, W)`` raw values (S2L2A harmonised DN, S1RTC dB,
                DEM metres), bands in the config's order; any non-empty subset of the
                checkpoint's modalities; any window of at least 1x1 px.
            masks: modality -> bool ``(H, W)``, True where the pixel holds data (optional;
                non-finite values are nodata either way).
            part: one part of a larger window (:func:`~terramind_nyc.model.tiling.part_plan`):
                ``arrays`` then hold the part's ``read`` block and the probabilities cover the
                part only, equal to those of the tiled pass over the whole window.

        Raises InvalidInputError for wrong modalities, band counts, dtypes or shapes.
        """
        t0 = time.perf_counter()
        arrays_, valid, _ = validate_inputs(self.config, arrays, masks)
        x = standardise(self.config, arrays_, valid)
        probs = self.predict_standardised(x, part=part)
        n = part.plan.n_tiles if part is not None else self.plan(*next(iter(x.values())).shape[-2:]).n_tiles
        return Prediction(probs, tuple(x), n, time.perf_counter() - t0)

    def predict_standardised(self, inputs: Mapping[str, np.ndarray], *,
                             part: PartPlan | None = None) -> dict[str, np.ndarray]:
        """Softmax probabilities per head for already standardised float32 inputs (one window, or one part)."""
        return {h: softmax(v, axis=0) for h, v in self.tiled_logits(inputs, part=part).items()}

    def tiled_logits(self, inputs: Mapping[str, np.ndarray], *,
                     part: PartPlan | None = None) -> dict[str, np.ndarray]:
        """Blended logits per head ``(classes, H, W)`` for standardised float32 inputs: the whole
        window, or with ``part`` the part of a larger window whose ``read`` block ``inputs`` hold."""
        if part is None:
            first = next(iter(inputs.values()))
            plan = self.plan(int(first.shape[-2]), int(first.shape[-1]))
            canvases = {m: pad_to_canvas(np.asarray(a, np.float32), plan) for m, a in inputs.items()}
        else:
            plan = part.plan
            canvases = {m: part.canvas(np.asarray(a, np.float32)) for m, a in inputs.items()}
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
        other = copy.copy(self)
        Runtime.__init__(other, self.config, self.checkpoint, tile_overlap=tile_overlap, tile_batch=tile_batch)
        other.device = self.device
        return other
