"""Finding a checkpoint: a local directory or a Hugging Face repo id, resolved by one rule.

    where = resolve_checkpoint("owner/name", revision="v1")    # or a directory
    where.file("config.json")                                   # local path, or downloaded into the hub cache

:func:`is_local_checkpoint` is the one rule that tells a directory from a repo id (``terramind-nyc
info`` uses it too); :func:`resolve_checkpoint` is the one resolver every lookup goes through:
:func:`locate_artifact` (config and weights, for loading), :func:`read_config` and
:func:`has_onnx_export` (the config only), :func:`locate_onnx` (the config and the ONNX files,
each checked against its recorded sha256). None of them needs torch.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, CheckpointNotFoundError, InvalidInputError
from . import hub
from .adapters import is_adapters_source
from .default_checkpoint import ensure_default_artifact
from .config import ModelConfig
from .files import CHECKPOINT_HINT, CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE, ArtifactFiles
from .onnx_record import OnnxExport
from .safetensors_io import weights_sha256

__all__ = [
    "CheckpointSource",
    "OnnxFiles",
    "has_onnx_export",
    "is_local_checkpoint",
    "locate_artifact",
    "locate_onnx",
    "looks_like_repo_id",
    "read_config",
    "read_config_file",
    "resolve_checkpoint",
]

log = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_EXPORT_HINT = "create it with `terramind-nyc export-onnx {src}` (needs the torch extra), or use backend torch"


def looks_like_repo_id(source: str) -> bool:
    """Whether ``source`` has the shape of a Hugging Face repo id, ``owner/name``."""
    return bool(_REPO_ID.match(source)) and ".." not in source


def is_local_checkpoint(source: str | os.PathLike[str]) -> bool:
    """The rule: a path that exists, or anything not shaped like a repo id, is a local artifact
    directory; the rest (``owner/name``) is a Hugging Face repo id."""
    src = os.fspath(source)
    return Path(src).expanduser().exists() or not looks_like_repo_id(src)


@dataclass(frozen=True)
class CheckpointSource:
    """A checkpoint as given, resolved to a local directory or a hub repo; files are read on demand."""

    source: str
    """The checkpoint as given: a directory or a Hugging Face repo id."""
    revision: str | None
    """Hugging Face revision asked for (None: the default branch, or a local directory)."""
    directory: Path | None
    """The local artifact directory; None for a repo id."""

    @property
    def is_local(self) -> bool:
        """Whether the checkpoint is a local directory."""
        return self.directory is not None

    def file(self, name: str, *, missing: str | None = None) -> Path:
        """The local path of the artifact file ``name`` (for a repo id: downloaded into the hub cache).

        Raises CheckpointNotFoundError when the file is not there; ``missing`` replaces the
        message for a local directory.
        """
        if self.directory is None:
            return hub.download_file(self.source, name, self.revision)
        f = self.directory / name
        if not f.is_file():
            raise CheckpointNotFoundError(missing or (
                f"checkpoint {self.source!r} has no {name} (an artifact holds {CONFIG_FILE} and {WEIGHTS_FILE}); "
                f"{CHECKPOINT_HINT}"
            ))
        return f

    def config(self) -> ModelConfig:
        """The validated ``config.json`` (only that file is read or downloaded)."""
        return read_config_file(self.file(CONFIG_FILE), f"checkpoint {self.source!r}: {CONFIG_FILE}")


def resolve_checkpoint(source: str | os.PathLike[str], *, revision: str | None = None) -> CheckpointSource:
    """``source`` as a local directory (:func:`is_local_checkpoint`) or a hub repo id; nothing is read.

    ``revision`` pins a hub tag, branch or commit (ignored for a local directory). The published
    NYC adapters' repo id (:data:`~terramind_nyc.model.adapters.ADAPTERS_REPO`, the default
    checkpoint) resolves to their converted artifact in the cache, converting them on first use
    (:func:`~terramind_nyc.model.default_checkpoint.ensure_default_artifact`). Raises
    InvalidInputError for an empty or non-path source and CheckpointNotFoundError for a local
    directory that does not exist.
    """
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
        raise InvalidInputError(f"checkpoint must be a directory or a Hugging Face repo id, got {source!r}")
    src = os.fspath(source)
    if not is_local_checkpoint(src) and is_adapters_source(src):
        # the published adapters are no artifact: converted once into the local cache, then read from there
        return CheckpointSource(src, revision, ensure_default_artifact(revision))
    if not is_local_checkpoint(src):
        return CheckpointSource(src, revision, None)
    path = Path(src).expanduser()
    if not path.is_dir():
        raise CheckpointNotFoundError(f"checkpoint {src!r}: no such directory; {CHECKPOINT_HINT}")
    if revision is not None:
        log.debug("revision %r ignored for local checkpoint %s", revision, path)
    return CheckpointSource(src, None, path)


def locate_artifact(source: str | os.PathLike[str], *, revision: str | None = None) -> ArtifactFiles:
    """Find (for a repo id, download into the Hugging Face cache) an artifact's config and weights.

    Raises CheckpointNotFoundError naming the missing directory, repo or file.
    """
    where = resolve_checkpoint(source, revision=revision)
    config = where.file(CONFIG_FILE)
    weights = where.file(WEIGHTS_FILE)
    return ArtifactFiles(where.source, where.revision, where.directory or config.parent, config, weights)


def read_config(source: str | os.PathLike[str], *, revision: str | None = None) -> ModelConfig:
    """The validated :class:`ModelConfig` of an artifact directory, repo id, or config.json path
    (only ``config.json`` is read or downloaded)."""
    path = Path(os.fspath(source)).expanduser()
    if path.is_file():
        return read_config_file(path, str(path))
    return resolve_checkpoint(source, revision=revision).config()


def read_config_file(path: Path, label: str) -> ModelConfig:
    """The validated config in the ``config.json`` file at ``path``; errors start with ``label``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"{label}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{label}: cannot be read ({exc})") from None
    return ModelConfig.from_json(text, source=label)


