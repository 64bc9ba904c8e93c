"""imagery/harmonise.py: S2 DN minus the baseline offset (clipped at 0), S1 in dB."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import rasterio
from imagery.helpers import quiet, read_scenario, source_on_grid
from testing.helpers import local_path

from terramind_nyc.imagery.harmonise import s2_offset
from terramind_nyc.sensors import S1_BANDS, S2_BANDS
from terramind_nyc.settings import Settings
from terramind_nyc.testing import S1_NODATA, S2_RESOLUTION


def test_s2_values_equal_the_source_minus_the_offset(fixture_catalog: Any, local_settings: Settings) -> None:
    """10 m bands are the source DN exactly (offset removed, clipped at 0); 20 and 60 m bands
    are bilinear-interpolated, so they stay within the range of their source neighbourhood."""
    fx = fixture_catalog
    chip = read_scenario(fx, "clear", local_settings)
    iid = fx.catalog.expected["clear"]["s2_ids"][0]
    g = chip.grid
    for i, b in enumerate(S2_BANDS):
        if S2_RESOLUTION[b] == 10:
            src = source_on_grid(fx, iid, b, g).astype(np.float32)
            np.testing.assert_array_equal(chip.arrays["S2L2A"][i], np.maximum(src - 1000, 0), err_msg=b)
        else:
            path = local_path(fx.catalog, fx.catalog.item(iid)["assets"][b]["href"])
            with rasterio.open(path) as ds:
                a = ds.read(1).astype(np.float32) - 1000
            arr = chip.arrays["S2L2A"][i]
            assert a.min() - 1e-3 <= arr.min() and arr.max() <= a.max() + 1e-3, b


def test_offset_follows_the_processing_baseline(fixture_catalog: Any, local_settings: Settings) -> None:
    """The clear scenario has older 04.00 and 02.14 scenes: 04.00 loses 1000 DN, 02.14 nothing."""
    fx = fixture_catalog
    facts = fx.catalog.item_facts
    for when, baseline, offset in ((("2022-04-01", "2022-04-30"), "04.00", 1000),
                                   (("2021-08-01", "2021-08-31"), "02.14", 0)):
        chip = quiet(read_scenario, fx, "clear", local_settings, when=when)
        p = chip.provenance["S2L2A"]
        (iid,) = p.item_ids
        assert facts[iid]["baseline"] == baseline and p.processing_baselines == (baseline,)
        assert p.offsets_dn == (offset,) and p.offset_removed is (offset > 0)
        src = source_on_grid(fx, iid, "B04", chip.grid).astype(np.float32)
        np.testing.assert_array_equal(chip.arrays["S2L2A"][S2_BANDS.index("B04")], np.maximum(src - offset, 0))


def test_s2_offset_rule() -> None:
    import pystac

    def item(b: str | None, dt: str = "2024-07-01T00:00:00Z") -> pystac.Item:
        props: dict[str, Any] = {"datetime": dt}
        if b is not None:
            props["s2:processing_baseline"] = b
        return pystac.Item.from_dict({"type": "Feature", "stac_version": "1.0.0", "id": "x", "geometry": None,
                                      "properties": props, "links": [], "assets": {}})

    assert [s2_offset(item(b)) for b in ("02.14", "03.01", "04.00", "05.10", "05.11")] == [0, 0, 1000, 1000, 1000]
    # baseline decides, not the date: an old scene reprocessed to 05.00 carries the offset
    assert s2_offset(item("05.00", "2018-05-01T00:00:00Z")) == 1000
    assert s2_offset(item("02.12", "2023-05-01T00:00:00Z")) == 0
    # no baseline at all: the date rule, with a warning in the log
    assert s2_offset(item(None, "2021-01-01T00:00:00Z")) == 0 and s2_offset(item(None)) == 1000


def test_s1_is_db_of_the_linear_source(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    chip = read_scenario(fx, "clear", local_settings)
    iid = fx.catalog.expected["clear"]["s1_id"]
    for i, pol in enumerate(S1_BANDS):
        lin = source_on_grid(fx, iid, pol, chip.grid).astype(np.float64)
        assert (lin != S1_NODATA).all()
        db = 10 * np.log10(np.maximum(lin, 1e-6))
        assert np.abs(chip.arrays["S1RTC"][i] - db).max() < 1e-4, pol
    assert chip.provenance["S1RTC"].units.startswith("dB")
    assert chip.provenance["S1RTC"].time_offset_days == pytest.approx(2.29, abs=0.01)
    assert -30 < float(np.median(chip.arrays["S1RTC"][1])) < 0
