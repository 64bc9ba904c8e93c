"""What the public calls return: :class:`Result`, its :class:`Provenance` and :class:`BatchItem`.

Frozen dataclasses; fractions are 0..1 in the library and percentages appear only in the
client view :meth:`Result.to_riprap`. The figures themselves live in the
:class:`~terramind_nyc.summary.Summary` a result holds; the result adds where they were
computed (grid), what from (provenance) and the rasters behind them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._version import __version__
from .errors import TerramindNYCError
from .jsonsafe import json_safe
from .summary import Summary

if TYPE_CHECKING:  # pragma: no cover
    from .grid import ChipGrid

__all__ = ["GEOJSON_LAYERS", "BatchItem", "Provenance", "Result", "model_label"]

#: The polygon layers of :meth:`Result.to_geojson`.
GEOJSON_LAYERS = ("buildings", "lulc")


@dataclass(frozen=True)
class Provenance:
    """Where a result came from: scenes, model, backend, and settings that shaped it."""

    imagery: dict[str, dict[str, Any]]
    """Per modality (S2L2A, S1RTC, DEM): item ids, acquisition datetimes (ISO UTC), age in days,
    chip-level cloud / nodata fractions (0..1), offset handling, collection and provider."""
    modalities_used: tuple[str, ...]
    """Modalities the model saw."""
    modalities_missing: tuple[str, ...]
    """Modalities that were unavailable (the model ran without them)."""
    checkpoint: dict[str, Any]
    """Checkpoint id, revision, model name, version, sha256 of the weights, ``kind`` (``shared-encoder`` or
    ``per-head-encoders``) and ``encoder_passes``."""
    backend: str
    """Inference backend that ran (``torch``, ``onnx`` or ``openvino``)."""
    device: str
    """Device / execution provider that ran the model."""
    precision: str
    """Numeric precision the network ran in: ``fp32``, ``bf16`` (or ``fp16`` for a float16 ONNX
    export); see the ``precision`` setting."""
    catalog: str
    """STAC provider the imagery came from."""
    date_window: tuple[str, str]
    """Searched acquisition window (ISO UTC start, end)."""
    library_version: str = __version__
    """terramind_nyc version that produced the result."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        return {
            "imagery": json_safe(self.imagery),
            "modalities_used": list(self.modalities_used),
            "modalities_missing": list(self.modalities_missing),
            "checkpoint": json_safe(self.checkpoint),
            "backend": self.backend,
            "device": self.device,
            "precision": self.precision,
            "catalog": self.catalog,
            "date_window": list(self.date_window),
            "library_version": self.library_version,
        }

    def first(self, modality: str, key: str) -> Any:
        """The first entry of ``imagery[modality][key]`` (``item_ids``, ``datetimes``), or None."""
        v = self.imagery.get(modality, {}).get(key)
        return (v[0] if v else None) if isinstance(v, (list, tuple)) else v

    @property
    def s2_acquired(self) -> str | None:
        """ISO UTC acquisition datetime of the (first) Sentinel-2 item, or None."""
        return self.first("S2L2A", "datetimes")

    @property
    def model_label(self) -> str:
        """``name@version (sha256[:12])`` of the checkpoint."""
        return model_label(self.checkpoint)


def model_label(checkpoint: Mapping[str, Any]) -> str:
    """``name@version (sha256[:12])`` of a checkpoint identity (:attr:`Provenance.checkpoint`)."""
    ck = checkpoint
    return f"{ck.get('name', ck.get('id'))}@{ck.get('version', '?')} ({str(ck.get('sha256', ''))[:12]})"


