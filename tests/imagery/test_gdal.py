"""imagery/_gdal.py: scoped GDAL options, and GDAL's per-URL HTTP cache cleared and forgotten."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import rasterio
from imagery.helpers import fresh, read_scenario

from terramind_nyc.errors import ChipError
from terramind_nyc.imagery._gdal import gdal_options
from terramind_nyc.settings import Settings


def test_gdal_options() -> None:
    o = gdal_options(Settings(http_timeout_s=2.5, http_retries=4, http_backoff_s=0.25))
    assert o["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR" and ".tif" in o["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"]
    assert o["GDAL_HTTP_TIMEOUT"] == "3" and o["GDAL_HTTP_MAX_RETRY"] == "4" and o["GDAL_HTTP_RETRY_DELAY"] == "0.25"
    assert {"429", "500", "502", "503", "504"} <= set(o["GDAL_HTTP_RETRY_CODES"].split(","))
    import os

    assert "GDAL_HTTP_TIMEOUT" not in os.environ  # scoped in rasterio.Env, never the process environment


def test_clear_gdal_http_cache(fixture_catalog: Any, local_settings: Settings) -> None:
    """A URL GDAL has read is served from its cache (no request) until the cache is cleared."""
    from terramind_nyc.imagery._gdal import clear_gdal_http_cache

    fx = fixture_catalog
    href = fx.catalog.item(fx.catalog.expected["no_dem"]["s2_ids"][0])["assets"]["B03"]["href"]
    token = uuid.uuid4().hex
    href += f"?t={token}"

    def read() -> int:
        # count only this URL's requests: reads abandoned by earlier tests may still be running
        fx.cog_server.reset()
        with rasterio.Env(**gdal_options(local_settings)), rasterio.open(href) as ds:
            ds.read(1)
        return sum(1 for r in fx.cog_server.requests if token in r.query)

    assert read() > 0 and read() == 0
    assert clear_gdal_http_cache() is True
    assert read() > 0


def test_cog_404_is_forgotten_once_the_server_recovers(fixture_catalog: Any, local_settings: Settings) -> None:
    """GDAL caches a failed open per URL; the reader clears it, so a retry asks the server again."""
    fx = fixture_catalog
    cat = fresh(local_settings)
    fx.cog_server.faults.fail(404, "*/sentinel-2-l2a/*/B03.tif", times=None)
    with pytest.raises(ChipError):
        read_scenario(fx, "clear", local_settings, catalog=cat)
    fx.cog_server.faults.clear()
    chip = read_scenario(fx, "clear", local_settings, catalog=cat)  # the same URLs
    assert chip.masks["S2L2A"].all()
