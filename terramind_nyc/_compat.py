"""Import shims for heavy optional dependencies.

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

import importlib.util
import logging
import os
import sys
import threading

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


def import_terratorch():  # type: ignore[no-untyped-def]
    """Import terratorch after :func:`ensure_torchvision_importable`; return the module."""
    ensure_torchvision_importable()
    import terratorch

    return terratorch
