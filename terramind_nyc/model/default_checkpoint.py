"""The default checkpoint: the published NYC adapters, converted once into the local cache.

    ensure_default_artifact()          # the converted artifact's directory (converting on first use)
    default_status()                   # what the default is and whether it is converted (``info``)

:func:`~terramind_nyc.model.locate.resolve_checkpoint` calls :func:`ensure_default_artifact` for
the adapters' repo id (:data:`~terramind_nyc.model.adapters.ADAPTERS_REPO`, the default
``checkpoint``). The conversion (:mod:`terramind_nyc.model.convert_adapters`) runs under a file
lock next to the target, so a second process waits and then reuses the result.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ..errors import CheckpointNotFoundError
from . import convert_adapters
from .adapters import ADAPTERS_REPO, BASE_REPO, HEAD_FOLDERS
from .files import CHECKPOINT_HINT, CONFIG_FILE, WEIGHTS_FILE

__all__ = ["CONVERSION", "converted_dir", "default_status", "ensure_default_artifact"]

log = logging.getLogger(__name__)

_OFFLINE_HINT = (
    f"The default checkpoint is the published NYC adapters ({ADAPTERS_REPO}, folders "
    f"{', '.join(HEAD_FOLDERS.values())}) on {BASE_REPO} (TerraMind_v1_base.pt), converted once into the local cache. "
    "On a machine with internet run `terramind-nyc import-adapters --out DIR` (or let the first fetch download them), "
    "copy DIR here and set TERRAMIND_NYC_CHECKPOINT=DIR; or fill the Hugging Face cache with "
    f"`hf download {ADAPTERS_REPO}` and `hf download {BASE_REPO} TerraMind_v1_base.pt`"
)


#: Version of what a conversion writes; a new one (2: display labels in the config) converts again from
#: the files already in the Hugging Face cache, instead of serving an artifact an older library wrote.
CONVERSION = 2


def converted_dir(revision: str | None = None) -> Path:
    """Where the default checkpoint's converted artifact lives: next to the Hugging Face cache."""
    from huggingface_hub import constants

    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{ADAPTERS_REPO}@{revision or 'main'}.v{CONVERSION}")
    return Path(constants.HF_HUB_CACHE).parent / "terramind_nyc" / "converted" / slug


def ensure_default_artifact(revision: str | None = None) -> Path:
    """The published adapters as an artifact directory, converted on first use and reused after.

    Conversion runs under a file lock: a second process waits for the first and then reuses
    its result. Offline with nothing cached, CheckpointNotFoundError says what to download.
    """
    from filelock import FileLock

    dest = converted_dir(revision)
    if (dest / CONFIG_FILE).is_file() and (dest / WEIGHTS_FILE).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if (dest / CONFIG_FILE).is_file() and (dest / WEIGHTS_FILE).is_file():
            return dest  # another process converted it while this one waited
        log.warning("the default checkpoint: downloading the published NYC adapters (about 1 GB) and converting "
                    "them into %s, once", dest)
        try:
            return convert_adapters.import_adapters(dest, revision=revision, overwrite=True)
        except CheckpointNotFoundError as exc:
            reason = str(exc).replace(f"; {CHECKPOINT_HINT}", "")  # the generic hint does not apply here
            raise CheckpointNotFoundError(f"{reason}. {_OFFLINE_HINT}") from None
        except ImportError as exc:
            raise CheckpointNotFoundError(f"converting the published adapters needs the torch extra ({exc}); "
                                          f"{_OFFLINE_HINT}") from None


def default_status(revision: str | None = None) -> dict[str, Any]:
    """What the default checkpoint is and whether its converted artifact is cached (for ``info``)."""
    dest = converted_dir(revision)
    return {"default": ADAPTERS_REPO, "base": BASE_REPO, "kind": "per-head-encoders (LoRA adapters, converted)",
            "cached": (dest / CONFIG_FILE).is_file() and (dest / WEIGHTS_FILE).is_file(), "path": str(dest)}
