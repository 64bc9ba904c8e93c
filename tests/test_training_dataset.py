"""``build-dataset`` against the local STAC + COG harness (training/build.py).

The imagery comes from terramind_nyc.testing's fixture catalog (served over HTTP on 127.0.0.1);
this module adds WorldCover items (collection ``esa-worldcover``, asset ``map``: uint8 codes in
EPSG:4326 at 1/12000 degree) for some scenarios and writes building footprints as GeoJSON in NY
State Plane feet (EPSG:2263), a different CRS from the chip grid's.
"""

from __future__ import annotations

import itertools
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box
from socrata import SocrataServer, multipolygon_features

from terramind_nyc.grid import chip_grid
from terramind_nyc.settings import Settings
from training import build as build_mod
from training import layout
from training.build import BuildOptions, Sources, build_dataset
from training.points import chip_id
from training.footprints import LocalFootprints, rasterize_footprints
from training.layout import DatasetIndex
from training.modelconfig import default_classes_and_bands

WC_RES = 1 / 12000  # degrees, as ESA WorldCover
WC_SCENARIOS = ("clear", "no_s1", "all_cloudy", "cloudy_vs_clear")  # tile_edge gets no WorldCover


def _worldcover_items(env: Any) -> list[dict[str, Any]]:
    """One WorldCover item per scenario: code 80 (water) west of the chip centre, 50 (built-up) east.

    Each test writes its own copy under a fresh folder (so a fresh URL): GDAL's process-wide
    ``/vsicurl/`` cache never answers for a file another test wrote at the same URL.
    """
    cat = env.catalog
    folder = f"training_wc_{uuid.uuid4().hex[:12]}"
    root = cat.root.parent / folder
    items = []
    for sc in WC_SCENARIOS:
        lat, lon = cat.points[sc]
        w, s, e, n = lon - 0.03, lat - 0.03, lon + 0.03, lat + 0.03
        width, height = round((e - w) / WC_RES), round((n - s) / WC_RES)
        codes = np.full((height, width), 50, dtype=np.uint8)
        xs = w + (np.arange(width) + 0.5) * WC_RES
        codes[:, xs < lon] = 80
        path = root / sc / "map.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                           crs="EPSG:4326", transform=Affine(WC_RES, 0, w, 0, -WC_RES, n), nodata=0,
                           tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
            dst.write(codes, 1)
        items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": f"ESA_WorldCover_10m_2021_v200_{sc}",
            "collection": "esa-worldcover", "bbox": [w, s, e, n],
            "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            "properties": {"datetime": "2021-01-01T00:00:00Z", "start_datetime": "2021-01-01T00:00:00Z",
                           "end_datetime": "2021-12-31T23:59:59Z", "esa_worldcover:product_version": "2.0.0"},
            "assets": {"map": {"href": f"{env.cog_server.url}/{folder}/{sc}/map.tif",
                               "type": "image/tiff; application=geotiff; profile=cloud-optimized"}},
            "links": [],
        })
    return items


def _buildings_utm(grid: Any) -> gpd.GeoDataFrame:
    """Four buildings inside the grid, edges 3 m off the pixel lattice (no pixel-centre ties)."""
    x0, _, _, y1 = grid.bounds
    geoms = [box(x0 + 103 + 200 * i, y1 - 497 - 150 * i, x0 + 243 + 200 * i, y1 - 357 - 150 * i) for i in range(4)]
    return gpd.GeoDataFrame({"bin": list(range(4))}, geometry=geoms, crs=grid.crs)


@pytest.fixture()
def env(fixture_catalog: Any, local_settings: Settings, tmp_path: Path) -> dict[str, Any]:
    cat = fixture_catalog.catalog
    items = cat.items() + _worldcover_items(fixture_catalog)
    items_path = tmp_path / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    settings = local_settings.replace(catalog_path=str(items_path))
    clear = chip_grid(*cat.points["clear"], settings=settings)
    fp = tmp_path / "footprints.geojson"
    _buildings_utm(clear).to_crs("EPSG:2263").to_file(fp, driver="GeoJSON")
    classes, bands = default_classes_and_bands()
    return {"cat": cat, "settings": settings, "footprints": fp, "classes": classes, "bands": bands,
            "when": cat.when("clear"), "clear": clear}


