"""Raw modality arrays checked against a checkpoint's config and standardised for the model.

    arrays, valid, (h, w) = validate_inputs(config, {"S2L2A": s2_dn, "DEM": dem_m}, masks)
    x = standardise(config, arrays, valid)      # float32 (x - mean) / std; nodata -> 0 (the mean)

Every backend's :meth:`~terramind_nyc.model.runtime.Runtime.predict` and the training data
module use these two functions, so training and inference see identical inputs. numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .config import ModelConfig

__all__ = ["standardise", "validate_inputs"]


def validate_inputs(
    config: ModelConfig,
    arrays: Mapping[str, Any],
    masks: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], tuple[int, int]]:
    """Check raw inputs against the config; return (arrays, valid masks, (H, W)) in model order.

    ``arrays[m]`` is ``(bands, H, W)`` (``(bands, T, H, W)`` when T > 1; a single-band modality
    may be ``(H, W)``), any real number dtype, bands in the config's order. ``masks[m]`` is bool
    ``(H, W)`` (or ``(T, H, W)``), True where the pixel holds data; a modality without a mask is
    valid wherever all its bands are finite.
    """
    if not isinstance(arrays, Mapping) or not arrays:
        raise InvalidInputError(
            f"give a dict of at least one modality array, keys from {list(config.modality_names)}"
        )
    unknown = sorted(str(k) for k in arrays if k not in config.modality_names)
    if unknown:
        raise InvalidInputError(f"unknown modality {unknown}; this checkpoint takes {list(config.modality_names)}")
    masks = {} if masks is None else masks
    if not isinstance(masks, Mapping):
        raise InvalidInputError(f"masks must be a dict of modality -> bool array, got {type(masks).__name__}")
    stray = sorted(str(k) for k in masks if k not in arrays)
    if stray:
        raise InvalidInputError(f"masks given for modalities without arrays: {stray}")
    t = config.input_timesteps
    ndim = 3 if t == 1 else 4
    layout = "(bands, H, W)" if t == 1 else f"(bands, T={t}, H, W)"
    out: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    size: tuple[int, int] | None = None
    for m in config.modality_names:
        if m not in arrays:
            continue
        spec = config.modality(m)
        try:
            a = np.asarray(arrays[m])
        except Exception as exc:  # noqa: BLE001 - anything that is not array-like
            raise InvalidInputError(f"{m}: not an array ({type(arrays[m]).__name__}: {exc})") from None
        if a.dtype.kind not in "iuf":
            raise InvalidInputError(
                f"{m}: dtype {a.dtype} is not a real number type; pass float32 (or integer DN) values in {spec.units or 'the modality units'}"
            )
        if a.ndim == ndim - 1 and len(spec.bands) == 1:
            a = a[None]
        if a.ndim != ndim:
            raise InvalidInputError(f"{m}: expected a {ndim}-D array {layout}, got shape {a.shape}")
        if a.shape[0] != len(spec.bands):
            raise InvalidInputError(
                f"{m}: {a.shape[0]} bands, the checkpoint takes {len(spec.bands)} in this order: {', '.join(spec.bands)}"
            )
        if t > 1 and a.shape[1] != t:
            raise InvalidInputError(f"{m}: {a.shape[1]} time steps, the checkpoint takes {t}")
        hw = (int(a.shape[-2]), int(a.shape[-1]))
        if min(hw) < 1:
            raise InvalidInputError(f"{m}: empty window {hw}; windows need at least 1x1 px")
        if size is None:
            size = hw
        elif hw != size:
            raise InvalidInputError(f"modalities differ in size: {m} is {hw[0]}x{hw[1]}, another is {size[0]}x{size[1]}")
        finite = np.isfinite(a).all(axis=0) if a.dtype.kind == "f" else np.ones(a.shape[1:], bool)
        if m in masks and masks[m] is not None:
            mk = np.asarray(masks[m])
            if mk.dtype.kind not in "bui":
                raise InvalidInputError(f"{m} mask: dtype {mk.dtype}; pass a bool array, True where the pixel holds data")
            if mk.shape != hw and mk.shape != a.shape[1:]:
                raise InvalidInputError(f"{m} mask: shape {mk.shape} does not match the array's {hw}")
            finite = finite & mk.astype(bool)
        out[m] = a
        valid[m] = finite
    assert size is not None
    return out, valid, size


def standardise(config: ModelConfig, arrays: Mapping[str, np.ndarray],
                valid: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float32 ``(x - mean) / std`` per band with the config's statistics; invalid pixels -> 0.

    ``arrays`` and ``valid`` as :func:`validate_inputs` returns them.
    """
    out: dict[str, np.ndarray] = {}
    for m, a in arrays.items():
        spec = config.modality(m)
        shape = (-1,) + (1,) * (a.ndim - 1)
        mean = np.asarray(spec.mean, np.float32).reshape(shape)
        std = np.asarray(spec.std, np.float32).reshape(shape)
        x = a.astype(np.float32, copy=True)
        if spec.transform == "db_to_linear":
            with np.errstate(over="ignore", invalid="ignore"):
                x = np.power(np.float32(10.0), x / np.float32(10.0), dtype=np.float32)
        x -= mean
        x /= std
        bad = ~valid[m]
        if bad.any():
            x[:, np.broadcast_to(bad, x.shape[1:])] = 0.0
        out[m] = x
    return out

