"""The backends that run the artifact's exported ONNX graphs, and ONNX Runtime itself.

- :class:`OnnxGraphRuntime`: what ONNX Runtime and OpenVINO share: one compiled graph per
  modality subset of the export (:func:`~terramind_nyc.model.locate.locate_onnx`), compiled on
  first use and checked against ``config.json``.
- :class:`OnnxRuntime`: ONNX Runtime, with the execution providers of the ``onnx_providers``
  setting (MIGraphX, ROCm, CUDA, CPU) filtered to those the installed onnxruntime offers.

Neither torch nor terratorch is imported; onnxruntime only when a runtime is made.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from ..errors import BackendError, CheckpointError, ProviderFallbackWarning, SettingsError
from ..settings import Settings
from .locate import OnnxFiles, locate_onnx
from .precision import PrecisionChoice, resolve_precision
from .runtime import ModelInfo, Runtime
from .tiling import PartPlan

__all__ = [
    "ORT_HINT",
    "OnnxGraphRuntime",
    "OnnxRuntime",
    "gpu_providers_offered",
    "import_onnxruntime",
    "reset_warnings",
]

log = logging.getLogger(__name__)

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


def reset_warnings() -> None:
    """Forget which ProviderFallbackWarnings were given (the next one warns again)."""
    with _warn_lock:
        _warned.clear()


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

    One compiled graph per modality subset (:meth:`graph`), made on first use (the full set at
    load) by :meth:`_compile` and shared by every thread and every runtime of the process that
    uses the same loaded checkpoint (:func:`~terramind_nyc.model.backends.get_runtime`). A chip
    whose modalities have no graph in the export raises BackendError naming the subset and how
    to export it. Each compiled graph's
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
        return cls(locate_onnx(checkpoint, revision=revision), **kwargs)

    def _first_subset(self) -> tuple[str, ...]:
        names = self.files.config.modality_names
        return names if names in self.files.graphs else next(iter(self.files.graphs))

    def compiled_subsets(self) -> list[tuple[str, ...]]:
        """The modality subsets whose graphs are compiled so far."""
        return list(self._compiled)

    def graph(self, modalities: tuple[str, ...]) -> Any:
        """The compiled graph of a modality subset (model order), compiled on first use and
        shared by every thread (an ONNX Runtime ``InferenceSession``, an OpenVINO ``CompiledModel``).

        Raises BackendError naming the subset and how to export it when the export has no graph for it.
        """
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
            want: list[Any] = ["batch", len(spec.bands), *([c.input_timesteps] if c.input_timesteps > 1 else []), t, t]
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

    def model_info(self) -> ModelInfo:
        """As :meth:`Runtime.model_info`, plus ``onnx_subsets`` (the exported modality subsets) and ``threads``."""
        return dataclasses.replace(super().model_info(), onnx_subsets=tuple(self.files.graphs), threads=self.threads)

    def tiled_logits(self, inputs: Mapping[str, np.ndarray], *, part: PartPlan | None = None) -> dict[str, np.ndarray]:
        # fail before any tiling work when the export lacks this modality subset
        self.graph(tuple(m for m in self.config.modality_names if m in inputs))
        return super().tiled_logits(inputs, part=part)


class OnnxRuntime(OnnxGraphRuntime):
    """The ONNX Runtime backend: the artifact's exported graphs, no torch.

    One ``InferenceSession`` per modality subset (:class:`OnnxGraphRuntime`).

    Args:
        files: the located, verified export (:func:`~terramind_nyc.model.locate.locate_onnx`).
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
        self.graph(self._first_subset())
        self.provider = self.providers[0]
        self.device = self.provider
        fp16 = files.export.precision == "float16"
        choice = resolve_precision(  # ONNX Runtime runs what the export holds; bf16 warns (once)
            precision, bf16_supported=False, where=f"ONNX Runtime ({self.provider})",
            why_not="the export is float16" if fp16 else
            "ONNX Runtime has no bf16 mode for float32 graphs; backend openvino or torch has one")
        self.precision = PrecisionChoice(precision, "fp16", "the ONNX export is float16") if fp16 else choice

    def model_info(self) -> ModelInfo:
        """As :meth:`OnnxGraphRuntime.model_info`; ``device`` is the execution provider that runs the model,
        ``providers`` every provider its session holds."""
        return dataclasses.replace(super().model_info(), provider=self.provider, providers=tuple(self.providers))

    # --- sessions --------------------------------------------------------------------------
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
        out = self.graph(key).run(self._heads, {m: np.ascontiguousarray(batch[m], np.float32) for m in key})
        return dict(zip(self._heads, out))
