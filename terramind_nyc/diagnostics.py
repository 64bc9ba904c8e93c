"""Environment and checkpoint diagnostics behind ``terramind-nyc info`` (no heavy imports)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from ._version import __version__
from .model.adapters import is_adapters_source
from .model.default_checkpoint import default_status
from .model.locate import is_local_checkpoint
from .model.precision import choose_precision, cpu_bf16_flags, cpu_model
from .settings import DEFAULT_CHECKPOINT, Settings

__all__ = ["backend_availability", "checkpoint_status", "environment_info", "precision_status"]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def backend_availability() -> dict[str, dict[str, Any]]:
    """Which inference backends are installed, without importing torch or terratorch."""
    torch_v, tt_v = _version("torch"), _version("terratorch")
    torch_ok = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("terratorch") is not None
    out: dict[str, dict[str, Any]] = {
        "torch": {
            "available": torch_ok,
            "detail": f"torch {torch_v}, terratorch {tt_v}" if torch_ok else "pip install 'terramind-nyc[torch]'",
        }
    }
    ort_ok = importlib.util.find_spec("onnxruntime") is not None
    detail = "pip install 'terramind-nyc[onnx]'"
    if ort_ok:
        import onnxruntime as ort  # light compared with torch; safe here

        detail = f"onnxruntime {ort.__version__}; providers {', '.join(ort.get_available_providers())}"
    out["onnx"] = {"available": ort_ok, "detail": detail}
    ov_ok = importlib.util.find_spec("openvino") is not None
    detail = "pip install 'terramind-nyc[openvino]'"
    if ov_ok:
        try:
            from .model.runtime_openvino import openvino_devices  # torch-free and light; safe here

            caps = openvino_devices()
            detail = f"openvino {_version('openvino')}; devices " + ", ".join(
                f"{d} ({'bf16' if 'BF16' in c else 'no bf16'})" for d, c in caps.items())
        except Exception as exc:  # noqa: BLE001 - a broken install is reported, not raised
            ov_ok, detail = False, f"openvino does not start ({type(exc).__name__}: {exc})"
    out["openvino"] = {"available": ov_ok, "detail": detail}
    return out


def precision_status(settings: Settings, backends: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``precision`` setting, this CPU's bf16 flags, and what each installed backend would run
    on the CPU (without loading a model)."""
    flags = cpu_bf16_flags()
    backends = backend_availability() if backends is None else backends
    runs: dict[str, str] = {}
    if backends["torch"]["available"]:
        runs["torch (cpu)"] = choose_precision(settings.precision, bf16_supported=bool(flags))
    if backends["onnx"]["available"]:
        runs["onnx"] = "fp32"  # ONNX Runtime has no bf16 mode for float32 graphs
    if backends["openvino"]["available"]:
        from .model.runtime_openvino import openvino_cpu_has_bf16

        runs["openvino (CPU)"] = choose_precision(settings.precision, bf16_supported=openvino_cpu_has_bf16())
    return {"setting": settings.precision, "cpu": cpu_model(), "cpu_bf16_flags": list(flags), "runs": runs}


def checkpoint_status(settings: Settings, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """Where the configured checkpoint is and whether it can be reached right now.

    A local directory must hold ``config.json`` and ``model.safetensors``; a Hugging Face repo id
    is looked up in the local hub cache first, then on the hub with a short timeout.
    """
    ck = settings.checkpoint
    status: dict[str, Any] = {"id": ck, "revision": settings.checkpoint_revision}
    path = Path(ck).expanduser()
    if is_local_checkpoint(ck):
        files = [f for f in ("config.json", "model.safetensors") if not (path / f).is_file()]
        status["kind"] = "local"
        status["reachable"] = path.is_dir() and not files
        status["detail"] = "local artifact" if status["reachable"] else (
            f"missing {', '.join(files)} in {path}" if path.is_dir() else f"no directory {path}"
        )
        return status
    if is_adapters_source(ck):
        default = default_status(settings.checkpoint_revision)
        status.update(kind="adapters", default=ck == DEFAULT_CHECKPOINT, converted=default["path"],
                      reachable=default["cached"],
                      detail="converted into the local cache" if default["cached"] else
                      "not converted yet: the first fetch downloads and converts it (about 1 GB), or run "
                      "`terramind-nyc import-adapters --out DIR` and point TERRAMIND_NYC_CHECKPOINT at DIR")
        return status
    status["kind"] = "huggingface"
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ck, "config.json", revision=settings.checkpoint_revision)
        if isinstance(cached, str):
            status.update(reachable=True, detail="in the local Hugging Face cache")
            return status
    except Exception:  # noqa: BLE001 - cache lookup is best effort
        pass
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(ck, revision=settings.checkpoint_revision, timeout=timeout_s)
        status.update(reachable=True, detail="on the Hugging Face hub")
    except Exception as exc:  # noqa: BLE001 - report any failure as unreachable
        status.update(
            reachable=False,
            detail=f"{type(exc).__name__}: hub not reachable or repo missing; point "
            "TERRAMIND_NYC_CHECKPOINT at a local artifact directory (see docs/checkpoint.md)",
        )
    return status


def environment_info(settings: Settings) -> dict[str, Any]:
    """Everything ``terramind-nyc info`` prints, as a JSON-safe dict."""
    catalog = settings.catalog_path if settings.catalog_provider == "local" else settings.catalog_url
    from .model.backends import AUTO_ORDER_DOC

    backends = backend_availability()
    return {
        "version": __version__,
        "backends": backends,
        "precision": precision_status(settings, backends),
        "checkpoint": checkpoint_status(settings),
        "catalog": f"{settings.catalog_provider}: {catalog}",
        "backend_setting": settings.backend,
        "device_setting": settings.device,
        "auto_backend_order": AUTO_ORDER_DOC,
    }
