"""Publication checks of a checkpoint artifact: finite weights, a bit-exact round trip, backend parity.

    check_finite("runs/final").ok                          # no NaN / inf in any weight
    check_round_trip("runs/final", tmp).identical          # re-saved and loaded weights equal the file's
    passes(backend_agreement("runs/final", samples, workdir=tmp))   # ONNX / OpenVINO argmax == torch's

The verification battery of the reference TerraMind-Flood reproduction. :func:`backend_agreement`
runs the same windows (as :meth:`~terramind_nyc.model.runtime.Runtime.predict` takes them) through
each backend against torch in IEEE float32 on the CPU; ONNX graphs missing for the samples' modality
subsets are exported once to ``workdir / "onnx"`` (the artifact is never changed). A backend whose
package is missing, or that fails to load or run, is a skipped row with the reason.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from terramind_nyc.jsonsafe import json_safe

__all__ = ["BackendReport", "BackendRow", "FiniteCheck", "RoundTrip", "Sample", "backend_agreement",
           "check_finite", "check_round_trip", "passes"]

log = logging.getLogger(__name__)

#: One window: raw modality arrays ``(bands, H, W)`` and optional per-modality bool ``(H, W)`` masks.
Sample = tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray] | None]
_PACKAGES = {"onnx": "onnxruntime", "openvino": "openvino"}


class _Record:
    _derived: ClassVar[tuple[str, ...]] = ()  # properties to_dict adds to the fields

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: one key per field and derived property (NaN and inf become None)."""
        names = [f.name for f in fields(self)] + list(self._derived)  # type: ignore[arg-type]
        return dict(json_safe({k: getattr(self, k) for k in names}))


@dataclass(frozen=True)
class FiniteCheck(_Record):
    """NaN / inf count of every floating tensor in ``model.safetensors``."""

    tensors: int
    """Tensors in the file."""
    parameters: int
    """Scalars (elements) over all tensors."""
    bad: tuple[tuple[str, int, int], ...]
    """``(name, NaN count, inf count)`` of each floating tensor holding either, in name order."""

    @property
    def ok(self) -> bool:
        """Whether every tensor is finite."""
        return not self.bad

    _derived = ("ok",)


@dataclass(frozen=True)
class RoundTrip(_Record):
    """``model.safetensors`` saved again and loaded back, and loaded into the network."""

    tensors: int
    """Tensors in the file."""
    mismatched: tuple[str, ...]
    """Tensors whose re-saved copy differs from the file's (value bits, dtype or shape)."""
    metadata_equal: bool
    """Whether the re-saved header metadata (``__metadata__``) equals the file's."""
    network_mismatched: tuple[str, ...]
    """Tensors the network from :func:`~terramind_nyc.model.artifact.load_artifact` holds with other
    values, dtype or shape than the file."""
    missing: tuple[str, ...]
    """Network state-dict keys the file lacks."""
    unexpected: tuple[str, ...]
    """File tensors the network has no state-dict key for."""
    file_sha256_equal: bool
    """Whether the re-saved file is byte-identical to the original (informational: safetensors writes
    ``__metadata__`` keys in hash order, so the bytes can differ when no tensor or key does)."""

    @property
    def identical(self) -> bool:
        """Whether every tensor and the metadata survive both trips unchanged, no key missing or extra."""
        return not (self.mismatched or self.network_mismatched or self.missing or self.unexpected) \
            and self.metadata_equal

    _derived = ("identical",)


@dataclass(frozen=True)
class BackendRow(_Record):
    """One backend on the samples, against the torch fp32 reference."""

    backend: str
    """``torch`` (the reference), ``onnx`` or ``openvino``."""
    precision: str | None
    """The precision that ran (``fp32``); None when skipped."""
    agreement: Mapping[str, float]
    """Head -> share (0..1) of valid pixels whose argmax class equals torch's (torch: 1.0)."""
    max_abs_diff: Mapping[str, float]
    """Head -> largest absolute probability difference from torch over valid pixels (0..1)."""
    seconds_per_chip: float
    """Mean wall time of one ``predict`` call per sample after a warm-up call, seconds (NaN if skipped)."""
    megapixels_per_s: float
    """Window pixels predicted per second, millions (NaN if skipped)."""
    skipped: str | None = None
    """Why the backend did not run (package missing, load or run failure); None when it ran."""


