"""imagery/warp.py: one asset onto the grid (aligned window or WarpedVRT), and its failures as ChipError."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from imagery.helpers import SECRET, fresh, library_log, read_scenario, settle

from terramind_nyc.errors import ChipError
from terramind_nyc.imagery._gdal import gdal_options
from terramind_nyc.imagery.urls import redact
from terramind_nyc.imagery.warp import classify_failure
from terramind_nyc.sensors import DEM_BANDS, S1_BANDS
from terramind_nyc.settings import Settings
from terramind_nyc.testing import fixture_elevation


def test_dem_is_read_from_the_4326_item(fixture_catalog: Any, local_settings: Settings) -> None:
    from pyproj import Transformer

    fx = fixture_catalog
    chip = read_scenario(fx, "clear", local_settings)
    g = chip.grid
    assert chip.provenance["DEM"].source_crs == ("EPSG:4326",)
    rr, cc = np.mgrid[0:g.height, 0:g.width]
    lon, lat = Transformer.from_crs(g.crs, "EPSG:4326", always_xy=True).transform(
        g.bounds[0] + (cc + 0.5) * g.resolution, g.bounds[3] - (rr + 0.5) * g.resolution)
    assert np.abs(chip.arrays["DEM"][0] - fixture_elevation(lon, lat)).max() < 0.2


def test_cog_404_is_a_chip_error_naming_asset_and_host(fixture_catalog: Any, local_settings: Settings,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.fail(404, "*/sentinel-2-l2a/*/B08.tif", times=None)
    with caplog.at_level(logging.DEBUG), pytest.raises(ChipError) as info:
        read_scenario(fx, "clear", local_settings)
    msg = str(info.value)
    assert "asset 'B08'" in msg and fx.catalog.expected["clear"]["s2_ids"][0] in msg
    assert "127.0.0.1" in msg and "404" in msg and "missing on the server" in msg
    assert info.value.kind == "missing" and info.value.status == 404  # callers never match the message
    assert SECRET not in msg and SECRET not in library_log(caplog)


def test_truncated_cog_is_a_chip_error(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.truncate("*/sentinel-2-l2a/*/B02.tif", nbytes=3000)
    with pytest.raises(ChipError, match=r"asset 'B02'.* failed") as info:
        read_scenario(fx, "clear", local_settings)
    assert SECRET not in str(info.value)
    assert info.value.kind == "truncated" and info.value.status is None
    fx.cog_server.faults.clear()
    fx.cog_server.faults.truncate("*/sentinel-2-l2a/*/B02.tif", nbytes=20000, short_file=True)
    with pytest.raises(ChipError, match=r"asset 'B02'") as info:
        read_scenario(fx, "clear", local_settings)
    assert info.value.kind == "truncated"


def test_missing_asset_key_is_a_chip_error(fixture_catalog: Any, tmp_path: Path) -> None:
    fx = fixture_catalog
    items = fx.catalog.items()
    target = fx.catalog.expected["clear"]["s2_ids"][0]
    for it in items:
        if it["id"] == target:
            del it["assets"]["B8A"]
    p = tmp_path / "items.json"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    s = Settings(catalog_provider="local", catalog_path=str(p), signer="none", cache_enabled=False)
    with pytest.raises(ChipError, match=rf"S2L2A item {target} has no asset 'B8A'"):
        read_scenario(fx, "clear", s)


def test_cog_transient_errors_are_retried(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    # the faults match paths only: a read abandoned by an earlier test (the deadline tests of
    # test_reader.py run first) must not take one of the two 503s
    settle(fx.cog_server)
    fx.cog_server.faults.fail(503, "*/sentinel-2-l2a/*/B11.tif", times=2)
    fx.cog_server.faults.fail(429, "*/sentinel-1-rtc/*/vv.tif", times=1, retry_after=0)
    token = uuid.uuid4().hex
    chip = read_scenario(fx, "clear", local_settings, catalog=fresh(local_settings, token))
    assert chip.missing == () and chip.masks["S2L2A"].all()
    statuses = [r.status for r in fx.cog_server.requests if r.path.endswith("/B11.tif") and token in r.query]
    assert statuses[:2] == [503, 503] and statuses[-1] in (200, 206)


def test_cog_403_on_a_signed_asset_is_denied_with_signer_advice(fixture_catalog: Any, local_settings: Settings) -> None:
    fx = fixture_catalog
    fx.cog_server.faults.fail(403, "*/sentinel-2-l2a/*/B03.tif", times=None)
    with pytest.raises(ChipError) as info:
        read_scenario(fx, "clear", local_settings)  # a fresh() catalog: every URL carries a token
    msg = str(info.value)
    assert info.value.kind == "denied" and info.value.status == 403
    assert "asset 'B03'" in msg and "127.0.0.1" in msg and "HTTP 403" in msg
    assert "Settings.signer" in msg and "PC_SDK_SUBSCRIPTION_KEY" in msg and "expires" in msg
    assert SECRET not in msg


_SIGNED = "https://acct.blob.core.windows.net/c/S2B_T18TWL/B04.tif"
_TOKEN = "st=2024-07-01T00%3A00Z&se=2024-07-02T00%3A00Z&sp=rl&sv=2024&sr=c&sig=SECRETSIG%2B"
#: GDAL / curl / requests wordings of an HTTP failure; ``{url}`` is the asset URL.
_FORMS = ("HTTP response code: {status}", "HTTP error code : {status}", "HTTP response code on {url}: {status}",
          "'/vsicurl/{url}': HTTP {status}", "{status} Client Error: for url: {url}")


@pytest.mark.parametrize("status, kind, advice", [
    (401, "denied", ("valid signature or token", "Settings.signer", "PC_SDK_SUBSCRIPTION_KEY", "search and sign")),
    (403, "denied", ("valid signature or token", "Settings.signer", "PC_SDK_SUBSCRIPTION_KEY", "expires")),
    (404, "missing", ("missing on the server", "catalog may be stale", "search again")),
    (410, "missing", ("missing on the server", "search again")),
    (429, "server", ("rate limiting", "try again later", "`http_retries`", "`http_backoff_s`")),
    (500, "server", ("after 3 retries", "try again later", "`http_retries`", "`http_timeout_s`")),
    (503, "server", ("after 3 retries", "try again later", "`http_retries`")),
])
@pytest.mark.parametrize("form", _FORMS)
@pytest.mark.parametrize("query", ["", f"?{_TOKEN}"])
def test_http_failures_are_classified_with_advice(status: int, kind: str, advice: tuple[str, ...], form: str,
                                                  query: str) -> None:
    if form.startswith("{status} Client Error") and status >= 500:
        form = "{status} Server Error: for url: {url}"
    msg = form.format(status=status, url=_SIGNED + query)
    for text in (msg, redact(msg)):  # read_asset passes the redacted message; the raw one works too
        got_kind, got_status, hint = classify_failure(text, retries=3)
        assert (got_kind, got_status) == (kind, status), text
        assert f"HTTP {status}" in hint and all(a in hint for a in advice), hint
        assert "SECRET" not in hint and "sig=" not in hint and "blob.core" not in hint  # advice, never the URL


@pytest.mark.parametrize("msg, kind, status", [
    ("RasterioIOError: HTTP response code: 404", "missing", 404),
    ("'/data/x.tif' does not exist in the file system", "missing", None),
    ("No such file or directory", "missing", None),
    ("Read failed. See previous exception for details.", "truncated", None),
    ("TIFFReadEncodedTile() failed", "truncated", None),
    ("the file is not georeferenced (10 x 10 px, no CRS or transform); it is probably truncated", "truncated", None),
    ("HTTP response code: 503", "server", 503),
    ("HTTP error code: 429", "server", 429),
    ("Connection timed out after 20001 milliseconds", "server", None),
    ("HTTP response code: 403", "denied", 403),
    ("<Code>AuthenticationFailed</Code> Signature not valid in the specified time frame", "denied", None),
    ("HTTP response code: 400", "other", 400),
    ("something else", "other", None),
    # digits in a URL are no status: port 40404, a 500 in the path, a 503 in the query
    ("HTTP response code on http://127.0.0.1:40404/c/500/B04.tif?x=503: 403", "denied", 403),
    ("reading http://127.0.0.1:40404/c/B04.tif failed: Read failed.", "truncated", None),
    ("HTTP/1.1 503 Service Unavailable", "server", 503),
])
def test_read_failures_are_classified(msg: str, kind: str, status: int | None) -> None:
    got_kind, got_status, hint = classify_failure(msg, retries=3)
    assert (got_kind, got_status) == (kind, status)
    assert bool(hint) is (kind != "other")
    if kind == "server":
        assert "after 3 retries" in hint


@pytest.mark.slow
def test_reader_matches_odc_stac(fixture_catalog: Any, local_settings: Settings) -> None:
    """The hand-written reader gives odc-stac's pixels: bit for bit for S2 (10/20/60 m), SCL and S1,
    within a centimetre for the 4326 DEM (reprojected)."""
    odc_stac = pytest.importorskip("odc.stac")
    import pystac

    from terramind_nyc.imagery.warp import read_asset

    fx = fixture_catalog
    exp = fx.catalog.expected["tile_edge"]
    g = fx.catalog.grid("tile_edge")
    for iid, keys, modality in [(exp["s2_ids"][0], ("B02", "B05", "B09", "SCL"), "S2L2A"),
                                (exp["s2_ids"][1], ("B04", "B8A"), "S2L2A"),
                                (exp["s1_id"], S1_BANDS, "S1RTC"),
                                (exp["dem_ids"][1], DEM_BANDS, "DEM")]:
        item = pystac.Item.from_dict(fx.catalog.item(iid))
        for key in keys:
            scl = key == "SCL"
            mine = read_asset(item, key, g, modality=modality, resampling="nearest" if scl else "bilinear",
                              settings=local_settings, dtype="uint8" if scl else "float32")
            with rasterio.Env(**gdal_options(local_settings)):
                ds = odc_stac.load([item], bands=[key], geobox=g.geobox, resampling="nearest" if scl else "bilinear",
                                   dtype="uint8" if scl else "float32", groupby="id")
            theirs = ds[key].values[0]
            if scl:
                np.testing.assert_array_equal(mine, theirs, err_msg=key)
                continue
            # odc-stac keeps the source nodata value (0, -32768) in float output; the reader uses NaN
            nodata = item.assets[key].extra_fields.get("raster:bands", [{}])[0].get("nodata")
            theirs_bad = np.isnan(theirs) if nodata is None else (np.isnan(theirs) | (theirs == nodata))
            np.testing.assert_array_equal(np.isnan(mine), theirs_bad, err_msg=key)
            if modality == "DEM":
                # a reprojection: odc-stac warps only the overlapping window, so GDAL's approximate
                # transformer (0.125 px error threshold) interpolates over another grid; millimetres
                np.testing.assert_allclose(mine[~theirs_bad], theirs[~theirs_bad], rtol=0, atol=0.01, err_msg=key)
            else:
                np.testing.assert_array_equal(mine[~theirs_bad], theirs[~theirs_bad], err_msg=key)
            assert (~theirs_bad).sum() > 1000, key
