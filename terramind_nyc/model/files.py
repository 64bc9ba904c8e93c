"""The files of a checkpoint artifact: their names, where a located artifact's files are, and
which files in a folder belong to an ONNX export.

An artifact is a directory, local or a Hugging Face model repo, holding::

    config.json         ModelConfig (terramind_nyc.model.config)
    model.safetensors   the weights of the network the config describes (never a pickle)
    model.onnx          optional: the same network exported for ONNX Runtime (every modality)
    model.*.onnx        optional: one more graph per modality subset (``model.S2L2A-DEM.onnx``)
    model.onnx.data     the weights all those graphs read, stored once (ONNX external data)

``docs/checkpoint.md`` describes the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CHECKPOINT_HINT",
    "CONFIG_FILE",
    "ONNX_DATA_FILE",
    "ONNX_FILE",
    "WEIGHTS_FILE",
    "ArtifactFiles",
    "onnx_files_in",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: The graph that takes every modality.
ONNX_FILE = "model.onnx"
#: The external-data file every exported graph reads its weights from.
ONNX_DATA_FILE = "model.onnx.data"

#: What to do when no artifact is found (the end of every "not found" message).
CHECKPOINT_HINT = (
    "point TERRAMIND_NYC_CHECKPOINT (or Settings(checkpoint=...)) at a local artifact directory holding "
    f"{CONFIG_FILE} and {WEIGHTS_FILE}, or train one with `python -m training` (see docs/checkpoint.md)"
)


@dataclass(frozen=True)
class ArtifactFiles:
    """Where an artifact's files are on this machine."""

    source: str
    """The checkpoint as given: a directory or a Hugging Face repo id."""
    revision: str | None
    """Hugging Face revision asked for (None: the default branch, or a local directory)."""
    directory: Path
    """Local directory holding the files (the hub cache snapshot for a repo id)."""
    config: Path
    """``config.json``."""
    weights: Path
    """``model.safetensors``."""


def onnx_files_in(directory: Path) -> list[Path]:
    """The ONNX export files in an artifact directory (graphs and external data), sorted."""
    names = {ONNX_FILE, ONNX_DATA_FILE}
    return sorted(p for p in directory.iterdir() if p.is_file() and (
        p.name in names or (p.name.startswith("model.") and p.name.endswith(".onnx"))))