# ----------------------------------------------------------------------------------------
# The ONNX export, located and verified without torch
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OnnxFiles:
    """Where an artifact's ONNX export is on this machine, and what ``config.json`` says of it."""

    source: str
    """The checkpoint as given: a directory or a Hugging Face repo id."""
    revision: str | None
    """Hugging Face revision asked for (None: the default branch, or a local directory)."""
    config: ModelConfig
    """The artifact's validated config (its ``onnx`` record is not None)."""
    graphs: Mapping[tuple[str, ...], Path]
    """Modality subset (model order) -> graph file."""
    data: Path
    """The shared external-data (weights) file."""

    @property
    def export(self) -> OnnxExport:
        """The export record of ``config.json``."""
        assert self.config.onnx is not None
        return self.config.onnx

    def describe(self) -> dict[str, Any]:
        """JSON-safe identity of the checkpoint (same keys as
        :meth:`~terramind_nyc.model.artifact.Artifact.describe`, plus ``onnx``).

        ``sha256`` is that of the ``model.safetensors`` the graphs were exported from, so that
        results of both backends name the same weights."""
        c, e = self.config, self.export
        main = e.graph_for(c.modality_names) or e.graphs[0]
        return {
            "id": self.source,
            "revision": self.revision,
            "name": c.name,
            "version": c.version,
            "encoder": c.encoder,
            "schema_version": c.schema_version,
            "sha256": e.source_sha256,
            "license": c.license,
            **c.checkpoint_kind(),
            "onnx": {"opset": e.opset, "exporter": e.exporter, "sha256": main.sha256, "data_sha256": e.data_sha256},
        }


def has_onnx_export(source: str | os.PathLike[str], *, revision: str | None = None) -> bool:
    """Whether the artifact's ``config.json`` records an ONNX export (and, for a local directory,
    its ``model.onnx`` is there). Reads only the config; an invalid config gives False (the torch
    path then reports it); a missing artifact raises CheckpointNotFoundError."""
    where = resolve_checkpoint(source, revision=revision)
    try:
        config = where.config()
    except CheckpointNotFoundError:
        raise  # no artifact at all: the torch path would only ask the hub again
    except CheckpointError:
        return False
    if config.onnx is None:
        return False
    return where.directory is None or (where.directory / ONNX_FILE).is_file()


def locate_onnx(source: str | os.PathLike[str], *, revision: str | None = None, verify: bool = True) -> OnnxFiles:
    """Find (for a repo id: download) an artifact's ONNX export and check it against ``config.json``.

    Only ``config.json`` and the ONNX files are read (``model.safetensors`` is not needed).
    ``verify`` compares every file's sha256 with the record, so a truncated or corrupted graph
    or weights file is refused before ONNX Runtime sees it.

    Raises CheckpointNotFoundError when the artifact or its export is missing (the message says
    how to export) and CheckpointError for a bad config or a file that does not match its record.
    """
    where = resolve_checkpoint(source, revision=revision)
    config = where.config()
    label = f"checkpoint {where.source!r}"
    export = config.onnx
    hint = _EXPORT_HINT.format(src=where.source)
    if export is None:
        stray = " (it holds a model.onnx, but from another tool or an older export)" if (
            where.directory is not None and (where.directory / ONNX_FILE).exists()) else ""
        raise CheckpointNotFoundError(f"{label} has no ONNX export: {CONFIG_FILE} records none{stray}; {hint}")

    def fetch(name: str) -> Path:
        return where.file(name, missing=f"{label}: {name} is missing although {CONFIG_FILE} records it; {hint}")

    graphs = {g.modalities: fetch(g.file) for g in export.graphs}
    data = fetch(export.data_file)
    if verify:
        checks = [(g.file, graphs[g.modalities], g.sha256) for g in export.graphs]
        checks.append((export.data_file, data, export.data_sha256))
        for name, f, want in checks:
            _check_sha256(label, name, f, want, where.source)
    return OnnxFiles(where.source, where.revision, config, graphs, data)


def _check_sha256(label: str, name: str, f: Path, want: str, src: str) -> None:
    try:
        got = weights_sha256(f)
        size = f.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{label}: {name} cannot be read: {exc}") from None
    if got != want:
        raise CheckpointError(
            f"{label}: {name} is corrupt or truncated ({size} bytes, sha256 {got[:12]}..., {CONFIG_FILE} records "
            f"{want[:12]}...); re-download the artifact or re-run `terramind-nyc export-onnx {src}`"
        )
