"""Import shims for heavy optional dependencies: torchvision on a CPU torch, and terratorch.

Import terratorch only through :func:`terratorch_imports`::

    with terratorch_imports():
        from terratorch.registry import BACKBONE_REGISTRY

It makes torchvision importable (below) and puts the caller's fp32 matmul precision back after
the import: terratorch 1.2.11 sets ``torch.set_float32_matmul_precision("medium")`` for the
whole process when its backbone registry loads, which on CPUs with bf16 units turns every fp32
matmul into a bf16 one (see :mod:`terramind_nyc.model.precision`).

torchvision:

Why this exists: the package registry ships torchvision only as a CUDA build. Beside a CPU-only
torch wheel its C extension (``torchvision/_C.so``) cannot load because it links against
``libtorch_cuda``. torchvision then registers Python "fake" kernels for ``torchvision::nms`` at
import time, and that registration fails with ``RuntimeError: operator torchvision::nms does not
exist`` because the op schema was never defined. ``import terratorch`` imports torchvision and
so fails too, although nothing on the TerraMind path calls ``nms``.

:func:`ensure_torchvision_importable` defines the missing schemas (``nms`` and the quantised
``qnms`` variant that torchvision also decorates) *only* when that exact failure would occur: it
first tries to load the C extension the way torchvision does; if that works, or torchvision is
already imported, it does nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterator

from .precision import keep_matmul_precision

__all__ = ["ensure_torchvision_importable", "terratorch_imports"]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_done = False

#: Schemas torchvision's ``_meta_registrations`` / ``ops`` modules decorate at import time.
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _torchvision_extension_loads() -> bool:
    """Whether torchvision's compiled ops library can be loaded into this torch."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to patch, terratorch will report it itself
    folder = list(spec.submodule_search_locations)[0]
    libs = [f for f in os.listdir(folder) if f.startswith("_C") and f.endswith((".so", ".pyd"))]
    if not libs:
        return False
    try:
        torch.ops.load_library(os.path.join(folder, libs[0]))
    except (OSError, RuntimeError) as exc:
        log.debug("torchvision C extension does not load: %s", exc)
        return False
    return True


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` (and so ``import terratorch``) work on a CPU-only torch.

    Returns True when schemas were registered, False when nothing was needed. Idempotent and
    thread-safe; a no-op once torchvision is imported or when its extension loads normally.
    """
    global _done
    with _lock:
        if _done or "torchvision" in sys.modules:
            _done = True
            return False
        _done = True
        import torch

        if _torchvision_extension_loads():
            return False
        try:
            torch.ops.torchvision.nms  # noqa: B018 - attribute lookup raises if the op is missing
            return False
        except (AttributeError, RuntimeError):
            pass
        lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - must stay alive
        for schema in _SCHEMAS.values():
            lib.define(schema)
        # Keep the Library object referenced for the life of the process.
        globals()["_torchvision_lib"] = lib
        log.debug("registered torchvision op schemas %s (C extension unavailable)", list(_SCHEMAS))
        return True


@contextlib.contextmanager
def terratorch_imports() -> Iterator[None]:
    """The block imports terratorch (or a part of it): torchvision is made importable first, and
    the caller's fp32 matmul precision is back afterwards, whatever terratorch set."""
    ensure_torchvision_importable()
    with keep_matmul_precision():
        import terratorch  # noqa: F401 - the package __init__ is what changes the precision

        yield