def _sources(env: dict[str, Any], **kw: Any) -> Sources:
    return Sources(settings=env["settings"], footprints=LocalFootprints(env["footprints"]), classes=env["classes"],
                   bands=env["bands"], **kw)


def _opts(env: dict[str, Any], out: Path, scenarios: tuple[str, ...], **kw: Any) -> BuildOptions:
    cat = env["cat"]
    centres = tuple(cat.points[s] for s in scenarios)
    return BuildOptions(out=out, centres=centres, when=env["when"], progress=False, **kw)


def test_build_writes_layout_labels_skips_and_split(env: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "ds"
    scenarios = ("clear", "no_s1", "tile_edge", "all_cloudy", "cloudy_vs_clear")
    summary = build_dataset(_opts(env, out, scenarios, allow_missing=("S1RTC",)), _sources(env))
    index = DatasetIndex.load(out)
    by_id = {c.id: c for c in index.chips}
    cat, settings = env["cat"], env["settings"]
    ids = {s: chip_id(chip_grid(*cat.points[s], settings=settings)) for s in scenarios}

    # on failure, show why each chip went where it went (a transient read failure is 'failed', not 'skipped')
    assert (summary.ok, summary.skipped, summary.failed) == (3, 2, 0), (summary, [(c.id, c.reason) for c in index.chips])
    assert by_id[ids["tile_edge"]].status == "skipped" and by_id[ids["tile_edge"]].reason.startswith("no WorldCover")
    assert by_id[ids["all_cloudy"]].status == "skipped" and "cloud" in by_id[ids["all_cloudy"]].reason
    assert all(c.split in ("train", "val", "test") for c in index.ok())
    assert all(c.split is None for c in index.chips if c.status == "skipped")
    assert index.meta["s2_offset"] == {"offset_dn": 1000, "from_baseline": "04.00", "clip_min": 0.0}

    clear = by_id[ids["clear"]]
    assert set(clear.files) == {"S2L2A", "S1RTC", "DEM", "lulc", "buildings"}
    with rasterio.open(out / clear.files["S2L2A"]) as src:
        assert src.count == 12 and src.crs.to_string() == "EPSG:32618" and src.shape == (224, 224)
        assert tuple(src.transform)[:6] == pytest.approx(tuple(env["clear"].transform)[:6])
        assert src.dtypes[0] == "float32"
    # land cover: water (WorldCover 80) west of the centre, developed (50) east; order from the model config
    lulc = layout.read_raster(out / clear.files["lulc"])[0]
    names = env["classes"]["lulc"]
    assert (lulc[:, :100] == names.index("water")).all() and (lulc[:, 124:] == names.index("developed")).all()
    # buildings: the EPSG:2263 file reprojected onto the grid equals rasterising the UTM polygons
    bmask = layout.read_raster(out / clear.files["buildings"])[0]
    expected = rasterize_footprints(_buildings_utm(env["clear"]), shape=(224, 224),
                                    transform=tuple(env["clear"].transform)[:6])
    assert bmask.sum() == expected.sum() == 4 * 14 * 14
    np.testing.assert_array_equal(bmask, expected)
    assert clear.stats["building_fraction"] == pytest.approx(4 * 196 / 224**2)
    assert clear.provenance["imagery"]["provenance"]["S2L2A"]["item_ids"]
    assert clear.provenance["worldcover"]["items"] == ["ESA_WorldCover_10m_2021_v200_clear"]

    no_s1 = by_id[ids["no_s1"]]  # S1 allowed missing; no footprints there: all background, kept
    assert no_s1.missing == ("S1RTC",) and "S1RTC" not in no_s1.files
    assert (layout.read_raster(out / no_s1.files["buildings"]) == 0).all()


def test_missing_s1_is_skipped_unless_allowed(env: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "ds"
    build_dataset(_opts(env, out, ("no_s1",)), _sources(env))
    (rec,) = DatasetIndex.load(out).chips
    assert rec.status == "skipped" and rec.reason.startswith("missing modality")


def test_interrupted_build_resumes_and_never_indexes_half_chips(env: dict[str, Any], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from terramind_nyc.imagery.reader import read_chip

    out = tmp_path / "ds"
    scenarios = ("clear", "cloudy_vs_clear", "all_cloudy")
    calls: list[str] = []

    def counting_read_chip(grid: Any, **kw: Any) -> Any:
        calls.append(chip_id(grid))
        return read_chip(grid, **kw)

    real_write = layout.write_raster
    n_masks = {"n": 0}

    def crashing_write(path: Any, *a: Any, **kw: Any) -> None:
        if Path(path).name == "MASK_BUILDINGS.tif":
            n_masks["n"] += 1
            if n_masks["n"] == 2:  # the second chip dies half-written
                raise KeyboardInterrupt
        real_write(path, *a, **kw)

    monkeypatch.setattr(layout, "write_raster", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(_opts(env, out, scenarios), _sources(env, read_chip=counting_read_chip))
    index = DatasetIndex.load(out)
    assert [c.status for c in index.chips] == ["ok"]  # only the finished chip is indexed
    index.check_files(out)
    assert not any(p.name.startswith(".tmp-") for p in (out / "chips").iterdir())
    # a harder crash leaves a temporary folder and an unindexed chip folder behind
    settings = env["settings"]
    second = chip_id(chip_grid(*env["cat"].points["cloudy_vs_clear"], settings=settings))
    (out / "chips" / f".tmp-{second}-99999").mkdir()
    (out / "chips" / f".tmp-{second}-99999" / "S2L2A.tif").write_bytes(b"half")
    (out / "chips" / second).mkdir()
    (out / "chips" / second / "S2L2A.tif").write_bytes(b"stale")

    monkeypatch.setattr(layout, "write_raster", real_write)
    calls.clear()
    summary = build_dataset(_opts(env, out, scenarios), _sources(env, read_chip=counting_read_chip))
    first = chip_id(env["clear"])
    assert first not in calls and summary.resumed == 1  # the finished chip is not fetched again
    assert second in calls
    index = DatasetIndex.load(out)
    assert [c.status for c in index.chips].count("ok") == 2 and summary.skipped == 1
    index.check_files(out)
    assert not any(p.name.startswith(".tmp-") for p in (out / "chips").iterdir())
    with rasterio.open(out / "chips" / second / "S2L2A.tif") as src:
        assert src.count == 12
    # a third run does nothing new
    calls.clear()
    again = build_dataset(_opts(env, out, scenarios), _sources(env, read_chip=counting_read_chip))
    assert calls == [] and again.resumed == 3


def test_an_incompatible_existing_dataset_is_refused(env: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "ds"
    build_dataset(_opts(env, out, ("tile_edge",)), _sources(env))
    with pytest.raises(build_mod.DatasetError, match="tile_size"):
        build_dataset(_opts(env, out, ("tile_edge",), size_px=112), _sources(env))
    shutil.rmtree(out)


def test_build_dataset_command(env: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main

    s = env["settings"]
    for key, value in {"CATALOG_PROVIDER": "local", "CATALOG_PATH": s.catalog_path, "SIGNER": "none",
                       "CACHE_ENABLED": "false", "HTTP_TIMEOUT_S": "3", "DEADLINE_S": "10"}.items():
        monkeypatch.setenv(f"TERRAMIND_NYC_{key}", str(value))
    points = tmp_path / "points.csv"
    rows = [env["cat"].points[k] for k in ("clear", "tile_edge")]
    points.write_text("lat,lon\n" + "".join(f"{la},{lo}\n" for la, lo in rows))
    out = tmp_path / "ds"
    code = main(["build-dataset", "--out", str(out), "--points", str(points), "--footprints", str(env["footprints"]),
                 "--when", "{}/{}".format(*env["when"]), "--no-progress", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["ok"] == 1 and summary["skipped"] == 1
    assert summary["reasons"] == {"no WorldCover": 1}
    assert DatasetIndex.load(out).meta["sources"]["footprints"]["kind"] == "file"


def test_tiling_a_bbox_gives_adjacent_lattice_chips() -> None:
    from training.points import tile_centres

    s = Settings()
    centres = tile_centres((-74.02, 40.70, -73.95, 40.75), settings=s)
    grids = [chip_grid(la, lo, settings=s) for la, lo in centres]
    assert len(grids) >= 6
    xs = sorted({g.bounds[0] for g in grids})
    assert all(x % 2240 == 0 for x in xs) and all(b - a == 2240 for a, b in itertools.pairwise(xs))
    assert len({chip_id(g) for g in grids}) == len(grids)
    with pytest.raises(build_mod.DatasetError, match="bbox"):
        tile_centres((1.0, 2.0, 0.0, 3.0), settings=s)


def test_build_through_a_stac_api_and_a_socrata_endpoint(env: dict[str, Any], tmp_path: Path) -> None:
    """The default readers end to end: WorldCover found through a STAC API (rustac on loopback) and
    footprints paged from a Socrata endpoint, as a real build reads Planetary Computer and NYC Open Data."""
    from terramind_nyc.testing import HarnessUnavailable, StacServer
    from training.footprints import SocrataFootprints

    cat = env["cat"]
    try:
        stac = StacServer([env["settings"].catalog_path, *cat.collection_paths]).start()
    except HarnessUnavailable as exc:
        pytest.skip(str(exc))
    wgs84 = _buildings_utm(env["clear"]).to_crs("EPSG:4326")
    socrata = SocrataServer(multipolygon_features(wgs84.geometry)).__enter__()
    try:
        settings = env["settings"].replace(catalog_provider="stac-api", catalog_url=stac.url)
        footprints = SocrataFootprints(base_url=socrata.url, page_size=3,
                                       backoff_s=0.01)
        src = Sources(settings=settings, footprints=footprints, classes=env["classes"], bands=env["bands"])
        out = tmp_path / "ds"
        summary = build_dataset(_opts(env, out, ("clear", "tile_edge")), src)
    finally:
        socrata.__exit__()
        stac.stop()
    index = DatasetIndex.load(out)
    assert (summary.ok, summary.skipped, summary.failed) == (1, 1, 0), (summary, [(c.id, c.reason) for c in index.chips])
    (clear,) = index.ok()
    assert clear.provenance["worldcover"]["items"] == ["ESA_WorldCover_10m_2021_v200_clear"]
    assert clear.provenance["footprints"]["kind"] == "socrata" and clear.provenance["footprints"]["features"] == 4
    lulc = layout.read_raster(out / clear.files["lulc"])[0]
    names = env["classes"]["lulc"]
    assert (lulc[:, :100] == names.index("water")).all() and (lulc[:, 124:] == names.index("developed")).all()
    expected = rasterize_footprints(_buildings_utm(env["clear"]), shape=(224, 224),
                                    transform=tuple(env["clear"].transform)[:6])
    np.testing.assert_array_equal(layout.read_raster(out / clear.files["buildings"])[0], expected)
    # 4 footprints in pages of 3: two requests, in a stable order; the skipped chip never asked
    assert [r["$offset"][0] for r in socrata.requests] == ["0", "3"]
    assert all(r["$order"] == [":id"] for r in socrata.requests)
    assert index.meta["sources"]["footprints"]["kind"] == "socrata"
