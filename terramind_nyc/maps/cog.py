"""Stream a raster, block by block, into a Cloud-Optimised GeoTIFF.

    write_cog("out/lulc.tif", shape=(h, w), transform=t, crs="EPSG:32618", count=1, dtype="uint8",
              nodata=255, read_block=lambda r0, r1, c0, c1: store[:, r0:r1, c0:c1], colormap=colours)

Nothing here knows how the map is stored: :func:`write_cog` asks ``read_block`` for one
``block`` x ``block`` window at a time (row by row, left to right), so memory holds one block
whatever the size of the raster. The blocks go into a scratch tiled GeoTIFF, which GDAL's COG
driver then rewrites with 512 px tiles and overviews down to one tile. Every scratch file lives
in a hidden folder next to ``path`` (``CPL_TMPDIR`` points the COG driver's own temporary files
there too) that is removed on success and on any failure; the finished file reaches ``path``
through :func:`terramind_nyc.atomic.atomic_path`, so a failure leaves any earlier file as it was.

Bad arguments, and a block of the wrong shape or dtype, are
:class:`~terramind_nyc.errors.InvalidInputError`. A folder that cannot be written is the
``OSError`` the system raised (``PermissionError``, ...), re-raised with the destination in the
message, in line with :mod:`terramind_nyc.atomic`: it is an environment problem, not bad input.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from ..atomic import atomic_path, destination
from ..errors import InvalidInputError, shown

__all__ = ["write_cog"]

log = logging.getLogger(__name__)

_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")
_RESAMPLING = ("nearest", "average", "bilinear", "cubic", "cubicspline", "lanczos", "mode", "rms")
_COMPRESS = ("deflate", "lzw", "zstd", "lzma", "packbits", "none")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive int, got {shown(value)}")
    return int(value)


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise InvalidInputError(f"{name} must be one of {', '.join(allowed)}; got {shown(value)}")
    return value.lower()


def _check_nodata(nodata: Any, dtype: np.dtype[Any]) -> float | int | None:
    if nodata is None:
        return None
    if isinstance(nodata, bool) or not isinstance(nodata, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"nodata must be a number or None, got {shown(nodata)}")
    if dtype.kind == "f":
        return float(nodata)
    info = np.iinfo(dtype)
    if not (math.isfinite(nodata) and float(nodata).is_integer() and info.min <= nodata <= info.max):
        raise InvalidInputError(f"nodata {shown(nodata)} is not a {dtype} value ({info.min}..{info.max})")
    return int(nodata)


def _check_colormap(colormap: Mapping[int, tuple[int, int, int, int]], count: int,
                    dtype: np.dtype[Any]) -> dict[int, tuple[int, int, int, int]]:
    if count != 1 or dtype != np.uint8:
        raise InvalidInputError(f"a colormap needs a single-band uint8 raster, not {count} band(s) of {dtype}")
    out: dict[int, tuple[int, int, int, int]] = {}
    for key, rgba in dict(colormap).items():
        colour = tuple(rgba)
        if (isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key <= 255
                or len(colour) != 4 or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in colour)):
            raise InvalidInputError(f"colormap entry {shown(key)}: {shown(rgba)} must map a class 0..255 "
                                    f"to an (r, g, b, a) tuple of ints 0..255")
        out[int(key)] = (int(colour[0]), int(colour[1]), int(colour[2]), int(colour[3]))
    return out


def _tile(block: int) -> int:
    """The scratch file's tile size: the largest multiple of 16 <= 512 that divides ``block``, so
    every window covers whole tiles and no tile is compressed twice."""
    return next(t for t in range(min(block, 512), 15, -16) if block % t == 0)


def _check_block(data: Any, want: tuple[int, int, int], dtype: np.dtype[Any], where: str) -> np.ndarray:
    """``data`` as an array of ``want`` shape that casts to ``dtype`` without changing values' kind or range."""
    a = np.asarray(data)
    if a.shape != want:
        raise InvalidInputError(f"read_block for {where} returned shape {a.shape}; it must be {want} "
                                f"(count, rows, cols)")
    if a.dtype.kind not in ("uib" if dtype.kind in "ui" else "uibf"):
        raise InvalidInputError(f"read_block for {where} returned dtype {a.dtype}, which does not fit the "
                                f"{dtype} raster (floats cannot go into an integer raster); cast it first")
    if dtype.kind in "ui" and a.size and not np.can_cast(a.dtype, dtype, casting="safe"):
        info = np.iinfo(dtype)
        lo, hi = a.min(), a.max()
        if lo < info.min or hi > info.max:
            raise InvalidInputError(f"read_block for {where} returned values {lo}..{hi}, outside {dtype} "
                                    f"({info.min}..{info.max})")
    return a.astype(dtype, copy=False)


