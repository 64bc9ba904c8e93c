"""The chip: co-registered imagery on one grid, its masks and where each modality came from.

    chip = read_chip(chip_grid(40.7484, -73.9857))      # terramind_nyc.imagery.reader
    chip.arrays["S2L2A"].shape      # (12, 224, 224) float32, harmonised DN
    chip.masks["S2L2A"].mean()      # valid fraction
    chip.metadata()                 # JSON-safe provenance, no URLs

Invalid pixels are NaN in ``arrays`` and False in ``masks``. A data model only: no I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..sensors import MODALITIES, MODALITY_BANDS, S2_BANDS

if TYPE_CHECKING:  # pragma: no cover
    from ..grid import ChipGrid

__all__ = ["Chip", "ModalityProvenance", "true_colour"]


@dataclass(frozen=True)
class ModalityProvenance:
    """Where one modality of a chip came from. JSON-safe via :meth:`to_dict`; no URLs or tokens."""

    modality: str
    """``"S2L2A"``, ``"S1RTC"`` or ``"DEM"``."""
    collection: str
    """STAC collection id."""
    provider: str
    """Catalog provider: ``"planetary-computer"``, ``"stac-api"`` or ``"local"``."""
    catalog: str
    """Token-free label of the catalog (host, or file name for a local catalog)."""
    item_ids: tuple[str, ...]
    """STAC item ids, in mosaic order (first valid pixel wins)."""
    datetimes: tuple[str, ...]
    """Acquisition datetime of each item, ISO 8601 UTC (``...Z``)."""
    bands: tuple[str, ...]
    """Asset keys read, in array order."""
    units: str
    """Units of the values in ``Chip.arrays``."""
    source_crs: tuple[str | None, ...]
    """CRS of each item from ``proj:code`` or ``proj:epsg`` (None when the item has neither)."""
    resampling: str
    """Resampling onto the grid (``"bilinear"``; SCL always ``"nearest"``)."""
    nodata_fraction: float
    """Share of the chip's pixels without valid data for this modality, 0..1."""
    processing_baselines: tuple[str | None, ...] = ()
    """S2: ``s2:processing_baseline`` of each item."""
    offsets_dn: tuple[int, ...] = ()
    """S2: DN subtracted from each item (1000 for baseline >= 04.00, else 0), then clipped at 0."""
    offset_removed: bool | None = None
    """S2: whether an offset was removed from any item; None for other modalities."""
    cloud_fraction: float | None = None
    """S2: chip-level cloud fraction from SCL (classes 3, 8, 9, 10 over valid pixels), 0..1."""
    candidates_checked: int | None = None
    """S2: candidate acquisitions judged on the chip before this one was chosen (itself included)."""
    time_offset_days: float | None = None
    """S1: acquisition time minus the S2 acquisition time, days."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Chip:
    """Co-registered imagery on one chip grid, with masks and provenance."""

    grid: ChipGrid
    """The pixel grid every array is on."""
    arrays: Mapping[str, np.ndarray]
    """Modality -> float32 ``(bands, H, W)``: ``"S2L2A"`` (12, :data:`S2_BANDS` order) harmonised DN
    (reflectance x 10000, offset removed where baseline >= 04.00, clipped at 0); ``"S1RTC"`` (2: vv,
    vh) backscatter in dB; ``"DEM"`` (1) elevation in metres. NaN where the mask is False. Absent
    modalities are absent."""
    masks: Mapping[str, np.ndarray]
    """Modality -> bool ``(H, W)``, True where every band is valid (S2 also needs SCL not 0/1)."""
    scl: np.ndarray | None
    """uint8 ``(H, W)`` Sentinel-2 scene classification on the grid (0 = no data)."""
    provenance: Mapping[str, ModalityProvenance]
    """Modality -> where it came from (present modalities only)."""
    missing: tuple[str, ...] = ()
    """Optional modalities that could not be provided (``"S1RTC"``, ``"DEM"``)."""
    notes: Mapping[str, str] = field(default_factory=dict)
    """Missing modality -> why (no acquisition within the window, read failed, deadline, ...)."""
    transient: tuple[str, ...] = ()
    """The missing modalities whose absence came from a failure (a search or read that raised, the
    deadline), not from the data: a chip with any is never cached, so the next request tries again."""
    window: tuple[str, str] = ("", "")
    """The searched date window, ISO UTC ``(start, end)``."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds spent per stage: ``search``, ``choose``, ``read``, ``total``."""

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays, masks and SCL."""
        n = sum(int(a.nbytes) for a in self.arrays.values()) + sum(int(m.nbytes) for m in self.masks.values())
        return n + (int(self.scl.nbytes) if self.scl is not None else 0)

    @property
    def provider(self) -> str:
        """Label of the catalog the imagery came from (S2's; else the first modality's; else "")."""
        p = self.provenance.get("S2L2A") or next(iter(self.provenance.values()), None)
        return p.catalog if p is not None else ""

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, meta)``: plain numpy arrays and JSON-safe metadata that :meth:`from_arrays`
        turns back into this chip (the on-disk chip cache stores them as .npz + .json, no pickle)."""
        arrays = {f"array_{m}": np.asarray(a) for m, a in self.arrays.items()}
        arrays.update({f"mask_{m}": np.asarray(v) for m, v in self.masks.items()})
        if self.scl is not None:
            arrays["scl"] = np.asarray(self.scl)
        meta = {"format": 1, "grid": self.grid.to_dict(),
                "provenance": {m: dataclasses.asdict(p) for m, p in self.provenance.items()},
                "missing": list(self.missing), "notes": dict(self.notes), "transient": list(self.transient),
                "window": list(self.window), "timings": dict(self.timings)}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Chip:
        """Rebuild a chip from :meth:`to_arrays` output. Raises ValueError when it does not fit."""
        if meta.get("format") != 1:
            raise ValueError(f"unknown chip format {meta.get('format')!r}")
        tuples = {f.name for f in dataclasses.fields(ModalityProvenance) if str(f.type).startswith("tuple")}
        fields: dict[str, dict[str, Any]] = {
            m: {k: tuple(v) if k in tuples and v is not None else v for k, v in d.items()}
            for m, d in meta["provenance"].items()}
        prov = {m: ModalityProvenance(**f) for m, f in fields.items()}
        from ..grid import ChipGrid

        return cls(
            grid=ChipGrid.from_dict(meta["grid"]),
            arrays={k[len("array_"):]: np.asarray(v, np.float32) for k, v in arrays.items() if k.startswith("array_")},
            masks={k[len("mask_"):]: np.asarray(v, bool) for k, v in arrays.items() if k.startswith("mask_")},
            scl=np.asarray(arrays["scl"]) if "scl" in arrays else None,
            provenance=prov, missing=tuple(meta.get("missing", ())), notes=dict(meta.get("notes", {})),
            transient=tuple(meta.get("transient", ())), window=tuple(meta.get("window", ("", ""))),  # type: ignore[arg-type]
            timings=dict(meta.get("timings", {})),
        )

    def valid_fraction(self, modality: str) -> float:
        """Share of valid pixels of ``modality`` (0 when absent)."""
        m = self.masks.get(modality)
        return float(m.mean()) if m is not None and m.size else 0.0

    def metadata(self) -> dict[str, Any]:
        """JSON-safe description: grid, window, modalities, bands, provenance, missing + why."""
        return {
            "grid": self.grid.to_dict(),
            "window": list(self.window),
            "modalities": [m for m in MODALITIES if m in self.arrays],
            "bands": {m: list(b) for m, b in MODALITY_BANDS.items() if m in self.arrays},
            "valid_fraction": {m: round(self.valid_fraction(m), 6) for m in self.arrays},
            "provenance": {m: p.to_dict() for m, p in self.provenance.items()},
            "missing": list(self.missing),
            "notes": dict(self.notes),
            "transient": list(self.transient),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
        }

    def rgb(self, max_dn: float = 3000.0) -> np.ndarray | None:
        """True-colour uint8 ``(3, H, W)`` (B04, B03, B02) scaled 0..``max_dn`` DN; 0 where invalid."""
        s2 = self.arrays.get("S2L2A")
        return None if s2 is None else true_colour(s2, self.masks["S2L2A"], max_dn)


def true_colour(s2: np.ndarray, valid: np.ndarray, max_dn: float = 3000.0) -> np.ndarray:
    """True-colour uint8 ``(3, H, W)`` from harmonised S2 DN ``(12, H, W)`` in :data:`S2_BANDS`
    order, scaled 0..``max_dn`` DN; 0 where ``valid`` is False."""
    idx = [S2_BANDS.index(b) for b in ("B04", "B03", "B02")]
    rgb = np.nan_to_num(s2[idx], nan=0.0)
    out = np.clip(rgb / max_dn * 255.0, 0, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return out