@dataclass(frozen=True)
class BackendReport(_Record):
    """Every backend on the same samples; torch fp32 is the reference."""

    backends: Mapping[str, BackendRow]
    """Backend name -> its row, the torch reference first."""
    samples: int
    """Windows compared."""
    cpu: str
    """CPU model name (:func:`~terramind_nyc.model.precision.cpu_model`)."""
    cpu_flags: tuple[str, ...]
    """bf16 flags this CPU shows (:func:`~terramind_nyc.model.precision.cpu_bf16_flags`)."""

    @property
    def min_agreement(self) -> float:
        """Smallest argmax agreement (0..1) over the non-reference backends that ran and their heads; NaN if none ran."""
        shares = [s for r in self.backends.values() if r.backend != "torch" and r.skipped is None
                  for s in r.agreement.values()]
        return min(shares) if shares else math.nan

    _derived = ("min_agreement",)


def passes(report: BackendReport, target: float = 0.999) -> bool:
    """Whether some non-reference backend ran and every one that ran agrees with torch on at least
    ``target`` (0..1) of the valid pixels for every head."""
    return not math.isnan(report.min_agreement) and report.min_agreement >= target


def _read_all(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Every tensor (torch, name order) and the header metadata of a safetensors file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        names = sorted(f.keys())
        return {k: f.get_tensor(k) for k in names}, dict(f.metadata() or {})


def check_finite(artifact: str | os.PathLike[str]) -> FiniteCheck:
    """Count NaN and inf in every floating tensor of ``artifact``'s ``model.safetensors`` (one tensor at a time)."""
    import torch
    from safetensors import safe_open

    from terramind_nyc.model.locate import locate_artifact

    params, bad = 0, []
    with safe_open(str(locate_artifact(artifact).weights), framework="pt") as f:
        names = sorted(f.keys())
        for name in names:
            t = f.get_tensor(name)
            params += t.numel()
            if t.is_floating_point() and not bool(t.isfinite().all()):
                bad.append((name, int(torch.isnan(t).sum()), int(torch.isinf(t).sum())))
    return FiniteCheck(tensors=len(names), parameters=params, bad=tuple(bad))


def _same(a: Any, b: Any) -> bool:
    """Equal dtype, shape and value bits (a NaN equals the same NaN: a bit-exact copy is what counts)."""
    import torch

    return a.dtype == b.dtype and a.shape == b.shape and bool(
        torch.equal(*(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8) for t in (a, b))))


def check_round_trip(artifact: str | os.PathLike[str], workdir: str | os.PathLike[str]) -> RoundTrip:
    """Save every tensor and the metadata of ``model.safetensors`` again under ``workdir``, load
    them back and compare bit for bit; then load the artifact and compare the network's state dict
    with the file. Raises CheckpointError when the artifact does not load."""
    from safetensors.torch import save_file

    from terramind_nyc.model.artifact import load_artifact
    from terramind_nyc.model.network import v1_weight_name
    from terramind_nyc.model.safetensors_io import weights_sha256

    art = load_artifact(artifact, device="cpu")
    tensors, meta = _read_all(art.files.weights)
    out = Path(workdir) / "model.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)
    again, meta2 = _read_all(out)
    state = art.network.state_dict()
    if art.config.schema_version == 1:  # the names a version-1 file gives the neck
        state = {v1_weight_name(k): t for k, t in state.items()}
    return RoundTrip(
        tensors=len(tensors), metadata_equal=meta == meta2,
        mismatched=tuple(sorted(k for k in tensors.keys() | again.keys()
                                if k not in tensors or k not in again or not _same(tensors[k], again[k]))),
        network_mismatched=tuple(k for k in tensors if k in state and not _same(state[k], tensors[k])),
        missing=tuple(sorted(state.keys() - tensors.keys())), unexpected=tuple(sorted(tensors.keys() - state.keys())),
        file_sha256_equal=weights_sha256(art.files.weights) == weights_sha256(out),
    )


def _timed(rt: Any, samples: Sequence[Sample], repeats: int) -> tuple[list[dict[str, np.ndarray]], float, float]:
    """Probabilities per sample (first pass), then seconds per call and megapixels per second after a warm-up."""
    rt.predict(*samples[0])
    probs: list[dict[str, np.ndarray]] = []
    seconds, pixels = 0.0, 0
    for r in range(repeats):
        for arrays, masks in samples:
            t0 = time.perf_counter()
            p = rt.predict(arrays, masks).probabilities
            seconds += time.perf_counter() - t0
            pixels += int(np.prod(next(iter(p.values())).shape[-2:]))
            if r == 0:
                probs.append(dict(p))
    return probs, seconds / (repeats * len(samples)), pixels / max(seconds, 1e-12) / 1e6


class _Skip(Exception):
    """A backend that cannot run here; the message says why."""


