"""Building footprints: local files in any CRS, the Socrata paging client, rasterisation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box
from socrata import SocrataServer, multipolygon_features

from training.errors import DatasetError
from training.footprints import (
    FootprintsUnavailableError,
    LocalFootprints,
    SocrataFootprints,
    rasterize_footprints,
)

CRS = "EPSG:32618"
# a 64 x 64 px grid at 10 m in lower Manhattan
X0, Y1 = 583000.0, 4507000.0
TRANSFORM = (10.0, 0.0, X0, 0.0, -10.0, Y1)
BOUNDS = (X0, Y1 - 640, X0 + 640, Y1)


def _buildings_utm() -> gpd.GeoDataFrame:
    """Three buildings: pixel blocks rows 10..20 x cols 10..30, rows 40..50 x cols 5..15, one outside."""
    geoms = [
        box(X0 + 100, Y1 - 200, X0 + 300, Y1 - 100),
        box(X0 + 50, Y1 - 500, X0 + 150, Y1 - 400),
        box(X0 + 5000, Y1 - 500, X0 + 5100, Y1 - 400),
    ]
    return gpd.GeoDataFrame({"bin": [1, 2, 3]}, geometry=geoms, crs=CRS)


def _expected() -> np.ndarray:
    m = np.zeros((64, 64), np.int8)
    m[10:20, 10:30] = 1
    m[40:50, 5:15] = 1
    return m


@pytest.mark.parametrize(("suffix", "crs"), [(".geojson", "EPSG:4326"), (".gpkg", "EPSG:2263"),
                                             (".parquet", "EPSG:2263")])
def test_local_file_in_another_crs_is_reprojected(tmp_path: Path, suffix: str, crs: str) -> None:
    path = tmp_path / f"fp{suffix}"
    gdf = _buildings_utm().to_crs(crs)
    if suffix == ".parquet":
        gdf.to_parquet(path)
    else:
        gdf.to_file(path)
    src = LocalFootprints(path)
    got = src.query(BOUNDS, CRS)
    assert len(got) == 2 and str(got.crs) == CRS
    mask = rasterize_footprints(got, shape=(64, 64), transform=TRANSFORM)
    # NY State Plane feet and WGS84 round trips move edges by far less than half a pixel
    assert (mask != _expected()).sum() == 0
    assert src.describe()["crs"] in (crs, gdf.crs.to_string())


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_file_without_crs_needs_one(tmp_path: Path) -> None:
    path = tmp_path / "nocrs.gpkg"
    _buildings_utm().set_crs(None, allow_override=True).to_file(path)
    with pytest.raises(DatasetError, match="declares no CRS"):
        LocalFootprints(path).query(BOUNDS, CRS)
    assert len(LocalFootprints(path, assume_crs=CRS).query(BOUNDS, CRS)) == 2
    with pytest.raises(DatasetError, match="does not exist"):
        LocalFootprints(tmp_path / "absent.geojson")


def test_empty_footprints_give_all_background_and_extent_marks_ignore() -> None:
    empty = _buildings_utm().iloc[:0]
    m = rasterize_footprints(empty, shape=(64, 64), transform=TRANSFORM)
    assert m.dtype == np.int8 and (m == 0).all()
    extent = box(X0, Y1 - 640, X0 + 320, Y1)  # left half only
    m = rasterize_footprints(_buildings_utm(), shape=(64, 64), transform=TRANSFORM, extent=extent)
    assert (m[:, 32:] == -1).all() and (m[10:20, 10:30] == 1).all()


# ----------------------------------------------------------------------------------------
# a Socrata-like server on 127.0.0.1: $where within_box, $order, $limit/$offset paging
# ----------------------------------------------------------------------------------------
@pytest.fixture()
def socrata() -> Iterator[SocrataServer]:
    # 25 small buildings in a row inside the grid, as GeoJSON MultiPolygons in WGS84 (as Socrata serves them)
    geoms = [box(X0 + 20 * i + 2, Y1 - 618, X0 + 20 * i + 18, Y1 - 602) for i in range(25)]
    with SocrataServer(multipolygon_features(gpd.GeoSeries(geoms, crs=CRS).to_crs("EPSG:4326"))) as srv:
        yield srv


def test_socrata_pages_until_a_short_page(socrata: SocrataServer) -> None:
    src = SocrataFootprints(base_url=socrata.url, page_size=10, backoff_s=0.01)
    got = src.query(BOUNDS, CRS)
    assert len(got) == 25
    assert [r["$offset"][0] for r in socrata.requests] == ["0", "10", "20"]
    assert all(r["$order"] == [":id"] for r in socrata.requests)
    mask = rasterize_footprints(got, shape=(64, 64), transform=TRANSFORM)
    assert mask[60:62].sum() == 100 and mask.sum() == 100  # 2 x 2 pixels per building


def test_socrata_retries_then_fails_clearly(socrata: SocrataServer) -> None:
    socrata.fail_first = 2
    src = SocrataFootprints(base_url=socrata.url, page_size=100, retries=2,
                            backoff_s=0.01)
    assert len(src.query(BOUNDS, CRS)) == 25
    socrata.fail_first = 10
    src = SocrataFootprints(base_url=socrata.url, retries=1, backoff_s=0.01)
    with pytest.raises(FootprintsUnavailableError, match="after 2 attempts"):
        src.query(BOUNDS, CRS)
    socrata.fail_first = 0
    bad = SocrataFootprints(base_url=socrata.url, dataset="nope", retries=0)
    with pytest.raises(FootprintsUnavailableError, match="HTTP 404"):
        bad.query(BOUNDS, CRS)
