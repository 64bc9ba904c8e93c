"""Numeric precision: one policy for every backend, chosen by the hardware, scoped per pass.

    choice = resolve_precision("auto", bf16_supported=cpu_has_bf16(), where="torch on cpu")
    choice.used                       # "bf16" on a CPU with AMX-BF16 / AVX512-BF16, else "fp32"
    with torch_numerics(choice.used, "cpu"):
        logits = network(x)           # IEEE fp32 matmuls, or bf16 autocast; caller's setting back after

The ``precision`` setting takes three values:

- ``fp32``: IEEE float32 everywhere (torch's ``"highest"`` matmul precision; OpenVINO's
  ``INFERENCE_PRECISION_HINT=f32``, which it does not default to on bf16 CPUs).
- ``bf16``: the network runs in bfloat16 (torch autocast; OpenVINO's bf16 hint). Where the
  hardware or the backend has no bf16 mode, a :class:`~terramind_nyc.errors.PrecisionFallbackWarning`
  is emitted once and fp32 runs; the result's provenance says which ran.
- ``auto``: bf16 where it is fast (CUDA / ROCm devices that support it; CPUs whose flags show
  AMX-BF16 or AVX512-BF16), else fp32. Elsewhere bf16 is emulated and slower than fp32.

Why the scoping: ``import terratorch`` calls ``torch.set_float32_matmul_precision("medium")``
for the whole process (terratorch 1.2.11, in its Clay v1.5 backbone), which makes oneDNN run
every fp32 matmul in bf16 on CPUs with bf16 units. :func:`keep_matmul_precision` puts the
caller's setting back around that import, and :func:`torch_numerics` sets the precision for the
duration of one forward pass only. torch's matmul precision is process-wide, so the pass scope
is reference counted: concurrent passes share one ``"highest"`` period and the caller's value
comes back when the last one ends.

This module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PrecisionFallbackWarning, SettingsError

__all__ = [
    "CPU_BF16_FLAGS",
    "PRECISIONS",
    "PrecisionChoice",
    "choose_precision",
    "cpu_bf16_flags",
    "cpu_has_bf16",
    "cpu_model",
    "fp32_matmul_precision",
    "keep_matmul_precision",
    "reset_warnings",
    "resolve_precision",
    "torch_numerics",
]

log = logging.getLogger(__name__)

#: The values of the ``precision`` setting.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")
#: CPU flags (Linux ``/proc/cpuinfo``) of units that run bf16 matmuls natively and fast.
CPU_BF16_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    """Which precision a runtime runs, and why."""

    requested: str
    """The ``precision`` setting: ``fp32``, ``bf16`` or ``auto``."""
    used: str
    """What runs: ``fp32`` or ``bf16``."""
    reason: str
    """One sentence on why ``used`` was chosen (hardware, backend)."""


# ----------------------------------------------------------------------------------------
# Hardware
# ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _cpuinfo() -> Mapping[str, str]:
    """The first processor's fields of Linux ``/proc/cpuinfo`` (empty elsewhere)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # one processor is enough: the flags are the same on every core
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_bf16_flags(flags: Iterable[str] | None = None) -> tuple[str, ...]:
    """The bf16 flags (:data:`CPU_BF16_FLAGS`) this CPU shows, or that ``flags`` holds.

    ``flags`` defaults to this machine's ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on
    ARM); where there is none, no flag is known and ``auto`` means fp32 on the CPU.
    """
    if flags is None:
        info = _cpuinfo()
        flags = (info.get("flags", "") + " " + info.get("Features", "")).split()
    have = frozenset(flags)
    return tuple(f for f in CPU_BF16_FLAGS if f in have)


def cpu_has_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether the CPU has native bf16 matmul units (AMX-BF16 or AVX512-BF16)."""
    return bool(cpu_bf16_flags(flags))


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), or the platform's processor string."""
    import platform

    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


# ----------------------------------------------------------------------------------------
# Policy
# ----------------------------------------------------------------------------------------
_warned: set[tuple[str, str]] = set()
_warn_lock = threading.Lock()


def reset_warnings() -> None:
    """Forget which PrecisionFallbackWarnings were given (the next fallback warns again)."""
    with _warn_lock:
        _warned.clear()


def choose_precision(requested: str, *, bf16_supported: bool) -> str:
    """``fp32`` or ``bf16``: what ``requested`` runs where bf16 is (or is not) supported; no warning."""
    if requested not in PRECISIONS:
        raise SettingsError(f"precision must be one of {list(PRECISIONS)}, got {requested!r}")
    return "bf16" if requested != "fp32" and bf16_supported else "fp32"


