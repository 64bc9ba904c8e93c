"""The OpenVINO backend: the artifact's exported ONNX graphs compiled by OpenVINO, no torch.

    rt = backends.load_runtime("path/to/artifact", backend="openvino", precision="auto")
    rt.model_info().precision             # "bf16" on a CPU with AMX-BF16 / AVX512-BF16

OpenVINO reads the same ``model*.onnx`` graphs (and their shared ``model.onnx.data``) that
ONNX Runtime runs: there is no second export format. On a CPU with bf16 units its bf16 mode
(``INFERENCE_PRECISION_HINT=bf16``) is the fastest path of this library, about 4x faster than
torch fp32 on the base network; ``fp32`` sets the hint to ``f32`` explicitly, because OpenVINO
itself defaults to bf16 on such CPUs. Needs the ``openvino`` extra
(``pip install 'terramind-nyc[openvino]'``).

Compiled graphs are kept for the life of the process, one per (graph file, device, precision,
threads), and shared by every runtime and thread that asks for them; each thread runs them
through an infer request of its own (OpenVINO's compiled models are thread-safe, its infer
requests are not).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, CheckpointError
from .locate import OnnxFiles
from .precision import resolve_precision
from .runtime import ModelInfo
from .runtime_onnx import OnnxGraphRuntime

__all__ = ["OPENVINO_HINT", "OpenVinoRuntime", "import_openvino", "openvino_capabilities", "openvino_cpu_has_bf16",
           "openvino_device", "openvino_devices", "reset_core"]

log = logging.getLogger(__name__)

OPENVINO_HINT = "pip install 'terramind-nyc[openvino]'"
#: OpenVINO's inference precision hint for each precision that runs.
_HINTS = {"fp32": "f32", "bf16": "bf16"}

_core: Any = None
_core_lock = threading.Lock()
_compiled: dict[tuple[Any, ...], Any] = {}


def import_openvino() -> Any:
    """The ``openvino`` module; BackendError naming the extra when it is missing or broken."""
    try:
        import openvino
    except ImportError as exc:
        raise BackendError(f"the OpenVINO backend needs the openvino package ({exc}): {OPENVINO_HINT}") from None
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything
        raise BackendError(f"openvino is installed but does not import ({type(exc).__name__}: {exc}); reinstall it: "
                           f"{OPENVINO_HINT}") from None
    return openvino


def _get_core() -> Any:
    global _core
    with _core_lock:
        if _core is None:
            _core = import_openvino().Core()
        return _core


def reset_core() -> None:
    """Drop the process's OpenVINO ``Core`` (the next use makes a new one; compiled graphs stay cached)."""
    global _core
    with _core_lock:
        _core = None


def openvino_capabilities(device: str) -> list[str]:
    """OpenVINO's optimisation capabilities of ``device`` (``BF16``, ``FP32``, ``INT8``, ...)."""
    return [str(c) for c in _get_core().get_property(device, "OPTIMIZATION_CAPABILITIES")]


def openvino_devices() -> dict[str, list[str]]:
    """Each device OpenVINO offers here (``CPU``, ``GPU``, ...) with its optimisation capabilities."""
    return {d: openvino_capabilities(d) for d in _get_core().available_devices}


def openvino_cpu_has_bf16() -> bool:
    """Whether OpenVINO runs bf16 natively on this CPU (it lists ``BF16``: AMX-BF16 or
    AVX512-BF16 units); False when openvino is missing or does not start."""
    try:
        return "BF16" in openvino_capabilities("CPU")
    except Exception as exc:  # noqa: BLE001 - missing or broken openvino: no bf16 through it
        log.debug("OpenVINO capabilities unavailable: %s", exc)
        return False


def openvino_device(device: str, available: list[str]) -> str:
    """OpenVINO's device for the ``device`` setting: ``cpu`` -> CPU; ``auto`` -> GPU where
    OpenVINO offers one (an Intel GPU), else CPU; ``cuda`` is refused (OpenVINO has no CUDA)."""
    if device == "cpu":
        return "CPU"
    if device == "auto":
        return "GPU" if "GPU" in available else "CPU"
    if device == "cuda" or (isinstance(device, str) and device.startswith("cuda:")):
        raise BackendError("OpenVINO runs on the CPU or an Intel GPU, not on CUDA devices; for an NVIDIA or AMD GPU "
                           "use backend torch or onnx (with the gpu / rocm extra), or set TERRAMIND_NYC_DEVICE=auto")
    raise BackendError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'")


