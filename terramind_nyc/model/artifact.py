"""Checkpoint artifacts loaded and saved: a validated config plus verified safetensors weights.

    art = load_artifact("path/or/owner-repo", revision=None, device="cpu")
    art.network, art.config, art.sha256
    save_artifact(network, config, "out/dir")

:func:`load_artifact` locates the files (:mod:`terramind_nyc.model.locate`: a directory, or a
Hugging Face repo downloaded and cached, revision pinnable), validates ``config.json``
(:mod:`terramind_nyc.model.config`), builds the network the config describes, checks every
weight's name, shape and dtype against it *before* reading any data, then reads the weights
straight into the network while computing their sha256 (:mod:`terramind_nyc.model.safetensors_io`).
Nothing is unpickled. :func:`save_artifact` writes the same format, every file under a temporary
name first and then moved into place (:func:`publish_file`), so a failed save leaves no
half-written artifact. ``docs/checkpoint.md`` describes the format.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, InvalidInputError
from .config import SCHEMA_VERSION, ModelConfig
from .files import CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE, ArtifactFiles, onnx_files_in
from .locate import locate_artifact, read_config_file
from .safetensors_io import check_weights, read_header, read_into

if TYPE_CHECKING:  # pragma: no cover
    from .network import MultiHeadTerraMind

__all__ = ["Artifact", "load_artifact", "publish_file", "save_artifact", "write_config"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Artifact:
    """A loaded checkpoint: its config, the network with its weights, and where it came from."""

    config: ModelConfig
    """The validated config."""
    network: MultiHeadTerraMind
    """The network, weights loaded, prepared for inference (eval mode; see
    :meth:`~terramind_nyc.model.network.MultiHeadTerraMind.prepare_for_inference`), on ``device``."""
    sha256: str
    """sha256 (hex) of ``model.safetensors``."""
    files: ArtifactFiles
    """Where the files are."""
    device: str
    """Torch device the network is on."""

    def describe(self) -> dict[str, Any]:
        """JSON-safe identity of the checkpoint (for provenance and cache keys)."""
        return {
            "id": self.files.source,
            "revision": self.files.revision,
            "name": self.config.name,
            "version": self.config.version,
            "encoder": self.config.encoder,
            "schema_version": self.config.schema_version,
            "sha256": self.sha256,
            "license": self.config.license,
            **self.config.checkpoint_kind(),
        }


def load_artifact(source: str | os.PathLike[str], *, revision: str | None = None, device: str = "cpu") -> Artifact:
    """Load a checkpoint: validate the config, verify the weights, build the network.

    Args:
        source: a local artifact directory or a Hugging Face repo id (downloaded and cached by
            huggingface_hub; offline use works once cached).
        revision: hub tag, branch or commit to pin (ignored for a local directory).
        device: torch device to put the network on (``cpu``, ``cuda``, ``cuda:1``, ...).

    Raises CheckpointNotFoundError (missing directory, repo or file) and CheckpointError (bad
    config, unknown schema version, truncated or corrupt weights, weights that do not match the
    network the config describes). Nothing half-loaded is returned or kept.
    """
    files = locate_artifact(source, revision=revision)
    label = f"checkpoint {files.source!r}"
    config = read_config_file(files.config, f"{label}: {CONFIG_FILE}")
    header = read_header(files.weights)

    from .network import build_network, v1_weight_name

    # prepared (eval; channels-last convolutions on CPU) before the weights are read, so the
    # layout change never holds two copies of those weights
    network = build_network(config, pretrained=False).prepare_for_inference(device)
    targets = network.state_dict()
    if config.schema_version == 1:  # same tensors, the neck named as version 1 named it
        targets = {v1_weight_name(k): t for k, t in targets.items()}
    check_weights(header, targets, config, label)
    sha = read_into(files.weights, header, targets, label)
    network.merge_lora()  # the LoRA variants' merged weights, from the factors just read
    broken = [name for name, t in targets.items() if t.is_floating_point() and not bool(t.isfinite().all())]
    if broken:
        raise CheckpointError(
            f"{label}: {len(broken)} weight tensor(s) hold NaN or inf (first: {broken[0]}); the checkpoint is "
            "corrupt or its training diverged: re-download it, or retrain / re-export it")
    network.eval()
    if device != "cpu":
        network.to(device)
    log.info("loaded %s (%s %s, sha256 %s) on %s", files.source, config.name, config.version, sha[:12], device)
    return Artifact(config=config, network=network, sha256=sha, files=files, device=device)


def publish_file(tmp: str | os.PathLike[str], dest: Path) -> None:
    """Give a temporary file the mode a new file would have (tempfile makes them 0600), then
    move it over ``dest`` atomically (:func:`terramind_nyc.atomic.publish`)."""
    from ..atomic import publish

    publish(tmp, dest)


def write_config(config: ModelConfig, directory: Path) -> None:
    """Write ``config`` as ``directory/config.json`` atomically (:func:`terramind_nyc.atomic.atomic_write_text`)."""
    from ..atomic import atomic_write_text

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
        publish_file(tmp_w.name, out / WEIGHTS_FILE)
        publish_file(tmp_c.name, out / CONFIG_FILE)
    finally:
        for name in (tmp_w.name, tmp_c.name):
            if os.path.exists(name):
                os.unlink(name)
    log.info("saved artifact %s (%s %s)", out, config.name, config.version)
    return out
