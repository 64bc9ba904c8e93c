"""Reading one asset onto the chip grid: a window where the pixels align, else a ``WarpedVRT``.

Each asset is read by GDAL through rasterio with the project's options in a scoped
``rasterio.Env`` (:func:`~._gdal.gdal_options`): a pixel-aligned asset (the 10 m bands on the
10 m grid) is read as a window, anything else is warped onto the grid with a ``WarpedVRT``
(bilinear for reflectance, backscatter and elevation; nearest for SCL), nodata excluded. A
failure becomes a :class:`~terramind_nyc.errors.ChipError` that names item, asset and host and
carries ``kind`` and ``status`` (see :func:`classify_failure`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ChipError, ChipErrorKind
from ..sensors import S1_NODATA
from ..settings import Settings
from ._gdal import forget, gdal_options
from .items import asset_href, asset_nodata
from .urls import redact, service_of, strip_query

if TYPE_CHECKING:  # pragma: no cover
    import pystac

    from ..grid import ChipGrid

__all__ = ["aligned_offset", "classify_failure", "http_status", "read_asset", "read_onto_grid"]

log = logging.getLogger(__name__)

#: Default nodata per modality when neither the file nor the STAC item says.
_NODATA_HINT: dict[str, float | None] = {"S2L2A": 0.0, "SCL": 0.0, "S1RTC": S1_NODATA, "DEM": None}
_TRUNCATED = ("read failed", "warp failed", "truncat", "tiffread", "incomplete", "ireadblock", "not georeferenced")
#: An HTTP status in a GDAL / curl / requests message once URLs are blanked out: "HTTP response
#: code: 404", "HTTP error code : 503", "HTTP response code on <url>: 403", "HTTP 429",
#: "status code 500", "404 Client Error", "403 Forbidden".
_STATUS_RE = re.compile(
    r"(?i)(?:\b(?:HTTP|status)\b[^0-9\n]{0,40}?\b([1-5][0-9]{2})\b"
    r"|\b([1-5][0-9]{2})\s+(?:Client Error|Server Error|Unauthorized|Forbidden|Not Found|Gone|Too Many Requests"
    r"|Internal Server Error|Bad Gateway|Service Unavailable|Gateway Time-?out)\b)")
#: URLs and paths, blanked before the status is looked for (a port, a date or a tile id in a
#: URL is no status, and a URL between "HTTP response code on" and the status hides it).
_URL_RE = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|/)[^\s'\"<>()]*", re.IGNORECASE)
_DENIED = ("forbidden", "unauthorized", "access denied", "accessdenied", "authenticationfailed",
           "authorizationfailure", "authorizationpermissionmismatch", "signature not valid", "signaturedoesnotmatch",
           "failed to authenticate", "request has expired", "expiredtoken")
_MISSING = ("not exist", "no such file", "not found", "nosuchkey", "blobnotfound", "resourcenotfound")
_SERVER = ("timed out", "timeout", "too many requests", "service unavailable", "server busy", "serverbusy",
           "connection reset")


def aligned_offset(src: Any, grid: ChipGrid) -> tuple[int, int] | None:
    """``(row, col)`` of the grid's origin in the source's pixels when they share a lattice."""
    from rasterio.crs import CRS

    t = src.transform
    res = grid.resolution
    if not (t.b == 0 and t.d == 0 and math.isclose(t.a, res, rel_tol=1e-9) and math.isclose(t.e, -res, rel_tol=1e-9)):
        return None
    if src.crs is None or src.crs != CRS.from_user_input(grid.crs):
        return None
    col = (grid.bounds[0] - t.c) / res
    row = (t.f - grid.bounds[3]) / res
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(row), round(col)


def read_onto_grid(href: str, grid: ChipGrid, *, resampling: str, dtype: str, fill: float,
                   nodata_hint: float | None, env: Mapping[str, str]) -> np.ndarray:
    """Band 1 of ``href`` on ``grid`` as ``dtype``; pixels without valid data are ``fill``."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

    dst = np.full(grid.shape, fill, dtype=dtype)
    with rasterio.Env(**env), rasterio.open(href) as src:
        if src.crs is None or src.transform.is_identity:
            # a header cut short can still parse as a TIFF, without its georeferencing
            raise ChipError(f"the file is not georeferenced ({src.width} x {src.height} px, no CRS or transform); "
                            "it is probably truncated", kind="truncated")
        nodata = src.nodata if src.nodata is not None else nodata_hint
        off = aligned_offset(src, grid)
        if off is not None:
            row0, col0 = off
            r0, r1 = max(row0, 0), min(row0 + grid.height, src.height)
            c0, c1 = max(col0, 0), min(col0 + grid.width, src.width)
            if r1 > r0 and c1 > c0:
                a = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
                sub = a.astype(dtype, copy=False)
                bad = np.zeros(a.shape, dtype=bool)
                if nodata is not None:
                    bad |= np.isnan(a) if np.isnan(nodata) else (a == nodata)
                if a.dtype.kind == "f":
                    bad |= ~np.isfinite(a)
                part = dst[r0 - row0:r1 - row0, c0 - col0:c1 - col0]
                np.copyto(part, sub, where=~bad)
        else:
            # WarpedVRT, not rasterio.warp.reproject: reproject enters warnings.catch_warnings(),
            # which is not thread-safe and scrambles the process's warning filters when reads run
            # in parallel. Same GDAL warper, same pixels (checked against reproject and odc-stac).
            # Across CRSs (the DEM, in EPSG:4326), tolerance ~0: (almost) the exact transformer, not GDAL's
            # piecewise-linear approximation (0.125 px by default), whose error depends on the output
            # window: a city map's windows must see the pixels of one read over the whole area (the DEM
            # differed by ~1 cm otherwise). Within one CRS the transform is affine and the default exact.
            exact = {} if src.crs == CRS.from_user_input(grid.crs) else {"tolerance": 1e-6}
            with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                           resampling=Resampling[resampling], src_nodata=nodata, nodata=fill, dtype=dtype,
                           **exact) as vrt:
                vrt.read(1, out=dst)
    if dst.dtype.kind == "f":
        dst[~np.isfinite(dst)] = np.nan
    return dst