def _graph_source(artifact: str | os.PathLike[str], samples: Sequence[Sample], workdir: Path) -> str | _Skip:
    """The artifact itself when its ONNX export has a graph for each modality subset of the samples,
    else an export of just those subsets to ``workdir / "onnx"``; or why the export failed."""
    from terramind_nyc.model.export_onnx import export_onnx
    from terramind_nyc.model.locate import has_onnx_export, read_config

    config = read_config(artifact)
    needed = {tuple(m for m in config.modality_names if m in arrays) for arrays, _ in samples}
    if config.onnx is not None and needed <= {g.modalities for g in config.onnx.graphs} and has_onnx_export(artifact):
        return os.fspath(artifact)
    log.info("exporting %s to ONNX in %s for the backend checks", artifact, workdir / "onnx")
    try:
        export_onnx(artifact, out=workdir / "onnx", subsets=sorted(needed))
    except Exception as exc:  # noqa: BLE001 - any export failure skips the graph backends
        return _Skip(f"the ONNX export failed: {type(exc).__name__}: {exc}")
    return str(workdir / "onnx")


def backend_agreement(artifact: str | os.PathLike[str], samples: Sequence[Sample], *,
                      workdir: str | os.PathLike[str], backends: Sequence[str] = ("torch", "onnx", "openvino"),
                      threads: int | None = None, repeats: int = 1) -> BackendReport:
    """Argmax agreement, probability difference and throughput of each backend against torch fp32 on the
    CPU (module docstring); torch always runs, as the reference, and its errors raise (InvalidInputError
    for bad samples). ``threads``: intra-op threads (torch: process-wide); ``repeats``: timed passes."""
    from terramind_nyc.errors import InvalidInputError
    from terramind_nyc.model import backends as backends_mod
    from terramind_nyc.model.inputs import validate_inputs
    from terramind_nyc.model.precision import cpu_bf16_flags, cpu_model

    if not samples:
        raise InvalidInputError("give at least one (arrays, masks) sample to compare the backends on")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise InvalidInputError(f"repeats must be a positive integer, got {repeats!r}")
    common: dict[str, Any] = {"device": "cpu", "precision": "fp32", "threads": threads}
    ref_rt = backends_mod.load_runtime(os.fspath(artifact), backend="torch", **common)
    valid = []  # per sample: pixels where any modality holds data (its mask and finite values)
    for arrays, masks in samples:
        _, per_modality, (h, w) = validate_inputs(ref_rt.config, arrays, masks)
        valid.append(np.logical_or.reduce([v.reshape(-1, h, w).any(0) for v in per_modality.values()]))
    ref, sec, mpx = _timed(ref_rt, samples, repeats)
    heads, total = list(ref[0]), sum(int(v.sum()) for v in valid)
    rows = {"torch": BackendRow("torch", ref_rt.precision.used, dict.fromkeys(heads, 1.0),
                                dict.fromkeys(heads, 0.0), sec, mpx)}
    del ref_rt
    source: str | _Skip | None = None  # the artifact with the graphs (exported once), or why there is none
    for name in (b for b in dict.fromkeys(backends) if b != "torch"):
        try:
            path = os.fspath(artifact)
            if name in _PACKAGES:
                if importlib.util.find_spec(_PACKAGES[name]) is None:
                    raise _Skip(f"{_PACKAGES[name]} is not installed: pip install 'terramind-nyc[{name}]'")
                source = source or _graph_source(artifact, samples, Path(workdir))
                if isinstance(source, _Skip):
                    raise source
                path = source
            rt = backends_mod.load_runtime(path, backend=name, **common)
            got, sec, mpx = _timed(rt, samples, repeats)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run is reported, not raised
            reason = str(exc) if isinstance(exc, _Skip) else f"{type(exc).__name__}: {exc}"
            log.warning("backend %s skipped: %s", name, reason)
            rows[name] = BackendRow(name, None, {}, {}, math.nan, math.nan, skipped=reason)
            continue
        agree = {h: sum(int((g[h].argmax(0) == r[h].argmax(0))[v].sum()) for g, r, v in zip(got, ref, valid))
                 / total if total else math.nan for h in heads}
        diff = {h: max((float(np.abs(g[h] - r[h])[:, v].max()) for g, r, v in zip(got, ref, valid) if v.any()),
                       default=math.nan) for h in heads}
        rows[name] = BackendRow(name, rt.precision.used, agree, diff, sec, mpx)
        del rt
    return BackendReport(rows, len(samples), cpu_model(), cpu_bf16_flags())
