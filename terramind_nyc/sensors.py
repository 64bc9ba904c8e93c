"""Facts about the sensors, written once: band orders, SCL classes, units and the S2 offset rule.

Everything that reads, standardises, generates or checks imagery (the reader, the model
config's defaults, the fixture generator, training) takes these from here (DESIGN section 2).
Nothing in this module does I/O or imports anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "DEM_BANDS",
    "MODALITIES",
    "MODALITY_BANDS",
    "READER_S2_OFFSET",
    "S1_BANDS",
    "S1_NODATA",
    "S2_BANDS",
    "S2_FIRST_DATE",
    "S2_OFFSET_DN",
    "S2_OFFSET_FROM",
    "S2_RESOLUTION",
    "SCL_CLOUD",
    "SCL_NODATA",
    "UNITS",
    "S2OffsetRule",
    "baseline_has_offset",
    "s2_offset_dn",
]

#: Sentinel-2 L2A bands in the order TerraMind takes them (DESIGN section 2; no B10).
S2_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
#: Sentinel-1 RTC polarisations, in order.
S1_BANDS: tuple[str, ...] = ("vv", "vh")
#: Copernicus DEM asset.
DEM_BANDS: tuple[str, ...] = ("data",)
#: Native pixel size (m) of each Sentinel-2 L2A asset.
S2_RESOLUTION: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
    "B8A": 20, "B09": 60, "B11": 20, "B12": 20, "SCL": 20,
}
#: Modalities a chip can hold, in the model's order.
MODALITIES: tuple[str, ...] = ("S2L2A", "S1RTC", "DEM")
#: Bands of each modality, in order.
MODALITY_BANDS: dict[str, tuple[str, ...]] = {"S2L2A": S2_BANDS, "S1RTC": S1_BANDS, "DEM": DEM_BANDS}
#: Units of each modality as the reader returns them.
UNITS: dict[str, str] = {
    "S2L2A": "DN = surface reflectance x 10000, offset of baseline >= 04.00 removed",
    "S1RTC": "dB (10 log10 of linear gamma0 power)",
    "DEM": "metres above the EGM2008 geoid",
}

#: SCL classes counted as cloud: cloud shadow, cloud medium, cloud high, thin cirrus.
SCL_CLOUD: tuple[int, ...] = (3, 8, 9, 10)
#: SCL classes that are not data: no data, saturated or defective.
SCL_NODATA: tuple[int, ...] = (0, 1)
#: Sentinel-1 RTC nodata value in the Planetary Computer COGs.
S1_NODATA = -32768.0
#: First Sentinel-2 L2A-capable acquisitions (Sentinel-2A launch); earlier windows hold nothing.
S2_FIRST_DATE = datetime(2015, 6, 23, tzinfo=UTC).date()

#: DN added to S2 L2A from processing baseline 04.00 on (BOA_ADD_OFFSET = -1000).
S2_OFFSET_DN = 1000
#: Date from which products carry the offset, used only when an item has no baseline.
S2_OFFSET_FROM = datetime(2022, 1, 25, tzinfo=UTC)


@dataclass(frozen=True)
class S2OffsetRule:
    """How Sentinel-2 L2A DN are harmonised before standardisation (training and inference alike)."""

    offset_dn: int = S2_OFFSET_DN
    """DN subtracted from items that carry the processing-baseline offset (then clipped at ``clip_min``)."""
    from_baseline: str = "04.00"
    """Items whose ``s2:processing_baseline`` is at least this carry the offset (BOA_ADD_OFFSET)."""
    clip_min: float = 0.0
    """Lower clip after subtracting, in DN."""

    def same_as(self, other: S2OffsetRule) -> bool:
        """Whether two rules harmonise the same way (``"04.00"`` and ``"4.0"`` are one baseline)."""
        try:
            return (int(self.offset_dn), float(self.from_baseline), float(self.clip_min)) == (
                int(other.offset_dn), float(other.from_baseline), float(other.clip_min))
        except (TypeError, ValueError):
            return False

    def describe(self) -> str:
        return f"subtract {self.offset_dn} DN from baseline {self.from_baseline}, clip at {self.clip_min:g}"


#: The rule this library's reader applies.
READER_S2_OFFSET = S2OffsetRule()


def baseline_has_offset(baseline: str | None, rule: S2OffsetRule = READER_S2_OFFSET) -> bool | None:
    """Whether a processing baseline carries the offset; None when it is missing or unparseable."""
    if baseline is None:
        return None
    try:
        return float(baseline) >= float(rule.from_baseline)
    except (TypeError, ValueError):
        return None


def s2_offset_dn(baseline: str | None, acquired: datetime | None, rule: S2OffsetRule = READER_S2_OFFSET) -> int:
    """DN to subtract from one S2 L2A item: decided by its baseline, else by its date (``S2_OFFSET_FROM``)."""
    has = baseline_has_offset(baseline, rule)
    if has is None:
        has = acquired is not None and acquired >= S2_OFFSET_FROM
    return rule.offset_dn if has else 0