def http_status(msg: str) -> int | None:
    """The HTTP status a (GDAL, curl, requests) error message names, or None.

    URLs and paths are blanked first, so the digits of a host, port, date or query string are
    never taken for a status, and "HTTP response code on <url>: 404" is found with or without
    a query string on the URL.
    """
    m = _STATUS_RE.search(_URL_RE.sub("<url>", msg))
    if m is None:
        return None
    return int(m.group(1) or m.group(2))


def classify_failure(msg: str, *, retries: int) -> tuple[ChipErrorKind, int | None, str]:
    """``(kind, status, hint)`` of a failed read from its (redacted) GDAL / rasterio message.

    ``status`` is the HTTP status the message names (None when it names none); ``kind`` follows
    it where there is one (401 / 403 ``denied``, 404 / 410 ``missing``, 408 / 429 / 5xx
    ``server``), else the message's words. ``hint`` is the advice appended to the error
    message (empty when the failure is not recognised); it names settings, never a URL or token.
    """
    status = http_status(msg)
    low = msg.lower()
    if status in (401, 403) or (status is None and any(w in low for w in _DENIED)):
        code = f"HTTP {status}" if status else "access denied"
        return "denied", status, (
            f"; the server refused the asset ({code}): it needs a valid signature or token. Check the signer "
            "(`Settings.signer` / TERRAMIND_NYC_SIGNER; PC_SDK_SUBSCRIPTION_KEY for the Planetary Computer); a "
            "signed URL expires, so run the request again to search and sign afresh")
    if status in (404, 410) or (status is None and any(w in low for w in _MISSING)):
        code = f" (HTTP {status})" if status else ""
        return "missing", status, (
            f"; the asset is missing on the server{code}: the item or asset is gone and the catalog may be stale; "
            "search again (cached searches live `stac_cache_ttl_s` seconds), or try another scene or later")
    server = status is not None and (status in (408, 429) or status >= 500)
    if status is None and any(w in low for w in _TRUNCATED):
        return "truncated", status, "; the file looks truncated or the transfer broke off: try again later"
    if server or (status is None and any(w in low for w in _SERVER)):
        code = f" (HTTP {status})" if status else ""
        busy = " the server is rate limiting;" if status == 429 else ""
        return "server", status, (
            f"; the server kept failing after {retries} retries{code}:{busy} try again later, or raise "
            "`http_retries` / `http_backoff_s` / `http_timeout_s` (TERRAMIND_NYC_HTTP_RETRIES, ...)")
    return "other", status, ""


def read_asset(item: pystac.Item, key: str, grid: ChipGrid, *, modality: str, resampling: str, settings: Settings,
               dtype: str = "float32") -> np.ndarray:
    """One asset of one item on the grid; failures become ChipError naming item, asset and host,
    with ``kind`` and ``status`` set (:func:`classify_failure`)."""
    href = asset_href(item, key, modality)
    hint = asset_nodata(item, key)
    if hint is None:
        hint = _NODATA_HINT.get("SCL" if key == "SCL" else modality)
    fill = 0.0 if dtype == "uint8" else math.nan
    t = time.perf_counter()
    try:
        out = read_onto_grid(href, grid, resampling=resampling, dtype=dtype, fill=fill, nodata_hint=hint,
                             env=gdal_options(settings))
    except Exception as exc:  # noqa: BLE001 - GDAL/rasterio errors of any kind become ChipError
        forget(href)
        msg = redact(str(exc)) or type(exc).__name__
        kind, status, hint_txt = classify_failure(msg, retries=settings.http_retries)
        raise ChipError(
            f"reading {modality} asset {key!r} of item {item.id} from {service_of(href)} failed "
            f"({type(exc).__name__}: {msg}){hint_txt}",
            kind=kind, status=status,
        ) from None
    log.debug("read %s %s %s (%s) in %.3f s", modality, item.id, key, strip_query(href), time.perf_counter() - t)
    return out