@dataclass(frozen=True)
class Result:
    """What :func:`~terramind_nyc.fetch` returns. Fractions are 0..1; the rasters stay out of :meth:`to_dict`."""

    lat: float
    """Requested latitude (degrees)."""
    lon: float
    """Requested longitude (degrees)."""
    radius_m: float | None
    """Radius of the summary circle in metres, or None for the whole window."""
    summary: Summary
    """The figures over the summary area (each is also an attribute of the result, below)."""
    class_names: tuple[str, ...]
    """Land-cover class names in model order (from the checkpoint config)."""
    class_colors: tuple[str, ...]
    """Display colours (hex) of the land-cover classes (from the checkpoint config)."""
    heads: Mapping[str, Mapping[str, Any]]
    """Per head (``lulc``, ``buildings``) from the checkpoint config: ``classes`` (names in output
    order), ``labels`` (display label per class), ``colors`` (``#rrggbb`` per class), ``threshold``
    and ``encoder`` (the encoder variant that ran for it)."""
    grid: ChipGrid
    """The window the model ran on: CRS, transform, bounds in UTM and EPSG:4326."""
    provenance: Provenance
    """Scenes, dates, model, backend."""
    timings: dict[str, float]
    """Seconds per stage (grid, imagery, model, summary, total)."""
    warnings: tuple[str, ...] = ()
    """Degradations worth knowing (missing modality, old scene, ...)."""
    cached: bool = False
    """True when this result came from the result cache."""
    probabilities: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    """Per head class probabilities (classes, H, W) float32 on ``grid``."""
    summary_area: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Bool (H, W): pixels the figures summarise."""
    valid: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Bool (H, W): pixels with valid Sentinel-2 input."""
    rgb: np.ndarray | None = field(default=None, repr=False, compare=False)
    """uint8 (3, H, W) true-colour Sentinel-2 for display, when available."""

    # --- figures (from the summary) ----------------------------------------------------
    @property
    def building_density(self) -> float:
        """Share of the summary area predicted as building (probability >= threshold), 0..1."""
        return self.summary.building_density

    @property
    def building_probability_mean(self) -> float:
        """Mean building probability over the summary area, 0..1."""
        return self.summary.building_probability_mean

    @property
    def n_building_components(self) -> int:
        """Connected groups of building pixels in the summary area."""
        return self.summary.n_building_components

    @property
    def lulc_fractions(self) -> dict[str, float]:
        """Share of the summary area per land-cover class by argmax label; sums to 1."""
        return self.summary.lulc_fractions

    @property
    def lulc_fractions_mean_prob(self) -> dict[str, float]:
        """Mean probability per land-cover class over the summary area; sums to 1."""
        return self.summary.lulc_fractions_mean_prob

    @property
    def dominant_class(self) -> str:
        """Land-cover class with the largest share."""
        return self.summary.dominant_class

    @property
    def confidence(self) -> float:
        """Mean top-1 land-cover probability over the summary area, 0..1."""
        return self.summary.confidence

    @property
    def nodata_fraction(self) -> float:
        """Share of the summary area without valid imagery, 0..1."""
        return self.summary.nodata_fraction

    @property
    def building_threshold(self) -> float:
        """Building probability threshold used (from the checkpoint config)."""
        return self.summary.building_threshold

    @property
    def percentages(self) -> dict[str, Any]:
        """The figures as percentages 0-100 rounded to 2 decimals, exactly as the client views quote
        them: ``buildings``, ``lulc`` ({class name: percent}), ``dominant``, ``nodata`` and ``s2_cloud``
        (chip-level cloud of the S2 scene); None where a figure is undefined (no valid pixel)."""
        cloud = self.provenance.imagery.get("S2L2A", {}).get("cloud_fraction")
        return {
            "buildings": _pct(self.building_density),
            "lulc": {k: _pct(v) for k, v in self.lulc_fractions.items()},
            "dominant": _pct(self.lulc_fractions.get(self.dominant_class, float("nan"))),
            "nodata": _pct(self.nodata_fraction),
            "s2_cloud": None if cloud is None else _pct(cloud),
        }

    # --- rasters -----------------------------------------------------------------------
    @property
    def lulc_map(self) -> np.ndarray:
        """uint8 (H, W) land-cover class index (argmax); 255 where input was invalid."""
        out = np.argmax(self.probabilities["lulc"], axis=0).astype(np.uint8)
        if self.valid is not None:
            out[~self.valid] = 255
        return out

    @property
    def building_probability(self) -> np.ndarray:
        """float32 (H, W) building probability."""
        return np.asarray(self.probabilities["buildings"][1], dtype=np.float32)

    @property
    def building_mask(self) -> np.ndarray:
        """bool (H, W) building decision (probability >= threshold, valid input only)."""
        m = self.building_probability >= self.building_threshold
        return m if self.valid is None else m & self.valid

    # --- views -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every figure, the grid and the provenance (no rasters)."""
        return {
            "lat": self.lat,
            "lon": self.lon,
            "radius_m": self.radius_m,
            "building_density": _num(self.building_density),
            "building_probability_mean": _num(self.building_probability_mean),
            "n_building_components": self.n_building_components,
            "building_threshold": self.building_threshold,
            "lulc_fractions": {k: _num(v) for k, v in self.lulc_fractions.items()},
            "lulc_fractions_mean_prob": {k: _num(v) for k, v in self.lulc_fractions_mean_prob.items()},
            "dominant_class": self.dominant_class,
            "confidence": _num(self.confidence),
            "nodata_fraction": _num(self.nodata_fraction),
            "n_pixels": self.summary.n_pixels,
            "class_names": list(self.class_names),
            "class_colors": list(self.class_colors),
            "percent": self.percentages,
            "heads": json_safe(self.heads),
            "grid": json_safe(self.grid.to_dict()),
            "provenance": self.provenance.to_dict(),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
            "cached": self.cached,
        }

    def to_riprap(self, *, polygons: bool = False) -> dict[str, Any]:
        """Both heads in one dict (DESIGN section 5): percentages 0-100 keyed by class name, ``ok: True``.

        Riprap's three steps take the documents of :mod:`terramind_nyc.riprap` instead (display labels, layers)."""
        s2 = self.provenance.imagery.get("S2L2A", {})
        s1 = self.provenance.imagery.get("S1RTC", {})
        pct = self.percentages
        out: dict[str, Any] = {
            "ok": True,
            "class_fractions": pct["lulc"],
            "dominant_class": self.dominant_class,
            "dominant_pct": pct["dominant"],
            "pct_buildings": pct["buildings"],
            "n_building_components": self.n_building_components,
            "class_labels": list(self.class_names),
            "bounds_4326": [float(v) for v in self.grid.bounds_4326],
            "imagery": {
                "s2_acquired_iso": self.provenance.s2_acquired,
                "s2_age_days": s2.get("age_days"),
                "s2_cloud_pct": pct["s2_cloud"],
                "s1_acquired_iso": self.provenance.first("S1RTC", "datetimes"),
                "s1_age_days": s1.get("age_days"),
                "source": self.provenance.catalog,
            },
            "model": self.provenance.model_label,
            "elapsed_s": round(float(self.timings.get("total", 0.0)), 3),
        }
        if polygons:
            out["polygons_geojson"] = self.to_geojson()
        return out

    # --- outputs -----------------------------------------------------------------------
    def _rasters(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lulc argmax, valid)``; InvalidInputError for a result without rasters."""
        from .errors import InvalidInputError

        if not self.probabilities:
            raise InvalidInputError("this result carries no probability rasters (was it built from to_dict()?)")
        valid = self.valid if self.valid is not None else np.ones(self.grid.shape, bool)
        return np.argmax(self.probabilities["lulc"], axis=0), valid

    def to_geotiff(self, path: str | Path) -> Path:
        """Write class maps and probabilities as a georeferenced, tiled GeoTIFF (COG-friendly); return ``path``.

        Bands (with descriptions): ``lulc_class`` (class index), ``building`` (0/1 decision),
        ``p_<class>`` for every land-cover class, ``p_building``; NaN where input was invalid.
        Written atomically: a failed write leaves an earlier file at ``path`` as it was. A
        folder as ``path`` is an InvalidInputError.
        """
        from .outputs import write_geotiff

        lulc, valid = self._rasters()
        layers = [("lulc_class", lulc.astype(np.float32)), ("building", self.building_mask.astype(np.float32))]
        layers += [(f"p_{name}", self.probabilities["lulc"][i]) for i, name in enumerate(self.class_names)]
        layers.append(("p_building", self.building_probability))
        ck = self.provenance.checkpoint
        tags = {"checkpoint": str(ck.get("id")), "checkpoint_sha256": str(ck.get("sha256")),
                "s2_items": ",".join(self.provenance.imagery.get("S2L2A", {}).get("item_ids", []) or []),
                "class_names": ",".join(self.class_names), "building_threshold": str(self.building_threshold)}
        return write_geotiff(path, self.grid, layers, valid=valid, tags=tags)

    def to_geojson(self, *, simplify_m: float = 10.0, layers: Sequence[str] = GEOJSON_LAYERS) -> dict[str, Any]:
        """Building and land-cover polygons in EPSG:4326 with class, display label and colour.

        One feature per building polygon and per land-cover patch of the ``layers`` asked for
        (``buildings``, ``lulc``), traced on the grid, simplified by ``simplify_m`` metres in the
        grid CRS (a finite number >= 0; 0 keeps the pixel outlines; anything else is an
        InvalidInputError), then reprojected. Properties: ``layer``, ``class``, ``class_idx``,
        ``class_label``, ``color`` and ``fill_color`` (the same, from the checkpoint config), ``area_m2``.
        """
        from .errors import InvalidInputError
        from .outputs import MaskLayer, polygons_geojson

        if not isinstance(layers, (list, tuple)) or not all(x in GEOJSON_LAYERS for x in layers):
            raise InvalidInputError(f"layers must be a list or tuple of names from {GEOJSON_LAYERS}, got {layers!r}")
        lulc, valid = self._rasters()
        masks: list[MaskLayer] = []
        if "buildings" in layers:
            b = self.heads["buildings"]
            masks.append(MaskLayer("buildings", b["classes"][1], b["colors"][1], self.building_mask & valid,
                                   label=b["labels"][1], index=1))
        if "lulc" in layers:
            h = self.heads["lulc"]
            masks += [MaskLayer("lulc", name, h["colors"][i], (lulc == i) & valid, label=h["labels"][i], index=i)
                      for i, name in enumerate(h["classes"])]
        return polygons_geojson(self.grid, masks, simplify_m=simplify_m,
                                properties={"checkpoint": self.provenance.checkpoint.get("id"),
                                            "s2_acquired": self.provenance.s2_acquired})

    def write_geojson(self, path: str | Path, *, simplify_m: float = 10.0) -> Path:
        """Write :meth:`to_geojson` to ``path`` as strict JSON, atomically; return ``path``."""
        from .outputs import write_geojson

        return write_geojson(path, self.to_geojson(simplify_m=simplify_m))

    def quicklook(self, path: str | Path) -> Path:
        """PNG: true colour, land-cover map with legend, building probability, summary outline.

        Written at exactly ``path`` (atomically) and ``path`` is returned: ``out/quick`` gives a
        PNG named ``quick``; a suffix naming another image format (``.jpg``, ``.pdf``, ``.svg``)
        selects that format.
        """
        from .outputs import quicklook

        self._rasters()
        ck = self.provenance.checkpoint
        date = (self.provenance.s2_acquired or "?")[:10]
        title = (f"({self.lat:.4f}, {self.lon:.4f})  S2 {date}  model {ck.get('name', ck.get('id'))} "
                 f"{ck.get('version', '')}")
        return quicklook(path, self.grid, rgb=self.rgb, lulc_map=self.lulc_map, class_names=self.class_names,
                         class_colors=self.class_colors, class_fractions=self.lulc_fractions,
                         building_probability=self.building_probability, building_density=self.building_density,
                         summary_area=self.summary_area, title=title)


@dataclass(frozen=True)
class BatchItem:
    """One point of :func:`~terramind_nyc.fetch_many`: its result or its error, in input order."""

    index: int
    """Position in the input."""
    lat: float
    """Latitude as given (NaN when it was not a number)."""
    lon: float
    """Longitude as given (NaN when it was not a number)."""
    result: Result | None
    """The result, or None when this point failed."""
    error: TerramindNYCError | None = None
    """The library error that failed this point, or None."""

    @property
    def ok(self) -> bool:
        """Whether this point has a result."""
        return self.result is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: index, coordinates, ``ok``, and the result's dict or the error."""
        d: dict[str, Any] = {"index": self.index, "lat": _num(self.lat), "lon": _num(self.lon), "ok": self.ok}
        if self.result is not None:
            d["result"] = self.result.to_dict()
        if self.error is not None:
            d["error"] = str(self.error)
            d["error_type"] = type(self.error).__name__
        return d


def _num(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _pct(v: float | None) -> float | None:
    n = _num(v)
    return None if n is None else round(100.0 * n, 2)

