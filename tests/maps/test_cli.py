"""``terramind-nyc map`` and ``fetch --map`` on the loopback world, through the fast linear runtime.

Settings reach the CLI as ``TERRAMIND_NYC_*`` variables (the way a user gives them); the AOI is a
lon/lat bbox a little inside the generated world's grid, so with ``--window-px 256`` the map is
2 x 2 windows read wholly from the generated imagery. The maps most tests look at are made once
per module (:func:`made`, :func:`cog_map`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from terramind_nyc.cli import cli
from terramind_nyc.settings import ENV_PREFIX, Settings

from .conftest import CENTER, WHEN

pytest.importorskip("torch")
pytest.importorskip("zarr")

WHEN_ARG = "/".join(WHEN)
#: Degrees the bbox is shrunk inside the world grid's lon/lat envelope: the envelope of a UTM square is
#: wider than the square, so 0.0005 still spills a pixel over it; 0.001 gives a 436 x 442 px grid inside.
SHRINK = 0.001


def _env_value(v: Any) -> str:
    """A setting as ``Settings.from_env`` reads it: none, true/false, comma-separated tuples."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return ",".join(str(p) for p in v)
    return str(v)


@pytest.fixture(scope="module")
def env(area_world: Any) -> dict[str, str | None]:
    """The world's settings as TERRAMIND_NYC_* variables; the caller's own ones and a Dask address unset."""
    s, default = area_world.settings, Settings()
    out: dict[str, str | None] = {k: None for k in os.environ if k.startswith(ENV_PREFIX)}
    out["DASK_SCHEDULER_ADDRESS"] = None
    for f in dataclasses.fields(Settings):
        if getattr(s, f.name) != getattr(default, f.name):
            out[ENV_PREFIX + f.name.upper()] = _env_value(getattr(s, f.name))
    assert Settings.from_env({k: v for k, v in out.items() if v is not None}) == s  # the spelling round-trips
    return out


@pytest.fixture(scope="module")
def bbox(area_world: Any) -> str:
    x0, y0, x1, y1 = area_world.grid.bounds_4326
    return f"{x0 + SHRINK},{y0 + SHRINK},{x1 - SHRINK},{y1 - SHRINK}"


def test_the_bbox_makes_a_two_by_two_map_inside_the_world(area_world: Any, fast: Any, bbox: str) -> None:
    from terramind_nyc.maps.aoi import resolve_aoi

    g, world = resolve_aoi(bbox, area_world.settings).grid, area_world.grid
    gx0, gy0, gx1, gy1 = g.bounds
    wx0, wy0, wx1, wy1 = world.bounds
    assert wx0 <= gx0 < gx1 <= wx1 and wy0 <= gy0 < gy1 <= wy1, (g.bounds, world.bounds)
    assert 256 < min(g.shape) and max(g.shape) <= 512  # 2 x 2 windows of 256 px


@pytest.fixture(scope="module")
def _linear() -> Iterator[None]:
    """The fast runtime for the module's shared maps (``fast`` is per test)."""
    from terramind_nyc.pipeline import Pipeline, use_pipeline
    from terramind_nyc.testing.model import linear_runtime

    rt = linear_runtime()
    with use_pipeline(Pipeline(runtimes=lambda settings, deadline=None: rt)):
        yield


def _map(env: dict[str, str | None], bbox: str, out: Path, *args: str, pre: tuple[str, ...] = ()) -> Result:
    return CliRunner().invoke(cli, [*pre, "map", "--aoi", bbox, "--when", WHEN_ARG, "--out", str(out),
                                    "--window-px", "256", *args], env=env)


def _ok(res: Result) -> Result:
    assert res.exit_code == 0, (res.output, res.exception)
    return res


@pytest.fixture(scope="module")
def made(env: dict[str, str | None], bbox: str, _linear: None, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Result, Path]:
    """A map made by ``terramind-nyc map`` with the defaults (text summary, progress bars)."""
    out = tmp_path_factory.mktemp("cli-map") / "m"
    return _ok(_map(env, bbox, out)), out


@pytest.fixture(scope="module")
def cog_map(env: dict[str, str | None], bbox: str, _linear: None, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Result, Path]:
    """A map made with ``-q ... --format cog --json``."""
    out = tmp_path_factory.mktemp("cli-map") / "cog"
    return _ok(_map(env, bbox, out, "--format", "cog", "--json", pre=("-q",))), out


def test_map_writes_the_folder_and_says_what_it_did(made: tuple[Result, Path], fast: Any) -> None:
    res, out = made
    for name in ("manifest.json", "map.zarr", "quicklook.png", "map.html"):
        assert (out / name).exists(), name
    assert json.loads((out / "manifest.json").read_text())["layout"]["window_px"] == 256
    recs = [json.loads(p.read_text()) for p in sorted((out / "windows").glob("*.json"))]
    assert len(recs) == 4 and {r["status"] for r in recs} == {"done"}
    assert res.stdout == ""
    summary = [ln for ln in res.stderr.splitlines() if "windows:" in ln]
    assert summary and summary[-1].startswith("4 windows: 0 already done, 4 computed, 0 failed in "), res.stderr
    assert summary[-1].endswith(f"-> {out}")


