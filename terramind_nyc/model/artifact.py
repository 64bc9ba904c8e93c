"""Checkpoint artifacts loaded and saved: a validated config plus verified safetensors weights.

    art = load_artifact("path/or/owner-repo", revision=None, device="cpu")
    art.network, art.config, art.sha256
    save_artifact(network, config, "out/dir")

:func:`load_artifact` locates the files (:mod:`terramind_nyc.model.locate`: a directory, or a
Hugging Face repo downloaded and cached, revision pinnable), validates ``config.json``
(:mod:`terramind_nyc.model.config`), builds the network the config describes, checks every
weight's name, shape and dtype against it *before* reading any data, then reads the weights
straight into the network while computing their sha256 (:mod:`terramind_nyc.model.safetensors_io`).
Nothing is unpickled. :func:`save_artifact` (:mod:`terramind_nyc.model.save`) writes the same
format, every file under a temporary name first and then moved into place, so a failed save
leaves no half-written artifact. ``docs/checkpoint.md`` describes the format.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from .config import ModelConfig
from .files import CONFIG_FILE, ArtifactFiles
from .locate import locate_artifact, read_config_file
from .safetensors_io import check_weights, read_header, read_into
from .save import save_artifact, write_config  # re-exported: the artifact API is load + save

if TYPE_CHECKING:  # pragma: no cover
    from .network import MultiHeadTerraMind

__all__ = ["Artifact", "load_artifact", "save_artifact", "write_config"]

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
