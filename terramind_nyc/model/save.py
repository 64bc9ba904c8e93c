"""Saving a checkpoint artifact: ``config.json`` and ``model.safetensors`` written atomically.

    save_artifact(network, config, "out/dir")

Every file is written under a temporary name and moved into place
(:func:`terramind_nyc.atomic.publish`), so a failed save leaves no half-written artifact. Loading
is :mod:`terramind_nyc.model.artifact`, which re-exports these functions. ``docs/checkpoint.md``
describes the format.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_write_text, publish
from ..errors import InvalidInputError
from .config import SCHEMA_VERSION, ModelConfig
from .files import CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE, onnx_files_in

if TYPE_CHECKING:  # pragma: no cover
    from .network import MultiHeadTerraMind

__all__ = ["save_artifact", "write_config"]

log = logging.getLogger(__name__)


def write_config(config: ModelConfig, directory: Path) -> None:
    """Write ``config`` as ``directory/config.json`` atomically (:func:`terramind_nyc.atomic.atomic_write_text`)."""
    atomic_write_text(directory / CONFIG_FILE, config.to_json())


def save_artifact(network: MultiHeadTerraMind, config: ModelConfig | None, directory: str | os.PathLike[str],
                  *, overwrite: bool = False) -> Path:
    """Write ``network``'s weights and ``config`` as an artifact directory; return its path.

    ``config`` defaults to the network's own; when given it may change anything but the
    architecture (names, version, class names, colours, threshold, statistics, provenance,
    metrics). An existing artifact is replaced only with ``overwrite=True``; a stale ONNX
    export (``model.onnx``, ``model.*.onnx``, ``model.onnx.data``) is then removed and the
    config's ``onnx`` record dropped, since they no longer match the weights (re-export with
    ``terramind-nyc export-onnx``). Files are written to temporary names first, so a failed
    save leaves no half-written artifact.
    """
    from safetensors.torch import save_file

    from .network import MultiHeadTerraMind

    if not isinstance(network, MultiHeadTerraMind):
        raise InvalidInputError(f"save_artifact needs a MultiHeadTerraMind network, got {type(network).__name__}")
    config = network.config if config is None else config
    if not isinstance(config, ModelConfig):
        raise InvalidInputError(f"config must be a ModelConfig, got {type(config).__name__}")
    if config.architecture() != network.config.architecture():
        raise InvalidInputError(
            "config describes another network than the one given: "
            f"{config.architecture()} vs the network's {network.config.architecture()}"
        )
    out = Path(os.fspath(directory)).expanduser()
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} exists and is not a directory")
    if config.onnx is not None:
        config = config.replace(onnx=None)
    if config.schema_version != SCHEMA_VERSION:  # the weights are written with this version's names
        config = config.replace(schema_version=SCHEMA_VERSION)
    existing = [n for n in (CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE) if (out / n).exists()]
    if existing and not overwrite:
        raise InvalidInputError(f"{out} already holds an artifact ({', '.join(existing)}); pass overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    text = config.to_json()
    tmp_w = tempfile.NamedTemporaryFile(dir=out, prefix=".model.", suffix=".tmp", delete=False)  # noqa: SIM115
    tmp_c = tempfile.NamedTemporaryFile(dir=out, prefix=".config.", suffix=".tmp", delete=False, mode="w")  # noqa: SIM115
    try:
        tmp_w.close()
        save_file(tensors, tmp_w.name, metadata={"format": "pt", "schema_version": str(SCHEMA_VERSION)})
        with tmp_c:
            tmp_c.write(text)
        for stale in onnx_files_in(out):
            log.info("removing stale %s from %s", stale.name, out)
            stale.unlink()
        publish(tmp_w.name, out / WEIGHTS_FILE)
        publish(tmp_c.name, out / CONFIG_FILE)
    finally:
        for name in (tmp_w.name, tmp_c.name):
            if os.path.exists(name):
                os.unlink(name)
    log.info("saved artifact %s (%s %s)", out, config.name, config.version)
    return out
