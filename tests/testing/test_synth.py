"""The fixture generator's own computations (the test oracle): the S2 offset rule and chip fractions."""

from __future__ import annotations

import numpy as np
import pytest

from terramind_nyc import sensors
from terramind_nyc.testing import S2_OFFSET, baseline_has_offset, chip_fractions, fixture_elevation


@pytest.mark.parametrize(("baseline", "has"), [
    ("02.14", False), ("03.01", False), ("04.00", True), ("4.0", True), ("05.10", True),
    (None, False), ("", False), ("N/A", False),
])
def test_baseline_has_offset_is_a_bool(baseline: str | None, has: bool) -> None:
    assert baseline_has_offset(baseline) is has
    if sensors.baseline_has_offset(baseline) is not None:  # agrees with the library's rule where it decides
        assert sensors.baseline_has_offset(baseline) is has
    assert S2_OFFSET == sensors.S2_OFFSET_DN == 1000


def test_chip_fractions_count_cloud_over_valid_and_nodata_over_all() -> None:
    scl = np.array([[0, 1, 3, 4], [8, 9, 10, 5], [6, 7, 2, 11]], dtype=np.uint8)
    cloud, nodata = chip_fractions(scl)
    assert cloud == pytest.approx(4 / 10) and nodata == pytest.approx(2 / 12)
    assert chip_fractions(np.zeros((3, 3), dtype=np.uint8)) == (1.0, 1.0)  # no valid pixel: all cloud
    assert chip_fractions(np.full((2, 2), 4, dtype=np.uint8)) == (0.0, 0.0)


def test_fixture_elevation_is_smooth_nyc_terrain() -> None:
    lon, lat = np.meshgrid(np.linspace(-74.26, -73.70, 57), np.linspace(40.49, 40.92, 44))
    z = fixture_elevation(lon, lat)
    assert z.shape == lon.shape and z.min() >= 0.0 and z.max() < 200.0
    assert float(fixture_elevation(lon[5, 7], lat[5, 7])) == pytest.approx(z[5, 7])  # scalars as arrays
    assert (z > 0).mean() > 0.5  # mostly land