class OpenVinoRuntime(OnnxGraphRuntime):
    """The OpenVINO backend (module docstring).

    Args:
        files: the located, verified export (:func:`~terramind_nyc.model.locate.locate_onnx`).
        device: ``auto`` (OpenVINO's GPU where it offers one, else CPU), ``cpu``.
        threads: inference threads (None: OpenVINO's default, every core).
        precision: ``fp32``, ``bf16`` or ``auto``; bf16 is supported where the device lists
            ``BF16`` among its optimisation capabilities (CPUs with AMX-BF16 / AVX512-BF16).
    """

    backend = "openvino"

    def __init__(self, files: OnnxFiles, *, device: str = "auto", threads: int | None = None,
                 precision: str = "fp32", tile_overlap: int = 32, tile_batch: int = 8) -> None:
        super().__init__(files, threads=threads, tile_overlap=tile_overlap, tile_batch=tile_batch)
        self._ov = import_openvino()
        core = _get_core()
        self.ov_device = openvino_device(device, list(core.available_devices))
        caps = openvino_capabilities(self.ov_device)
        self.precision = resolve_precision(
            precision, bf16_supported="BF16" in caps, where=f"OpenVINO {self.ov_device}",
            why_not=f"its optimisation capabilities are {', '.join(caps)}")
        self.device = self.ov_device
        self._local = threading.local()
        self.graph(self._first_subset())

    def model_info(self) -> ModelInfo:
        """As :meth:`OnnxGraphRuntime.model_info`; ``device`` is OpenVINO's device (CPU, GPU)."""
        return dataclasses.replace(super().model_info(), openvino_version=str(self._ov.__version__))

    def _compile(self, path: Path, modalities: tuple[str, ...]) -> Any:
        graph = self.files.export.graph_for(modalities)
        key = (str(path.resolve()), graph.sha256 if graph else None, self.ov_device, self.precision.used, self.threads)
        with _core_lock:
            compiled = _compiled.get(key)
        if compiled is not None:
            return compiled
        core = _get_core()
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _HINTS[self.precision.used],
                                  "PERFORMANCE_HINT": "LATENCY"}
        if self.threads is not None and self.ov_device == "CPU":
            config["INFERENCE_NUM_THREADS"] = self.threads
        t0 = time.perf_counter()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own exception types
            raise CheckpointError(
                f"{self._label}: OpenVINO cannot read {path.name} ({type(exc).__name__}: {str(exc)[:300]}); the file "
                f"is corrupt or not a terramind-nyc export: re-run `terramind-nyc export-onnx {self.files.source}`"
            ) from None
        self.check_graph_io(
            path.name, modalities,
            {i.get_any_name(): (i.get_element_type() == self._ov.Type.f32, str(i.get_element_type().get_type_name()),
                                _dims(i.get_partial_shape())) for i in model.inputs},
            {o.get_any_name(): _dims(o.get_partial_shape()) for o in model.outputs})
        try:
            compiled = core.compile_model(model, self.ov_device, config)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"OpenVINO could not compile {path.name} for {self.ov_device} "
                               f"({type(exc).__name__}: {str(exc)[:300]})") from None
        log.info("OpenVINO compiled %s (%s) for %s, precision %s, in %.2f s", "+".join(modalities), path.name,
                 self.ov_device, self.precision.used, time.perf_counter() - t0)
        with _core_lock:
            compiled = _compiled.setdefault(key, compiled)
        return compiled

    def _request(self, modalities: tuple[str, ...]) -> Any:
        """This thread's infer request for a modality subset's compiled graph."""
        requests: dict[tuple[str, ...], Any] | None = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        req = requests.get(modalities)
        if req is None:
            req = requests[modalities] = self.graph(modalities).create_infer_request()
        return req

    def _forward(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        key = tuple(m for m in self.config.modality_names if m in batch)
        compiled = self.graph(key)
        req = self._request(key)
        req.infer({m: np.ascontiguousarray(batch[m], np.float32) for m in key})
        # copies: the request's output buffers are reused by its next call
        return {h: np.array(req.get_tensor(compiled.output(h)).data, np.float32) for h in self._heads}


def _dims(shape: Any) -> list[Any]:
    """An OpenVINO partial shape as a list: ints where fixed, None where dynamic."""
    return [None if d.is_dynamic else d.get_length() for d in shape]