def resolve_precision(requested: str, *, bf16_supported: bool, where: str, why_not: str = "") -> PrecisionChoice:
    """The precision that runs for the ``precision`` setting ``requested`` on one backend/device.

    Args:
        requested: ``fp32``, ``bf16`` or ``auto``.
        bf16_supported: whether this backend on this device runs bf16 fast and natively.
        where: the backend and device, for messages (``"torch on cpu"``).
        why_not: why bf16 is not supported there (appended to the messages).

    ``bf16`` where it is not supported warns once per (where, reason) with a
    :class:`~terramind_nyc.errors.PrecisionFallbackWarning` and runs fp32.
    """
    used = choose_precision(requested, bf16_supported=bf16_supported)
    no = why_not or "no bf16 units found"
    if requested == "fp32":
        return PrecisionChoice("fp32", "fp32", "fp32 requested")
    if used == "bf16":
        return PrecisionChoice(requested, "bf16", f"{where} runs bf16 natively"
                               + (" (auto)" if requested == "auto" else ""))
    if requested == "auto":
        return PrecisionChoice("auto", "fp32", f"auto: {where} has no fast bf16 ({no}); fp32")
    msg = (f"precision=bf16 asked for, but {where} has no bf16 support ({no}); running fp32 instead "
           "(set TERRAMIND_NYC_PRECISION=fp32 or auto to silence this)")
    with _warn_lock:
        first = (where, no) not in _warned
        _warned.add((where, no))
    if first:
        warnings.warn(msg, PrecisionFallbackWarning, stacklevel=3)
    else:
        log.debug("%s", msg)
    return PrecisionChoice("bf16", "fp32", f"bf16 requested; {where} has no bf16 support ({no}); fp32")


# ----------------------------------------------------------------------------------------
# torch scopes
# ----------------------------------------------------------------------------------------
def _matmul_backends(torch: Any) -> list[Any]:
    """torch's per-backend ``fp32_precision`` holders (torch >= 2.9), where present."""
    out = []
    for path in (("mkldnn", "matmul"), ("cuda", "matmul")):
        obj: Any = torch.backends
        for part in path:
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "fp32_precision"):
            out.append(obj)
    return out


class _MatmulState:
    """A snapshot of torch's fp32 matmul precision that can be put back exactly."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.legacy: str | None
        try:
            self.legacy = torch.get_float32_matmul_precision()
        except RuntimeError:  # the caller set per-backend values with torch's newer API
            self.legacy = None
        self.per_backend = [(b, b.fp32_precision) for b in _matmul_backends(torch)]

    def restore(self) -> None:
        if self.legacy is not None:
            self.torch.set_float32_matmul_precision(self.legacy)
        else:
            for b, value in self.per_backend:
                b.fp32_precision = value

    def set_ieee(self) -> None:
        if self.legacy is not None:
            self.torch.set_float32_matmul_precision("highest")
        else:
            for b, _ in self.per_backend:
                b.fp32_precision = "ieee"


def fp32_matmul_precision() -> str:
    """torch's fp32 matmul precision in words: ``highest`` (IEEE), ``high``, ``medium`` (bf16 on
    CPUs with bf16 units), or the per-backend values when the caller set those."""
    import torch

    state = _MatmulState(torch)
    if state.legacy is not None:
        return state.legacy
    return ", ".join(f"{type(b).__module__.split('.')[-1]}={v}" for b, v in state.per_backend)


@contextlib.contextmanager
def keep_matmul_precision() -> Iterator[None]:
    """Put torch's fp32 matmul precision back as it was when the block ends (around imports
    that change it, such as terratorch's)."""
    import torch

    state = _MatmulState(torch)
    try:
        yield
    finally:
        state.restore()


_scope_lock = threading.Lock()
_scope_depth = 0
_scope_state: _MatmulState | None = None


@contextlib.contextmanager
def _ieee_matmuls() -> Iterator[None]:
    """IEEE fp32 matmuls for the block; reference counted across threads (the setting is global)."""
    global _scope_depth, _scope_state
    import torch

    with _scope_lock:
        if _scope_depth == 0:
            _scope_state = _MatmulState(torch)
            _scope_state.set_ieee()
        _scope_depth += 1
    try:
        yield
    finally:
        with _scope_lock:
            _scope_depth -= 1
            if _scope_depth == 0 and _scope_state is not None:
                _scope_state.restore()
                _scope_state = None


@contextlib.contextmanager
def torch_numerics(precision: str, device_type: str = "cpu") -> Iterator[None]:
    """The numerics of one torch forward pass: ``fp32`` (IEEE matmuls) or ``bf16`` (autocast to
    bfloat16 on ``device_type``; ops autocast leaves in float32 use IEEE matmuls too).

    The caller's matmul precision is back when the block ends; autocast is thread-local.
    """
    if precision not in ("fp32", "bf16"):
        raise SettingsError(f"a pass runs fp32 or bf16, got {precision!r}")
    import torch

    with _ieee_matmuls():
        if precision == "bf16":
            with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
                yield
        else:
            yield
