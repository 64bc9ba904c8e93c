"""map_area on the loopback world: stitching, one search per collection, resume, failures, tokens."""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from terramind_nyc.errors import ChipError, InvalidInputError

from .conftest import CENTER, SMALL, WHEN

pytest.importorskip("torch")
zarr = pytest.importorskip("zarr")

from terramind_nyc import fetch  # noqa: E402
from terramind_nyc.maps import map_area  # noqa: E402


def _arrays(out: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(out / "map.zarr", mode="r")
    return {k: np.asarray(g[k]) for k in sorted(g.array_keys())}


@pytest.fixture(scope="module")
def float_map(area_world: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("map") / "f32"
    run = map_area(area_world.grid, WHEN, out, settings=area_world.settings, prob_dtype="float32", progress=False,
                   **SMALL)
    assert run.complete and run.windows == 4 and run.done == 4, run
    return out


def test_stitched_windows_equal_one_tiled_pass_over_the_union(area_world: Any, float_map: Path) -> None:
    r = fetch(*CENTER, size_m=4480, when=WHEN, settings=area_world.settings)
    assert r.grid == area_world.grid
    got = _arrays(float_map)
    for head, p in r.probabilities.items():
        assert np.abs(got[f"prob_{head}"][0] - p).max() <= 1e-5, head
    lulc = got["lulc"][0]
    valid = got["valid"][0]
    assert valid.mean() > 0.9
    assert np.array_equal(lulc[valid], np.argmax(r.probabilities["lulc"], axis=0)[valid])
    assert (lulc[~valid] == 255).all()


def test_manifest_and_window_records_carry_provenance(float_map: Path) -> None:
    m = json.loads((float_map / "manifest.json").read_text())
    assert m["format"] == "terramind-nyc-map" and m["layout"]["window_px"] == 256
    assert m["layout"]["model"]["checkpoint"]["sha256"]
    recs = sorted((float_map / "windows").glob("*.json"))
    assert len(recs) == 4
    for f in recs:
        d = json.loads(f.read_text())
        assert d["status"] == "done"
        s2 = d["chip"]["provenance"]["S2L2A"]
        assert s2["item_ids"] and s2["datetimes"][0].startswith("2024-07")
        assert d["model"]["backend"] and d["model"]["precision"] == "fp32"
        assert "?" not in json.dumps(d)  # no signed URL anywhere


def test_one_search_per_collection_for_the_whole_area(area_world: Any, fast: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from terramind_nyc.imagery import local_catalog

    calls: list[str] = []
    real = local_catalog.LocalBackend.search_dicts

    def counted(self: Any, collection: str, *a: Any, **k: Any) -> Any:
        calls.append(collection)
        return real(self, collection, *a, **k)

    monkeypatch.setattr(local_catalog.LocalBackend, "search_dicts", counted)
    run = map_area(area_world.grid, WHEN, tmp_path / "m", settings=area_world.settings, progress=False, render=False,
                   **SMALL)
    assert run.done == 4
    s = area_world.settings
    assert sorted(calls) == sorted([s.s2_collection, s.s1_collection, s.dem_collection])


def test_resume_skips_done_windows_and_recomputes_missing_or_degraded_ones(area_world: Any, float_map: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(float_map, out)
    before = _arrays(out)
    again = map_area(area_world.grid, WHEN, out, settings=area_world.settings, prob_dtype="float32", progress=False,
                     render=False, **SMALL)
    assert (again.done, again.skipped) == (0, 4) and again.complete
    (out / "windows" / "t0_r1_c0.json").unlink()
    g = zarr.open_group(out / "map.zarr", mode="r+")
    g["lulc"][0, 256:448, 0:256] = 7  # damage the window that lost its record
    third = map_area(area_world.grid, WHEN, out, settings=area_world.settings, prob_dtype="float32", progress=False,
                     render=False, **SMALL)
    assert (third.done, third.skipped) == (1, 3)
    after = _arrays(out)
    for k in before:
        assert np.array_equal(before[k], after[k]), k
    # a window done without S1 because its read failed (chip.transient) runs again on resume
    rec_path = out / "windows" / "t0_r0_c1.json"
    rec = json.loads(rec_path.read_text())
    rec["chip"]["transient"] = ["S1RTC"]
    rec_path.write_text(json.dumps(rec))
    fourth = map_area(area_world.grid, WHEN, out, settings=area_world.settings, prob_dtype="float32", progress=False,
                      render=False, **SMALL)
    assert (fourth.done, fourth.skipped) == (1, 3)
    assert json.loads(rec_path.read_text())["chip"]["transient"] == []


def test_a_failing_window_is_recorded_typed_never_half_written_and_retried(area_world: Any, fast: Any, tmp_path: Path,
                                                                          monkeypatch: Any) -> None:
    from terramind_nyc.imagery import reader

    real = reader.read_chip
    x0 = area_world.grid.bounds[0]

    def failing(grid: Any, **kw: Any) -> Any:
        if grid.bounds[0] > x0 + 1000:  # the windows of column 1 (column 0's reads start at the map's edge)
            raise ChipError("injected failure of this window's reads", kind="server")
        return real(grid, **kw)

    monkeypatch.setattr(reader, "read_chip", failing)
    out = tmp_path / "m"
    run = map_area(area_world.grid, WHEN, out, settings=area_world.settings, progress=False, render=False, **SMALL)
    assert run.done == 2 and len(run.failed) == 2 and not run.complete
    assert {f["error_type"] for f in run.failed} == {"ChipError"}
    rec = json.loads((out / "windows" / "t0_r0_c1.json").read_text())
    assert rec["status"] == "failed" and "injected failure" in rec["error"]
    a = _arrays(out)
    assert (a["lulc"][0, :, 256:] == 255).all() and not a["valid"][0, :, 256:].any()  # nothing written
    monkeypatch.setattr(reader, "read_chip", real)
    again = map_area(area_world.grid, WHEN, out, settings=area_world.settings, progress=False, render=False, **SMALL)
    assert (again.done, again.skipped) == (2, 2) and again.complete
    assert json.loads((out / "windows" / "t0_r0_c1.json").read_text())["status"] == "done"


def test_asset_urls_are_signed_inside_each_task_with_the_token_of_the_moment(area_world: Any, fast: Any, tmp_path: Path) -> None:
    """A signer whose token changes during the run: every window reads with the token current when
    it ran, none with the token of the planning step."""
    token = ["plan"]
    lock = threading.Lock()

    def signer(href: str) -> str:
        return f"{href}?token={token[0]}"

    class Rotating(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            def rotated() -> Any:
                with lock:
                    token[0] = f"w{args[0].window[0]}{args[0].window[1]}"
                    return fn(*args, **kwargs)
            return super().submit(rotated)

    server = area_world.cog_server
    server.reset()
    with Rotating(max_workers=2) as ex:
        run = map_area(area_world.grid, WHEN, tmp_path / "m", settings=area_world.settings, progress=False,
                       render=False, executor=ex, signer=signer, **SMALL)
    assert run.done == 4
    tokens = {r.query for r in server.requests if "/area/" in r.path}
    assert tokens == {"token=w00", "token=w01", "token=w10", "token=w11"}


@pytest.mark.parametrize("bad,match", [
    ({"window_px": 200, "chunk_px": 128}, "multiple"),
    ({"prob_dtype": "int8"}, "prob_dtype"),
    ({"formats": ("png",)}, "formats"),
    ({"executor": "dask"}, "Executor"),
])
def test_bad_options_are_refused_before_any_work(area_world: Any, fast: Any, tmp_path: Path, bad: dict[str, Any],
                                                 match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        map_area(area_world.grid, WHEN, tmp_path / "m", settings=area_world.settings, progress=False, **bad)
    assert not (tmp_path / "m").exists()


def test_out_holding_another_map_is_refused_unless_overwrite(area_world: Any, float_map: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(float_map, out)
    with pytest.raises(InvalidInputError, match="another map"):
        map_area(area_world.grid, WHEN, out, settings=area_world.settings, progress=False, **SMALL)  # uint8 now
    run = map_area(area_world.grid, WHEN, out, settings=area_world.settings, progress=False, render=False,
                   overwrite=True, **SMALL)
    assert run.done == 4
    assert json.loads((out / "manifest.json").read_text())["layout"]["prob_dtype"] == "uint8"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        map_area(area_world.grid, WHEN, other, settings=area_world.settings, progress=False, **SMALL)


def test_read_only_out_is_refused_up_front(area_world: Any, fast: Any, tmp_path: Path) -> None:
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions; a path under a file cannot be written by anyone
            target = tmp_path / "file.txt"
            target.write_text("x")
            ro = target / "map"
        with pytest.raises(InvalidInputError, match="write"):
            map_area(area_world.grid, WHEN, ro, settings=area_world.settings, progress=False, **SMALL)
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_several_date_windows_make_a_time_dimension(area_world: Any, fast: Any, tmp_path: Path) -> None:
    when = [("2024-07-01", "2024-07-20"), ("2024-07-21", "2024-08-10")]
    run = map_area(area_world.grid, when, tmp_path / "m", settings=area_world.settings, progress=False, render=False,
                   **SMALL)
    # the world has one S2 scene (2024-07-18): the first window maps, the second finds no scene
    assert run.windows == 8 and run.done == 4 and len(run.failed) == 4
    assert {f["error_type"] for f in run.failed} == {"NoSceneError"}
    a = _arrays(tmp_path / "m")
    assert a["lulc"].shape == (2, 448, 448) and a["valid"][0].any() and not a["valid"][1].any()
    with pytest.raises(InvalidInputError, match="overlap"):
        map_area(area_world.grid, [("2024-07-01", "2024-07-20"), ("2024-07-10", "2024-08-10")], tmp_path / "n",
                 settings=area_world.settings, progress=False)
