"""Work on exported ONNX graphs for :mod:`terramind_nyc.model.export_onnx`: their input shapes, the
fixed shapes written into them, and one external-data file shared by every graph.

Needs the onnx package (imported by the caller and passed in, or inside the functions).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import BackendError
from .config import ModelConfig

#: Tensors smaller than this stay inside the graph file (as onnx's own external-data writer does).
INLINE_BYTES = 1024
#: Offsets of tensors in the external-data file are aligned to this (lets ONNX Runtime map them).
ALIGN = 4096


def input_shape(config: ModelConfig, modality: str, batch: int) -> tuple[int, ...]:
    """The shape of a graph input: ``(batch, bands, tile, tile)``, ``(batch, bands, T, tile, tile)`` when T > 1."""
    bands = len(config.modality(modality).bands)
    t = config.tile_size
    if config.input_timesteps > 1:
        return (batch, bands, config.input_timesteps, t, t)
    return (batch, bands, t, t)


def name_shapes(model: Any, config: ModelConfig, subset: tuple[str, ...]) -> None:
    """Write the full input and output shapes into the graph (the TorchScript exporter leaves the
    outputs' class and size axes symbolic after the final Resize): ``batch`` x fixed sizes."""
    shapes: dict[str, tuple[int, ...]] = {m: input_shape(config, m, 0)[1:] for m in subset}
    shapes.update({h.name: (len(h.classes), config.tile_size, config.tile_size) for h in config.heads})
    for value in (*model.graph.input, *model.graph.output):
        if value.name not in shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        want = shapes[value.name]
        if len(dims) != len(want) + 1:
            raise BackendError(f"the exported graph's {value.name} has {len(dims)} axes, expected {len(want) + 1}")
        dims[0].Clear()
        dims[0].dim_param = "batch"
        for d, n in zip(dims[1:], want):
            d.Clear()
            d.dim_value = n


class TensorStore:
    """Writes initializers into one external-data file, each distinct tensor once (by content)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close(), written across many calls
        self._index: dict[tuple[int, bytes], tuple[int, int]] = {}
        self.size = 0
        self.count = 0
        self.deduplicated = 0

    def externalise(self, model: Any, onnx: Any) -> None:
        """Move ``model``'s initializers of at least :data:`INLINE_BYTES` into the file (in place)."""
        from onnx import numpy_helper
        from onnx.external_data_helper import set_external_data

        for t in initializers(model.graph):
            if t.data_location == onnx.TensorProto.EXTERNAL:  # pragma: no cover - loaded with external data
                raise BackendError(f"initializer {t.name} was not loaded")
            if t.data_type == onnx.TensorProto.STRING:
                continue
            if t.HasField("raw_data"):
                data = t.raw_data
            else:
                arr = numpy_helper.to_array(t)
                data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()  # ONNX data is little-endian
            if len(data) < INLINE_BYTES:
                continue
            key = (t.data_type, hashlib.sha256(data).digest())
            where = self._index.get(key)
            if where is None:
                pad = (-self.size) % ALIGN
                if pad:
                    self._f.write(b"\0" * pad)
                    self.size += pad
                where = (self.size, len(data))
                self._f.write(data)
                self.size += len(data)
                self._index[key] = where
                self.count += 1
            else:
                self.deduplicated += 1
            for fld in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                t.ClearField(fld)
            t.raw_data = data  # set_external_data wants it present; cleared next
            set_external_data(t, location=self.path.name, offset=where[0], length=where[1])
            t.data_location = onnx.TensorProto.EXTERNAL
            t.ClearField("raw_data")

    def close(self) -> None:
        self._f.close()


def initializers(graph: Any) -> list[Any]:
    """Initializers of a graph and of its subgraphs (If/Loop/Scan bodies)."""
    out = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                out.extend(initializers(attr.g))
            for g in attr.graphs:
                out.extend(initializers(g))
    return out
