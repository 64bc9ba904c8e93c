"""Which backend serves a checkpoint, and loading it once per process.

    rt = get_runtime(settings)                     # cached per settings; shared by every thread
    rt = load_runtime("path/or/repo", backend="auto", precision="auto")   # no caching

``backend="auto"`` (:data:`AUTO_ORDER_DOC`): for an artifact with an ONNX export, OpenVINO on a
CPU with bf16 units when ``precision`` allows bf16 (the fastest CPU path), else ONNX Runtime,
else torch; without an export, torch. The runtimes themselves are in :mod:`terramind_nyc.model.runtime_torch`,
:mod:`terramind_nyc.model.runtime_onnx` and :mod:`terramind_nyc.model.runtime_openvino`.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any

from ..deadline import Deadline
from ..errors import BackendError, DeadlineExceededError, SettingsError
from ..settings import Settings
from . import runtime_openvino
from .locate import has_onnx_export, locate_onnx
from .runtime import Runtime
from .runtime_onnx import ORT_HINT, OnnxRuntime, gpu_providers_offered, import_onnxruntime
from .runtime_torch import TorchRuntime, resolve_device

__all__ = ["AUTO_ORDER_DOC", "clear_runtimes", "get_runtime", "load_runtime", "openvino_installed",
           "runtime_cache_info", "torch_available"]

log = logging.getLogger(__name__)


def torch_available() -> bool:
    """Whether torch and terratorch are installed (without importing them)."""
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("terratorch") is not None


def openvino_installed() -> bool:
    """Whether openvino is installed (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


#: The backends ``backend=auto`` tries for an artifact with an ONNX export, in order, and why.
AUTO_ORDER_DOC = (
    "1. openvino, when it is installed, runs bf16 natively on this CPU (it lists BF16: AMX-BF16 / AVX512-BF16 "
    "units), precision is auto or bf16, device is auto or cpu and onnxruntime offers no GPU provider (its bf16 "
    "mode is the fastest CPU path); "
    "2. onnx, when onnxruntime is installed (torch-free, faster than torch fp32, several times quicker to start); "
    "3. torch; 4. openvino in fp32 when neither onnxruntime nor torch is installed. Artifacts without an ONNX "
    "export always run on torch"
)


def load_runtime(
    checkpoint: str,
    *,
    revision: str | None = None,
    backend: str = "auto",
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    tile_overlap: int = 32,
    tile_batch: int = 8,
) -> Runtime:
    """Load ``checkpoint`` behind a backend (no caching: see :func:`get_runtime`).

    ``backend``: ``onnx`` (ONNX Runtime on the artifact's ONNX export; never imports torch),
    ``openvino`` (OpenVINO on the same export; never imports torch), ``torch``, or ``auto``
    (:data:`AUTO_ORDER_DOC`). ``precision``: ``fp32``, ``bf16`` or ``auto``
    (:mod:`terramind_nyc.model.precision`). ``providers``: ONNX Runtime execution providers in
    priority order (default: the ``onnx_providers`` setting's default). ``threads``: intra-op
    threads (torch: for the whole process; ONNX Runtime / OpenVINO: per compiled graph).

    Raises BackendError when the backend's packages are missing (naming the extra to install),
    CheckpointNotFoundError when the artifact has no ONNX export for backend ``onnx`` or
    ``openvino`` (naming ``export-onnx``), and CheckpointError for a bad artifact.
    """
    if backend not in ("auto", "torch", "onnx", "openvino"):
        raise BackendError(f"unknown backend {backend!r}; use 'auto', 'torch', 'onnx' or 'openvino'")
    if precision not in ("auto", "fp32", "bf16"):
        raise SettingsError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise SettingsError(f"threads must be a positive integer or None, got {threads!r}")
    common: dict[str, Any] = {"device": device, "threads": threads, "precision": precision,
                              "tile_overlap": tile_overlap, "tile_batch": tile_batch}
    if backend in ("onnx", "openvino"):
        return _load_onnx_graphs(backend, checkpoint, revision=revision, providers=providers, **common)
    if backend == "auto":
        if has_onnx_export(checkpoint, revision=revision):
            choice = _auto_graph_backend(precision, device)
            if choice is None and not torch_available() and openvino_installed():
                choice = "openvino"  # no onnxruntime, no torch: OpenVINO serves the export in any precision
            if choice is not None:
                return _load_onnx_graphs(choice, checkpoint, revision=revision, providers=providers, **common)
            if not torch_available():
                raise BackendError(
                    f"checkpoint {checkpoint!r} has an ONNX export but neither onnxruntime nor openvino is usable, "
                    f"and torch is not installed either: {ORT_HINT}; or pip install 'terramind-nyc[openvino]'"
                )
    if not torch_available():
        raise BackendError(
            "the torch backend needs torch and terratorch: pip install -c constraints.txt 'terramind-nyc[torch]'"
            + ("" if backend == "torch" else
               f"; or serve an ONNX export without torch (`terramind-nyc export-onnx {checkpoint}` where torch is "
               f"installed, then {ORT_HINT})")
        )
    return _load_torch(checkpoint, revision=revision, **common)


def _auto_graph_backend(precision: str, device: str) -> str | None:
    """The backend ``auto`` takes for an artifact with an ONNX export (:data:`AUTO_ORDER_DOC`), or None."""
    try:
        ort: Any = import_onnxruntime()
    except BackendError as exc:
        log.info("checkpoint has an ONNX export but %s", exc)
        ort = None
    ort_gpu = ort is not None and device != "cpu" and bool(gpu_providers_offered(ort))
    if openvino_installed() and precision != "fp32" and device in ("auto", "cpu") and not ort_gpu \
            and runtime_openvino.openvino_cpu_has_bf16():
        return "openvino"
    return None if ort is None else "onnx"


def _load_onnx_graphs(backend: str, checkpoint: str, *, revision: str | None, providers: Sequence[str] | None,
                      **kwargs: Any) -> Runtime:
    if backend == "openvino":
        runtime_openvino.import_openvino()  # the missing package is named before the artifact is looked at
        return runtime_openvino.OpenVinoRuntime(locate_onnx(checkpoint, revision=revision), **kwargs)
    import_onnxruntime()
    return OnnxRuntime(locate_onnx(checkpoint, revision=revision), providers=providers, **kwargs)


def _load_torch(checkpoint: str, *, revision: str | None, device: str, threads: int | None, precision: str,
                tile_overlap: int, tile_batch: int) -> TorchRuntime:
    from .artifact import load_artifact

    dev = resolve_device(device)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    artifact = load_artifact(checkpoint, revision=revision, device=dev)
    return TorchRuntime.from_artifact(artifact, precision=precision, tile_overlap=tile_overlap, tile_batch=tile_batch)


_lock = threading.Lock()
_models: dict[tuple[Any, ...], Runtime] = {}
_runtimes: dict[tuple[Any, ...], Runtime] = {}
_loading: dict[tuple[Any, ...], Future[Runtime]] = {}  # model key -> the load in flight


def get_runtime(settings: Settings | None = None, *, deadline: Deadline | None = None) -> Runtime:
    """The runtime for ``settings`` (default ``Settings.from_env()``), loaded once per process.

    Runtimes that differ only in tiling share one loaded model. Each checkpoint loads on its
    own thread, once however many callers ask for it at the same time (single flight), so a
    slow load (a stalled hub download, say) never blocks the callers of another checkpoint.
    ``deadline``: stop waiting for a load at this deadline with DeadlineExceededError; the
    load itself goes on in the background and its model is kept when it succeeds (a later
    call gets it at once). A failed load caches nothing; the next call tries again.
    """
    s = Settings.resolve(settings)
    key = s.key("runtime")
    rt = _runtimes.get(key)
    if rt is not None:
        return rt
    mkey = s.key("model")
    with _lock:
        model = _models.get(mkey)
        fut = None if model is not None else _loading.get(mkey)
        if model is None and fut is None:
            fut = _loading[mkey] = Future()
            threading.Thread(target=_load_into, args=(fut, mkey, s), daemon=True,
                             name="terramind-nyc-load").start()
    if model is None:
        assert fut is not None
        model = _wait_for_load(fut, s, deadline)
    with _lock:
        rt = _runtimes.get(key)
        if rt is None:
            rt = _runtimes[key] = model.with_tiling(tile_overlap=s.tile_overlap_px, tile_batch=s.tile_batch)
        return rt


def _load_into(fut: Future[Runtime], mkey: tuple[Any, ...], s: Settings) -> None:
    """Load the model of ``s`` and publish it (the body of a checkpoint's load thread)."""
    try:
        model = load_runtime(s.checkpoint, revision=s.checkpoint_revision, backend=s.backend, device=s.device,
                             precision=s.precision, threads=s.threads, providers=s.onnx_providers,
                             tile_overlap=s.tile_overlap_px, tile_batch=s.tile_batch)
    except BaseException as exc:
        with _lock:
            if _loading.get(mkey) is fut:
                del _loading[mkey]
        fut.set_exception(exc)
        return
    with _lock:
        if _loading.get(mkey) is fut:  # not forgotten by clear_runtimes meanwhile
            del _loading[mkey]
            _models[mkey] = model
    fut.set_result(model)


def _wait_for_load(fut: Future[Runtime], s: Settings, deadline: Deadline | None) -> Runtime:
    timeout = None if deadline is None else deadline.timeout()
    done, _ = wait_futures([fut], timeout=timeout)
    if not done:
        assert deadline is not None
        raise DeadlineExceededError(
            f"loading checkpoint {s.checkpoint!r} did not finish within the {deadline.seconds:g} s deadline (after "
            f"{deadline.elapsed():.1f} s; a stalled hub download or a cold start); the load goes on in the background "
            "and the next call uses it once loaded: raise `deadline_s` for the first call of a process, or load it "
            "ahead with terramind_nyc.model.backends.get_runtime()")
    return fut.result()


def clear_runtimes() -> None:
    """Forget every loaded runtime (the next :func:`get_runtime` loads again)."""
    with _lock:
        _models.clear()
        _runtimes.clear()
        _loading.clear()


def runtime_cache_info() -> dict[str, int]:
    """How many ``models`` (loaded checkpoints) and ``runtimes`` (models with their tiling) are
    cached, and how many checkpoint loads are in flight (``loading``)."""
    with _lock:
        return {"models": len(_models), "runtimes": len(_runtimes), "loading": len(_loading)}
