"""``model.safetensors`` read without unpickling and without a second copy of the weights.

:func:`read_header` has the ``safetensors`` library parse and validate the header (JSON, dtypes,
shapes against byte ranges, contiguous data covering the file); the checks before it name a
truncated or foreign file in this library's words. :func:`check_weights` compares every
tensor's name, shape and dtype with the network a config describes, before any data is read.
:func:`read_into` then reads the data straight into the network's tensors in one pass over the
file while hashing it. Nothing is unpickled: the header is JSON and the data raw little-endian
bytes. torch is imported only by the functions that take tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, CheckpointNotFoundError
from .files import CONFIG_FILE, WEIGHTS_FILE

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .config import ModelConfig

__all__ = ["SafetensorsHeader", "check_weights", "read_header", "read_into", "weights_sha256"]

#: The largest header the safetensors format allows (100 MB).
MAX_HEADER_BYTES = 100 << 20
_CHUNK = 8 << 20
_FIX = "re-download or re-export the artifact"


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a safetensors header says: each tensor's dtype and shape, and where the data starts."""

    tensors: Mapping[str, tuple[str, tuple[int, ...]]]
    """Tensor name -> (safetensors dtype such as ``F32``, shape)."""
    order: tuple[str, ...]
    """Tensor names in the order of their data in the file (the data is contiguous)."""
    data_start: int
    """Byte offset of the first tensor's data (8 + header length)."""
    metadata: Mapping[str, str]
    """The header's ``__metadata__`` (free-form strings)."""


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file (weights, ONNX graphs), streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def read_header(path: Path) -> SafetensorsHeader:
    """Parse and validate the header of the safetensors file at ``path`` (no tensor data read).

    Raises CheckpointNotFoundError when the file is missing and CheckpointError, saying how to
    fix it, when it is truncated, longer than its header says, or not a safetensors file.
    """
    label = f"{path.name} ({path})"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{label} is truncated ({size} bytes): {_FIX}")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise CheckpointError(f"{label} is truncated or not a safetensors file (header of {n} bytes, file "
                                      f"of {size} bytes): {_FIX}")
            raw = f.read(n)
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"{label}: file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{label} cannot be read: {exc}") from None

    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as st:
            order = tuple(st.offset_keys())
            tensors = {k: (str(st.get_slice(k).get_dtype()), tuple(int(d) for d in st.get_slice(k).get_shape()))
                       for k in order}
            metadata = st.metadata() or {}
    except SafetensorError as exc:
        raise CheckpointError(_describe(label, str(exc), raw, 8 + n, size)) from None
    return SafetensorsHeader(tensors, order, 8 + n, {str(k): str(v) for k, v in metadata.items()})


def _describe(label: str, error: str, raw: bytes, data_start: int, size: int) -> str:
    """The message for a header the safetensors library refused (``error`` is its reason)."""
    reason = error.removeprefix("Error while deserializing header: ")[:300]  # the library may quote the header
    if "not fully covered" in reason:  # the data is shorter or longer than the header describes
        try:
            header = json.loads(raw)
            described = max((int(e["data_offsets"][1]) for k, e in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError):
            described = None
        if described is not None:
            what = "truncated" if data_start + described > size else "longer than its header says"
            return (f"{label} is {what}: the header describes {described} bytes of tensor data after byte "
                    f"{data_start}, the file has {size} bytes; {_FIX}")
    return f"{label} has a corrupt header ({reason}): {_FIX}"


def _torch_dtype_name(dtype: torch.dtype) -> str:
    import torch

    names = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL"}
    return names.get(dtype, str(dtype))


def check_weights(header: SafetensorsHeader, expected: Mapping[str, torch.Tensor], config: ModelConfig,
                  label: str) -> None:
    """Every weight's name, shape and dtype against the network the config describes.

    Raises CheckpointError naming the mismatch: a head's class count where that is the cause
    (the usual one), else the missing, unexpected, reshaped and retyped weights.
    """
    have, want = set(header.tensors), set(expected)
    missing, unexpected = sorted(want - have), sorted(have - want)
    shapes, dtypes = [], []
    for k in sorted(have & want):
        (dtype, shape), t = header.tensors[k], expected[k]
        if shape != tuple(t.shape):
            shapes.append(f"{k} {list(shape)} (expected {list(t.shape)})")
        elif dtype != _torch_dtype_name(t.dtype):
            dtypes.append(f"{k} {dtype} (expected {_torch_dtype_name(t.dtype)})")
    if not (missing or unexpected or shapes or dtypes):
        return
    parts = []

    def some(items: Sequence[str]) -> str:
        return ", ".join(items[:6]) + (f", ... ({len(items) - 6} more)" if len(items) > 6 else "")

    for h in config.heads:
        for k in sorted(have & want):
            shape = header.tensors[k][1]
            if k.startswith(f"heads.{h.name}.") and k.endswith(".weight") and shape != tuple(expected[k].shape):
                n = shape[0] if shape else "?"
                parts.append(f"head {h.name!r} has {n} classes in the weights but {len(h.classes)} in {CONFIG_FILE}")
                break
    if missing:
        parts.append(f"{len(missing)} weight(s) missing: {some(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weight(s): {some(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} weight(s) of another shape: {some(shapes)}")
    if dtypes:
        parts.append(f"{len(dtypes)} weight(s) of another dtype: {some(dtypes)}")
    raise CheckpointError(
        f"{label}: {WEIGHTS_FILE} does not match the network {CONFIG_FILE} describes ({config.encoder}, heads "
        f"{list(config.head_names)}, modalities {list(config.modality_names)}): " + "; ".join(parts)
    )


def read_into(path: Path, header: SafetensorsHeader, targets: Mapping[str, torch.Tensor], label: str) -> str:
    """Read every tensor straight into ``targets`` (checked by :func:`check_weights`) in file
    order, one pass; return the file's sha256."""
    import torch

    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            h.update(f.read(header.data_start))
            for name in header.order:
                t = targets[name]
                direct = t.is_contiguous() and t.device.type == "cpu"
                dst = t if direct else torch.empty(t.shape, dtype=t.dtype)
                buf = dst.reshape(-1).view(torch.uint8).numpy()
                mv = memoryview(buf).cast("B")  # type: ignore[arg-type]
                got = 0
                while got < len(mv):
                    n = f.readinto(mv[got:])
                    if not n:
                        raise CheckpointError(f"{label}: {WEIGHTS_FILE} ended inside tensor {name!r} (truncated)")
                    got += n
                h.update(mv)
                if sys.byteorder != "little" and t.element_size() > 1:  # pragma: no cover - big-endian hosts
                    dst.copy_(torch.from_numpy(dst.numpy().byteswap()))
                if not direct:
                    t.copy_(dst)
    except OSError as exc:
        raise CheckpointError(f"{label}: {WEIGHTS_FILE} cannot be read: {exc}") from None
    return h.hexdigest()
