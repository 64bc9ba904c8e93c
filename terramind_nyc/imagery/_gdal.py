"""GDAL: the options every read runs under (in a scoped ``rasterio.Env``) and its HTTP cache.

A module private to :mod:`terramind_nyc.imagery` as a whole; the names inside are public to
the package's other modules (and :func:`clear_gdal_http_cache` to tests and long-running
services).
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
from pathlib import Path
from typing import Any

from ..settings import Settings

__all__ = ["clear_gdal_http_cache", "forget", "gdal_options", "libgdal"]

log = logging.getLogger(__name__)


def gdal_options(settings: Settings) -> dict[str, str]:
    """GDAL configuration for reading COGs over HTTP (used in a scoped ``rasterio.Env``).

    No directory listing or sidecar probes (one HEAD, a header GET and the data range GETs per
    file), a per-request timeout, and GDAL's own bounded retries with exponential backoff on
    429 and 5xx answers and on timeouts.
    """
    timeout = str(max(1, math.ceil(settings.http_timeout_s)))
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
        "GDAL_HTTP_TIMEOUT": timeout,
        "GDAL_HTTP_CONNECTTIMEOUT": timeout,
        "GDAL_HTTP_MAX_RETRY": str(int(settings.http_retries)),
        "GDAL_HTTP_RETRY_DELAY": f"{settings.http_backoff_s:g}",
        "GDAL_HTTP_RETRY_CODES": "429,500,502,503,504",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "VSI_CACHE": "FALSE",
        "GDAL_HTTP_USERAGENT": "terramind-nyc",
    }


_gdal_lib: Any = None
_gdal_lib_searched = False


def libgdal() -> Any:
    """The libgdal rasterio uses (already loaded), for ``VSICurlPartialClearCache``; None if not found."""
    global _gdal_lib, _gdal_lib_searched
    if _gdal_lib_searched:
        return _gdal_lib
    _gdal_lib_searched = True
    import rasterio  # maps the libgdal it links to

    candidates: list[str] = []
    try:
        with open("/proc/self/maps") as fh:  # Linux: the copy actually mapped into this process
            candidates = sorted({ln.split()[-1] for ln in fh if "libgdal" in os.path.basename(ln.split()[-1])})
    except OSError:
        pkg = Path(rasterio.__file__).resolve().parent
        for d in (pkg.parent / "rasterio.libs", pkg / ".dylibs"):
            candidates += [str(p) for p in sorted(d.glob("libgdal*"))]
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            fn = lib.VSICurlPartialClearCache
            fn.argtypes = [ctypes.c_char_p]
            fn.restype = None
            lib.VSICurlClearCache.argtypes = []
            lib.VSICurlClearCache.restype = None
            _gdal_lib = lib
            break
        except (OSError, AttributeError):
            continue
    if _gdal_lib is None:
        log.debug("libgdal not found; failed HTTP opens stay in GDAL's cache until the process ends")
    return _gdal_lib


def clear_gdal_http_cache() -> bool:
    """Empty GDAL's process-wide ``/vsicurl/`` cache (file sizes, headers, data blocks, failed opens).

    For tests that inject faults on URLs other tests read, and for long-running processes after
    a storage outage. Returns False when the GDAL library could not be found (nothing cleared).
    """
    lib = libgdal()
    if lib is None:
        return False
    lib.VSICurlClearCache()
    return True


def forget(href: str) -> None:
    """Drop GDAL's cached state for ``href``.

    GDAL caches a failed open (404, or 5xx after its retries) per URL for the life of the
    process, so a transient outage would poison every later request for that asset; after a
    failure the URL is removed from the cache so the next request asks the server again.
    """
    if "://" not in href:
        return
    lib = libgdal()
    if lib is not None:
        lib.VSICurlPartialClearCache(("/vsicurl/" + href).encode())