def write_cog(path: str | os.PathLike[str], *, shape: tuple[int, int], transform: Affine, crs: str,
              read_block: Callable[[int, int, int, int], np.ndarray], count: int, dtype: str,
              nodata: float | None, band_names: Sequence[str] = (), block: int = 512,
              resampling: str = "nearest", colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
              compress: str = "deflate", progress: Callable[[int], None] | None = None) -> Path:
    """Write a ``count``-band ``dtype`` raster of ``shape`` (rows, cols) as a COG at ``path``; return ``path``.

    ``read_block(row0, row1, col0, col1)`` returns the ``(count, row1 - row0, col1 - col0)``
    array of that window; it is called once per window of ``block`` x ``block`` pixels (``block``
    a multiple of 16; edge windows are smaller), ``ceil(rows / block) * ceil(cols / block)``
    times in all, and ``progress(n)`` after each with the number of windows done so far (for
    tqdm: ``lambda n: bar.update(n - bar.n)``). ``crs`` is any text GDAL reads (``"EPSG:32618"``).
    ``resampling`` builds the overviews: ``nearest`` (or ``mode``) for class maps, ``average``
    for probabilities; pixels equal to ``nodata`` are left out of averages. ``band_names``
    become band descriptions; ``colormap`` (class -> RGBA) is set on band 1 of a single-band
    uint8 raster (a TIFF palette holds RGB only: GDAL reads every alpha back as 255).
    ``compress`` applies to the scratch file and the COG (floats also get the floating-point
    predictor). Written atomically; see the module docstring for errors.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.windows import Window

    path = destination(path)
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise InvalidInputError(f"shape must be (rows, cols), got {shown(shape)}")
    rows, cols = _positive_int("shape[0] (rows)", shape[0]), _positive_int("shape[1] (cols)", shape[1])
    count = _positive_int("count", count)
    block = _positive_int("block", block)
    if block % 16:
        raise InvalidInputError(f"block must be a multiple of 16 (GeoTIFF tiles are), got {block}")
    if not isinstance(transform, Affine) or transform.determinant == 0:
        raise InvalidInputError(f"transform must be an invertible affine.Affine, got {shown(transform)}")
    try:
        crs_obj = CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as e:
        raise InvalidInputError(f"crs {shown(crs)} is not a CRS GDAL knows (give e.g. 'EPSG:32618'): {e}") from None
    dt = np.dtype(_choice("dtype", dtype, _DTYPES))
    nodata = _check_nodata(nodata, dt)
    names = [band_names] if isinstance(band_names, str) else list(band_names)
    if names and (len(names) != count or not all(isinstance(n, str) for n in names)):
        raise InvalidInputError(f"band_names must be {count} str (one per band) or empty, got {shown(band_names)}")
    cmap = None if colormap is None else _check_colormap(colormap, count, dt)
    method = _choice("resampling", resampling, _RESAMPLING)
    comp = _choice("compress", compress, _COMPRESS)
    if not callable(read_block) or (progress is not None and not callable(progress)):
        raise InvalidInputError("read_block (and progress, when given) must be callable")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except OSError as e:
        raise type(e)(e.errno, f"cannot write {str(path)!r}: no temporary file can be made in its folder "
                               f"({e.strerror}); choose a writable folder", str(path.parent)) from e
    predictor = {"predictor": 3} if dt.kind == "f" and comp in ("deflate", "lzw", "zstd", "lzma") else {}
    tile = _tile(block)
    try:
        with rasterio.Env(CPL_TMPDIR=str(scratch)):
            tmp = scratch / "blocks.tif"
            profile: dict[str, Any] = dict(
                driver="GTiff", width=cols, height=rows, count=count, dtype=dt.name, crs=crs_obj,
                transform=transform, nodata=nodata, tiled=True, blockxsize=tile, blockysize=tile,
                compress=comp, BIGTIFF="IF_SAFER", **predictor)
            done = 0
            with rasterio.open(tmp, "w", **profile) as dst:
                for r0 in range(0, rows, block):
                    r1 = min(r0 + block, rows)
                    for c0 in range(0, cols, block):
                        c1 = min(c0 + block, cols)
                        where = f"block rows {r0}:{r1}, cols {c0}:{c1}"
                        data = _check_block(read_block(r0, r1, c0, c1), (count, r1 - r0, c1 - c0), dt, where)
                        dst.write(data, window=Window(c0, r0, c1 - c0, r1 - r0))
                        done += 1
                        if progress is not None:
                            progress(done)
                for i, name in enumerate(names, start=1):
                    dst.set_band_description(i, name)
                if cmap is not None:
                    dst.write_colormap(1, cmap)
            log.debug("wrote %d blocks of %s; converting to a COG at %s", done, path.name, path)
            with atomic_path(path) as final_tmp:
                rasterio.shutil.copy(tmp, final_tmp, driver="COG", COMPRESS=comp.upper(), BLOCKSIZE=512,
                                     OVERVIEWS="AUTO", OVERVIEW_RESAMPLING=method.upper(), BIGTIFF="IF_SAFER",
                                     **({"PREDICTOR": "YES"} if predictor else {}))
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)
    return path