def test_json_summary_counts_every_window_done(cog_map: tuple[Result, Path], fast: Any) -> None:
    res, out = cog_map
    d = json.loads(res.stdout)
    assert d["windows"] == 4 and d["done"] == d["windows"] and d["skipped"] == 0
    assert d["failed"] == 0 and d["failures"] == [] and d["out"] == str(out)
    assert {Path(f).name for f in d["files"]} >= {"quicklook.png", "map.html"}
    assert all(Path(f).exists() for f in d["files"])


def test_rerunning_the_same_command_resumes(made: tuple[Result, Path], env: dict[str, str | None], bbox: str,
                                            fast: Any, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(made[1], out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "windows").glob("*.json")}
    d = json.loads(_ok(_map(env, bbox, out, "--json")).stdout)
    assert (d["windows"], d["skipped"], d["done"], d["failed"]) == (4, 4, 0, 0)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "windows").glob("*.json")} == before  # nothing recomputed


def _cog_overviews(height: int, width: int, tile: int = 512) -> list[int]:
    """The overview factors GDAL's COG driver makes by default (OVERVIEWS=AUTO): down to one tile."""
    out, f = [], 1
    while max(-(-height // f), -(-width // f)) > tile:
        f *= 2
        out.append(f)
    return out


def test_format_cog_writes_cloud_optimised_geotiffs(cog_map: tuple[Result, Path], fast: Any) -> None:
    rasterio = pytest.importorskip("rasterio")
    res, out = cog_map
    date = WHEN[0]
    names = {f"map_lulc_{date}.tif": 1, f"map_buildings_{date}.tif": 1, f"map_prob_lulc_{date}.tif": 5,
             f"map_prob_buildings_{date}.tif": 2}
    assert {Path(f).name for f in json.loads(res.stdout)["files"]} >= set(names)
    manifest = json.loads((out / "manifest.json").read_text())
    shape = tuple(manifest["layout"]["grid"][k] for k in ("height", "width"))
    for name, count in names.items():
        with rasterio.open(out / name) as ds:
            assert ds.count == count, name
            assert (ds.height, ds.width) == shape, name
            assert set(ds.block_shapes) == {(512, 512)}, (name, ds.block_shapes)  # tiled, 512 px tiles
            # GDAL's COG driver halves until the raster fits one 512 px tile: this 2 x 2 window map already does,
            # so it has none (test_cog.py checks overviews of larger rasters)
            assert ds.overviews(1) == _cog_overviews(ds.height, ds.width), (name, ds.overviews(1))
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", (name, ds.tags(ns="IMAGE_STRUCTURE"))
            assert ds.crs.to_string() == manifest["layout"]["grid"]["crs"]
    with rasterio.open(out / f"map_lulc_{date}.tif") as ds:
        assert ds.nodata == 255 and ds.colormap(1)[0][:3] == (0x1F, 0x78, 0xB4)  # class 0 "water" of the tiny model


def test_quiet_shows_no_progress_bar(made: tuple[Result, Path], cog_map: tuple[Result, Path], fast: Any) -> None:
    loud, quiet = made[0], cog_map[0]
    assert "window" in loud.stderr and "%|" in loud.stderr  # tqdm's bar: "map: 100%|...| 4/4 [..., 2.05window/s"
    assert json.loads(quiet.stdout)["done"] == 4  # it did compute (and wrote GeoTIFFs, which have bars too)
    assert quiet.stderr == "", quiet.stderr  # -q and --json: no bar, no log line, no summary line


def test_another_map_in_the_folder_is_refused_unless_overwrite(made: tuple[Result, Path], env: dict[str, str | None],
                                                               bbox: str, fast: Any, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(made[1], out)
    res = _map(env, bbox, out, "--prob-dtype", "float16")
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: InvalidInputError: ") and "another map" in lines[0], lines
    assert json.loads((out / "manifest.json").read_text())["layout"]["prob_dtype"] == "uint8"  # left as it was
    d = json.loads(_ok(_map(env, bbox, out, "--prob-dtype", "float16", "--overwrite", "--no-render", "--json")).stdout)
    assert (d["done"], d["skipped"]) == (4, 0)
    assert json.loads((out / "manifest.json").read_text())["layout"]["prob_dtype"] == "float16"


def _point_file(tmp_path: Path) -> str:
    p = tmp_path / "point.geojson"
    p.write_text(json.dumps({"type": "Feature", "properties": {},
                             "geometry": {"type": "Point", "coordinates": [CENTER[1], CENTER[0]]}}))
    return str(p)


@pytest.mark.parametrize("case", ["london", "point-geojson", "overlapping-when", "unknown-borough"])
def test_bad_input_is_one_error_line(case: str, env: dict[str, str | None], bbox: str, fast: Any,
                                     tmp_path: Path) -> None:
    out = tmp_path / "m"
    aoi, when, expect = {
        "london": ("-0.25,51.45,0.05,51.6", [WHEN_ARG], ("OutsideDomainError", "outside the NYC domain")),
        "point-geojson": (_point_file(tmp_path), [WHEN_ARG], ("InvalidInputError", "'Point'", "not a polygon")),
        "overlapping-when": (bbox, ["2024-07-01/2024-07-20", "2024-07-10/2024-08-10"],
                             ("InvalidInputError", "overlap")),
        "unknown-borough": ("gotham", [WHEN_ARG], ("InvalidInputError", "unknown AOI", "'gotham'")),
    }[case]
    args = ["map", "--aoi", aoi, *[a for w in when for a in ("--when", w)], "--out", str(out), "--window-px", "256"]
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)  # no traceback
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expect[0]}: "), res.stderr
    assert all(e in lines[0] for e in expect[1:]), lines[0]
    assert "Traceback" not in res.output and res.stdout == ""
    assert not out.exists()  # refused before any work


@pytest.mark.slow  # waits out the CLI's 10 s connect timeout
def test_an_unreachable_scheduler_is_one_error_line(env: dict[str, str | None], bbox: str, fast: Any,
                                                    tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "m"
    t0 = time.monotonic()
    res = _map(env, bbox, out, "--scheduler", "tcp://127.0.0.1:1")  # nothing listens on port 1
    elapsed = time.monotonic() - t0
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: InvalidInputError: "), res.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in lines[0], lines[0]
    # a bound on a hang, not a benchmark: the CLI gives up after its 10 s, not distributed's 30 s default
    assert elapsed < 25, elapsed
    assert not out.exists()


def _fetch(env: dict[str, str | None], lat: float, lon: float, out: Path) -> tuple[dict[str, Any], str]:
    res = _ok(CliRunner().invoke(cli, ["-v", "fetch", str(lat), str(lon), "--when", WHEN_ARG, "--map", str(out),
                                       "--json"], env=env))
    return json.loads(res.stdout), res.stderr


def test_fetch_answers_from_the_map_inside_it(made: tuple[Result, Path], env: dict[str, str | None],
                                              fast: Any) -> None:
    d, _ = _fetch(env, *CENTER, made[1])
    notes = [w for w in d["warnings"] if "answered from the map" in w]
    assert len(notes) == 1 and repr(made[1].name) in notes[0], d["warnings"]
    assert d["grid"]["width"] == d["grid"]["height"] == 224
    assert abs(sum(d["lulc_fractions"].values()) - 1) < 1e-6


def test_fetch_falls_back_to_a_live_fetch_where_the_map_cannot_answer(made: tuple[Result, Path], area_world: Any,
                                                                      env: dict[str, str | None], fast: Any) -> None:
    from terramind_nyc.grid import chip_grid
    from terramind_nyc.maps import CityMap

    lat, lon = CENTER[0] + 0.012, CENTER[1]  # ~1.3 km north: the 2240 m window pokes out of the map's top edge
    req, world = chip_grid(lat, lon, settings=area_world.settings), area_world.grid
    assert req.bounds[3] > CityMap.open(made[1]).grid.bounds[3]  # really not inside the map
    assert req.bounds[3] <= world.bounds[3] + 320  # but inside the generated imagery (5120 m around CENTER)
    d, log = _fetch(env, lat, lon, made[1])
    assert not [w for w in d["warnings"] if "answered from the map" in w], d["warnings"]
    assert "the map cannot answer" in log and "is not inside the map" in log, log  # -v: why it went live
    assert d["grid"]["width"] == 224 and abs(sum(d["lulc_fractions"].values()) - 1) < 1e-6


def _colour_count(pixels: np.ndarray, hex_colour: str) -> int:
    rgb = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return int((pixels == rgb).all(axis=1).sum())


@pytest.mark.slow
def test_the_written_page_renders_in_headless_chromium(made: tuple[Result, Path], fast: Any, tmp_path: Path) -> None:
    from PIL import Image

    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("no chromium on PATH (tests/setup_system.sh installs it where it can)")
    page, png = made[1] / "map.html", tmp_path / "shot.png"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", "--hide-scrollbars", "--window-size=1000,800",
               f"--screenshot={png}", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert png.exists(), f"no screenshot (rc {done.returncode}): {done.stderr[-2000:]}"
    with Image.open(png) as im:
        assert im.size == (1000, 800)
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 20, "the page looks blank"
    heads = json.loads((made[1] / "manifest.json").read_text())["layout"]["heads"]
    legend = [*heads["lulc"]["colors"], heads["buildings"]["colors"][1]]
    counts = {c: _colour_count(pixels, c) for c in legend}
    assert all(n >= 100 for n in counts.values()), counts  # each legend swatch (14 x 14 inside its border)
    assert sum(counts.values()) > 50_000, counts  # and the map itself, drawn large in those colours
