"""The record of an ONNX export kept in ``config.json`` (its ``onnx`` entry): which graphs exist,
for which modality subsets, their file hashes, and how the export was verified.

:func:`~terramind_nyc.model.export_onnx.export_onnx` writes it; :func:`~terramind_nyc.model.locate.locate_onnx`
checks the files against it. Reading and checking it needs neither torch nor onnx.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CheckpointError
from . import _schema as schema
from .files import ONNX_DATA_FILE, ONNX_FILE

__all__ = ["ONNX_PRECISIONS", "OnnxExport", "OnnxGraph", "check_onnx_record", "onnx_graph_file"]

#: Precisions an ONNX export may have.
ONNX_PRECISIONS = ("float32", "float16")


def onnx_graph_file(modalities: Sequence[str], all_modalities: Sequence[str]) -> str:
    """File name of the exported graph for ``modalities``: ``model.onnx`` for all of them,
    else ``model.<names joined by ->.onnx`` (``model.S2L2A-DEM.onnx``), names in model order."""
    names = [m for m in all_modalities if m in modalities]
    if tuple(names) == tuple(all_modalities):
        return ONNX_FILE
    return f"model.{'-'.join(names)}.onnx"


@dataclass(frozen=True)
class OnnxGraph:
    """One exported ONNX graph: the network run on one subset of the modalities."""

    modalities: tuple[str, ...]
    """Its inputs, in model order; each ``(batch, bands, tile, tile)`` float32 (``(batch, bands, T,
    tile, tile)`` when T > 1), standardised, named after the modality. Its outputs are the head
    logits ``(batch, classes, tile, tile)``, named after the heads."""
    file: str
    """File name in the artifact directory (:func:`onnx_graph_file`)."""
    sha256: str
    """sha256 (hex) of that file."""


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`~terramind_nyc.model.export_onnx.export_onnx` wrote, recorded in ``config.json``."""

    graphs: tuple[OnnxGraph, ...]
    """One graph per exported modality subset; the one with every modality is ``model.onnx``."""
    data_sha256: str
    """sha256 (hex) of :attr:`data_file`, the weights every graph reads (stored once)."""
    source_sha256: str
    """sha256 (hex) of the ``model.safetensors`` the graphs were exported from."""
    opset: int
    """ONNX opset of the graphs."""
    exporter: str
    """Exporter and versions, e.g. ``torch.onnx torchscript (torch 2.13.0, onnx 1.23.2)``."""
    max_abs_diff: float
    """Largest absolute difference of ONNX Runtime's softmax probabilities from torch's (IEEE
    float32) over every graph, in the verification on random inputs at export time."""
    tolerance: float = 1e-4
    """The bound :attr:`max_abs_diff` was checked against."""
    argmax_agreement: float = 1.0
    """Smallest share (0..1) of pixels, over every graph and head, whose argmax class ONNX Runtime
    and torch agreed on in that verification."""
    precision: str = "float32"
    """Weights and arithmetic of the graphs: ``float32``, or ``float16`` (inputs and outputs
    stay float32; meant for GPU execution providers)."""
    data_file: str = ONNX_DATA_FILE
    """File name of the shared external-data (weights) file."""
    created: str = ""
    """When the export was made (ISO 8601 UTC)."""

    def graph_for(self, modalities: Sequence[str]) -> OnnxGraph | None:
        """The graph whose inputs are exactly ``modalities`` (any order), or None."""
        want = set(modalities)
        return next((g for g in self.graphs if set(g.modalities) == want), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the ``onnx`` entry of ``config.json``)."""
        return {
            "graphs": [{"modalities": list(g.modalities), "file": g.file, "sha256": g.sha256} for g in self.graphs],
            "data_file": self.data_file,
            "data_sha256": self.data_sha256,
            "source_sha256": self.source_sha256,
            "opset": self.opset,
            "exporter": self.exporter,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "argmax_agreement": self.argmax_agreement,
            "precision": self.precision,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "onnx") -> OnnxExport:
        """Parse the ``onnx`` entry of ``config.json``; CheckpointError names the bad field."""
        d = schema.expect(d, dict, where)
        schema.no_unknown(d, {f.name for f in dataclasses.fields(cls)}, where)
        schema.require(d, ("graphs", "data_sha256", "source_sha256", "opset", "exporter", "max_abs_diff"), where)
        graphs = []
        for i, g in enumerate(schema.expect(d["graphs"], list, f"{where}.graphs")):
            w = f"{where}.graphs[{i}]"
            g = schema.expect(g, dict, w)
            schema.no_unknown(g, {"modalities", "file", "sha256"}, w)
            schema.require(g, ("modalities", "file", "sha256"), w)
            graphs.append(OnnxGraph(schema.str_tuple(g["modalities"], f"{w}.modalities"),
                                    schema.expect(g["file"], str, f"{w}.file"),
                                    schema.expect(g["sha256"], str, f"{w}.sha256")))

        def number(key: str, default: float) -> float:
            return float(schema.expect(d.get(key, default), (int, float), f"{where}.{key}"))

        return cls(
            graphs=tuple(graphs),
            data_sha256=schema.expect(d["data_sha256"], str, f"{where}.data_sha256"),
            source_sha256=schema.expect(d["source_sha256"], str, f"{where}.source_sha256"),
            opset=schema.expect(d["opset"], int, f"{where}.opset"),
            exporter=schema.expect(d["exporter"], str, f"{where}.exporter"),
            max_abs_diff=number("max_abs_diff", 0.0),
            tolerance=number("tolerance", 1e-4),
            argmax_agreement=number("argmax_agreement", 1.0),
            precision=schema.expect(d.get("precision", "float32"), str, f"{where}.precision"),
            data_file=schema.expect(d.get("data_file", ONNX_DATA_FILE), str, f"{where}.data_file"),
            created=schema.expect(d.get("created", ""), str, f"{where}.created"),
        )


def check_onnx_record(e: Any, modality_names: Sequence[str]) -> None:
    """CheckpointError unless ``e`` is a consistent record for a model taking ``modality_names``."""
    if not isinstance(e, OnnxExport):
        raise CheckpointError(f"`onnx` must be an OnnxExport record, got {type(e).__name__}")
    if not e.graphs:
        raise CheckpointError("`onnx.graphs` must list at least one graph")
    names = list(modality_names)
    files: list[str] = []
    subsets: list[frozenset[str]] = []
    for g in e.graphs:
        where = f"onnx graph {g.file!r}"
        if not g.modalities or any(m not in names for m in g.modalities):
            raise CheckpointError(f"{where}: modalities {list(g.modalities)} must be a non-empty subset of {names}")
        if list(g.modalities) != [m for m in names if m in g.modalities]:
            raise CheckpointError(f"{where}: modalities {list(g.modalities)} must be in model order {names}")
        if not schema.FILE_NAME.match(g.file) or not g.file.endswith(".onnx"):
            raise CheckpointError(f"{where}: the file must be a plain *.onnx file name in the artifact directory")
        if not schema.SHA256.match(g.sha256):
            raise CheckpointError(f"{where}: `sha256` must be 64 lower-case hex digits")
        files.append(g.file)
        subsets.append(frozenset(g.modalities))
    schema.unique(files, "onnx graph files")
    if len(set(subsets)) != len(subsets):
        raise CheckpointError("`onnx.graphs` lists a modality subset twice")
    if not schema.FILE_NAME.match(e.data_file) or e.data_file in files:
        raise CheckpointError(f"`onnx.data_file` must be a plain file name other than a graph's, got {e.data_file!r}")
    for key in ("data_sha256", "source_sha256"):
        if not isinstance(getattr(e, key), str) or not schema.SHA256.match(getattr(e, key)):
            raise CheckpointError(f"`onnx.{key}` must be 64 lower-case hex digits")
    if not isinstance(e.opset, int) or isinstance(e.opset, bool) or not 7 <= e.opset <= 99:
        raise CheckpointError(f"`onnx.opset` must be an ONNX opset number, got {e.opset!r}")
    for key in ("max_abs_diff", "tolerance"):
        v = getattr(e, key)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise CheckpointError(f"`onnx.{key}` must be a finite number >= 0, got {v!r}")
    if not isinstance(e.argmax_agreement, (int, float)) or not 0.0 <= e.argmax_agreement <= 1.0:
        raise CheckpointError(f"`onnx.argmax_agreement` is a fraction 0..1, got {e.argmax_agreement!r}")
    if e.precision not in ONNX_PRECISIONS:
        raise CheckpointError(f"`onnx.precision` must be one of {list(ONNX_PRECISIONS)}, got {e.precision!r}")

