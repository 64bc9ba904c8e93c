"""maps/cog.py: a raster streamed block by block comes back as a COG, pixel for pixel; failures leave nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine

from terramind_nyc.errors import InvalidInputError
from terramind_nyc.maps.cog import write_cog

TRANSFORM = Affine(10.0, 0.0, 580_000.0, 0.0, -10.0, 4_520_000.0)
CLASSES = (0, 10, 200)  # far apart: an averaged overview would hold other values
COLORMAP = {0: (255, 0, 0, 255), 10: (0, 128, 0, 255), 200: (0, 0, 255, 128)}


class Boom(Exception):
    pass


class Reader:
    """read_block over an in-memory (count, H, W) array, recording every window asked for."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.calls: list[tuple[int, int, int, int]] = []

    def __call__(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        self.calls.append((r0, r1, c0, c1))
        return self.data[:, r0:r1, c0:c1]


def _classes(rows: int = 1000, cols: int = 1300) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.choice(np.array(CLASSES, np.uint8), size=(1, rows, cols))


def _args(data: np.ndarray, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"shape": data.shape[1:], "transform": TRANSFORM, "crs": "EPSG:32618",
                            "read_block": Reader(data), "count": data.shape[0], "dtype": str(data.dtype),
                            "nodata": None}
    args.update(kw)
    return args


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_class_map_in_blocks_round_trips_as_a_cog(tmp_path: Path) -> None:
    data = _classes()
    read = Reader(data)
    out = write_cog(tmp_path / "lulc.tif", **_args(data, read_block=read, nodata=255, band_names=["lulc"],
                                                   block=256, colormap=COLORMAP))
    assert out == tmp_path / "lulc.tif"
    assert len(read.calls) == 4 * 6  # ceil(1000 / 256) * ceil(1300 / 256)
    covered = np.zeros(data.shape[1:], int)
    for r0, r1, c0, c1 in read.calls:
        assert r1 - r0 <= 256 and c1 - c0 <= 256
        covered[r0:r1, c0:c1] += 1
    assert (covered == 1).all()  # every pixel asked for exactly once
    with rasterio.open(out) as src:
        assert (src.count, src.dtypes, src.shape) == (1, ("uint8",), (1000, 1300))
        assert np.array_equal(src.read(), data)
        assert src.crs == rasterio.crs.CRS.from_epsg(32618)
        assert src.transform == TRANSFORM
        assert src.nodata == 255
        assert src.descriptions == ("lulc",)
        layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
        if layout is not None:  # GDAL >= 3.1 reports it
            assert layout == "COG"
        assert src.block_shapes == [(512, 512)]
        assert src.overviews(1)
        cmap = src.colormap(1)
        assert {k: cmap[k] for k in COLORMAP} == {k: (*rgba[:3], 255) for k, rgba in COLORMAP.items()}  # RGB only
        assert cmap[1] == (0, 0, 0, 255)  # classes not in the colormap are black
    with rasterio.open(out, overview_level=0) as ov:  # nearest: the overview holds classes only
        assert set(np.unique(ov.read()).tolist()) <= set(CLASSES)
    assert _files(tmp_path) == ["lulc.tif"]


def test_probabilities_with_nodata_get_nodata_aware_average_overviews(tmp_path: Path) -> None:
    rows, cols = 600, 700
    rng = np.random.default_rng(1)
    data = rng.random((3, rows, cols), dtype=np.float32)
    data[:, ::2, ::2] = -9999.0  # one pixel of every 2x2 cell is nodata
    out = write_cog(tmp_path / "p.tif", **_args(data, nodata=-9999.0, band_names=["a", "b", "c"], block=128,
                                                resampling="average"))
    with rasterio.open(out) as src:
        assert (src.count, src.dtypes) == (3, ("float32",) * 3)
        assert src.nodata == -9999.0
        assert src.descriptions == ("a", "b", "c")
        assert np.array_equal(src.read(), data)
        assert src.overviews(1) == src.overviews(3) == [2]
    with rasterio.open(out, overview_level=0) as ov:
        got = ov.read()
    cells = data.reshape(3, rows // 2, 2, cols // 2, 2)
    valid = cells != -9999.0
    want = (cells * valid).sum(axis=(2, 4)) / valid.sum(axis=(2, 4))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_progress_is_called_once_per_block_with_the_count_so_far(tmp_path: Path) -> None:
    data = _classes(100, 70)
    seen: list[int] = []
    read = Reader(data)
    write_cog(tmp_path / "m.tif", **_args(data, read_block=read, block=32, progress=seen.append))
    assert seen == list(range(1, 4 * 3 + 1))
    assert len(read.calls) == len(seen)


def test_a_raster_smaller_than_a_block_is_one_call(tmp_path: Path) -> None:
    data = _classes(10, 20)
    read = Reader(data)
    out = write_cog(tmp_path / "s.tif", **_args(data, read_block=read))
    assert read.calls == [(0, 10, 0, 20)]
    with rasterio.open(out) as src:
        assert np.array_equal(src.read(), data)


@pytest.mark.parametrize("bad", ["shape", "float-into-uint8", "out-of-range", "raises"])
def test_a_bad_block_raises_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, bad: str) -> None:
    data = _classes(100, 100)
    old = tmp_path / "m.tif"
    old.write_bytes(b"old map")

    def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        block = data[:, r0:r1, c0:c1]
        if (r0, c0) != (32, 64):
            return block
        if bad == "shape":
            return block[:, :-1]
        if bad == "float-into-uint8":
            return block.astype(np.float32)
        if bad == "out-of-range":
            return block.astype(np.int64) + 100
        raise Boom("store went away")

    with pytest.raises(Boom if bad == "raises" else InvalidInputError) as info:
        write_cog(old, **_args(data, read_block=read, block=32))
    if bad != "raises":
        assert "rows 32:64, cols 64:96" in str(info.value)
    assert old.read_bytes() == b"old map"
    assert _files(tmp_path) == ["m.tif"]


def test_in_range_ints_of_another_dtype_are_accepted(tmp_path: Path) -> None:
    data = _classes(40, 40)
    wide = data.astype(np.int64)
    out = write_cog(tmp_path / "m.tif", **_args(data, read_block=lambda r0, r1, c0, c1: wide[:, r0:r1, c0:c1]))
    with rasterio.open(out) as src:
        assert np.array_equal(src.read(), data)


def test_a_failing_cog_conversion_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def copy(src: Any, dst: Any, **kw: Any) -> None:
        Path(dst).write_bytes(b"half a COG")
        (tmp_path / Path(src).parent.name / "x.ovr.tmp").write_bytes(b"gdal scratch")
        raise Boom("disk full")

    monkeypatch.setattr(rasterio.shutil, "copy", copy)
    data = _classes(50, 50)
    with pytest.raises(Boom):
        write_cog(tmp_path / "m.tif", **_args(data))
    assert _files(tmp_path) == []


def test_an_unwritable_folder_is_an_oserror_naming_the_path(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes anywhere it may; sysfs refuses new files even to root
        folder = Path("/sys")
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    data = _classes(20, 20)
    read = Reader(data)
    with pytest.raises(OSError, match="m.tif") as info:
        write_cog(folder / "m.tif", **_args(data, read_block=read))
    assert not isinstance(info.value, InvalidInputError)
    assert read.calls == []


@pytest.mark.parametrize("change", [
    {"shape": (0, 20)}, {"shape": (20,)}, {"shape": (20.0, 20)}, {"count": 0}, {"count": True},
    {"block": 100}, {"block": 0}, {"crs": "EPSG:0"}, {"transform": (10, 0, 0, 0, -10, 0)},
    {"transform": Affine(0, 0, 0, 0, 0, 0)}, {"dtype": "complex64"}, {"nodata": 300}, {"nodata": 1.5},
    {"band_names": ["a", "b"]}, {"resampling": "magic"}, {"compress": "gzip"},
    {"colormap": {0: (1, 2, 3)}}, {"colormap": {256: (1, 2, 3, 4)}}, {"dtype": "uint16", "colormap": COLORMAP},
], ids=lambda c: ",".join(f"{k}={v!r}"[:30] for k, v in c.items()))
def test_bad_arguments_are_invalid_input_before_anything_is_read(tmp_path: Path, change: dict[str, Any]) -> None:
    data = _classes(20, 20)
    read = Reader(data)
    with pytest.raises(InvalidInputError):
        write_cog(tmp_path / "m.tif", **_args(data, read_block=read, **change))
    assert read.calls == []
    assert _files(tmp_path) == []


def test_a_colormap_needs_a_single_band(tmp_path: Path) -> None:
    data = np.concatenate([_classes(20, 20)] * 2)
    with pytest.raises(InvalidInputError, match="single-band uint8"):
        write_cog(tmp_path / "m.tif", **_args(data, colormap=COLORMAP))
