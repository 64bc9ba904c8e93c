"""The real TerraMind tile served as COGs + items: values survive the round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling
from testing.helpers import GDAL_ENV, grid_read, read_via_gdal

from terramind_nyc.testing import S2_BANDS, RealChip


def test_real_chip_serves_the_source_values(real_chip: RealChip) -> None:
    rc = real_chip
    assert rc.grid.crs == "EPSG:32718" and rc.grid.shape == (224, 224)
    items = {it["collection"]: it for it in rc.items()}
    s2 = items["sentinel-2-l2a"]
    assert s2["properties"]["s2:processing_baseline"] == "04.00"
    assert rc.s2_dn.min() >= 969  # the offset is in the source
    for i, b in enumerate(S2_BANDS):
        a = read_via_gdal(s2["assets"][b]["href"])
        assert np.array_equal(a, rc.s2_dn[i]), b
    with rasterio.Env(**GDAL_ENV), rasterio.open(s2["assets"]["B02"]["href"]) as ds:
        assert tuple(ds.bounds) == pytest.approx(rc.grid.bounds)
    for i, pol in enumerate(("vv", "vh")):
        lin = read_via_gdal(items["sentinel-1-rtc"]["assets"][pol]["href"])
        assert lin.dtype == np.float32 and (lin > 0).all()
        assert np.abs(10 * np.log10(lin.astype(np.float64)) - rc.s1_db[i]).max() < 1e-4
    dem = items["cop-dem-glo-30"]
    with rasterio.Env(**GDAL_ENV), rasterio.open(dem["assets"]["data"]["href"]) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.res == pytest.approx((1 / 3600, 1 / 3600))
    back = grid_read(dem["assets"]["data"]["href"], rc.grid, resampling=Resampling.bilinear)
    assert np.abs(back - rc.dem).max() <= rc.dem_roundtrip_error_m + 1e-3
    assert 0 < rc.dem_roundtrip_error_m < 15


def test_real_chip_settings(real_chip: RealChip) -> None:
    s = real_chip.settings()
    assert s.crs == "EPSG:32718" and s.domain_check is False and s.catalog_provider == "local"
    assert Path(s.catalog_path or "") == real_chip.items_path
    lat, _lon = real_chip.center
    assert -39 < lat < -38.7
