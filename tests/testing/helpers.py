"""Helpers shared by the harness tests: plain HTTP requests, reference reads with rasterio."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.warp import Resampling, reproject

from terramind_nyc.grid import ChipGrid

GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
            "GDAL_HTTP_MAX_RETRY": "0", "GDAL_HTTP_TIMEOUT": "5"}


def get(url: str, *, headers: dict[str, str] | None = None, method: str = "GET", body: bytes | None = None,
        timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of one plain HTTP request (HTTP errors are answers, not exceptions)."""
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def read_via_gdal(href: str, window: Any = None) -> np.ndarray:
    """Band 1 of ``href`` read by GDAL (over HTTP for a URL, with no directory probes)."""
    with rasterio.Env(**GDAL_ENV), rasterio.open(href) as ds:
        return ds.read(1, window=window)


def grid_read(path_or_href: str, grid: ChipGrid, *, resampling: Resampling, dtype: str = "float64",
              nodata: float | None = None) -> np.ndarray:
    """Independent reference read (rasterio.warp.reproject) of one band onto a chip grid."""
    out = np.zeros(grid.shape, dtype=dtype)
    with rasterio.Env(**GDAL_ENV), rasterio.open(path_or_href) as ds:
        reproject(rasterio.band(ds, 1), out, dst_transform=grid.transform, dst_crs=grid.crs,
                  resampling=resampling, src_nodata=nodata if nodata is not None else ds.nodata, dst_nodata=0)
    return out


def search(url: str, **params: Any) -> dict[str, Any]:
    """A POST ``/search`` of a STAC API that must answer 200; the response document."""
    status, _, body = get(url + "/search", method="POST", body=json.dumps(params).encode(),
                          headers={"Content-Type": "application/json"})
    assert status == 200, body[:500]
    return json.loads(body)


def ids(doc: dict[str, Any]) -> list[str]:
    """The item ids of a search response, in order."""
    return [f["id"] for f in doc["features"]]


def local_path(cat: Any, href: str) -> Path:
    """The file on disk behind a fixture catalog's asset href."""
    assert href.startswith(cat.base_url + "/cogs/")
    return Path(cat.root) / href[len(cat.base_url) + 1:]
