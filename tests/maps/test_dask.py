"""The same map on a Dask LocalCluster (worker processes) as in-process, bit for bit; killed workers
and a killed run lose nothing. The tiny checkpoint's ONNX export on one thread everywhere (so float
sums are the same on every process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import SMALL, WHEN

pytest.importorskip("torch")
zarr = pytest.importorskip("zarr")
distributed = pytest.importorskip("distributed")

from terramind_nyc.maps import map_area  # noqa: E402
from terramind_nyc.maps.window import sub_grid  # noqa: E402

pytestmark = pytest.mark.slow

#: Two windows of 160 px (chunks of 32): two tiles each on the tiny model.
TWO = {"window_px": 160, "chunk_px": 32}


def _arrays(out: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(out / "map.zarr", mode="r")
    return {k: np.asarray(g[k]) for k in sorted(g.array_keys())}


def _done(out: Path) -> list[str]:
    import json

    names = []
    for f in (out / "windows").glob("t*_r*_c*.json"):  # not a record being written (.t0_r0_c1.json.*.tmp.json)
        try:
            if json.loads(f.read_text()).get("status") == "done":
                names.append(f.name)
        except ValueError:
            pass
    return names


@pytest.fixture(scope="module")
def world(area_world: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """(settings: the session's tiny ONNX export on ONNX Runtime with one thread, so workers start in a
    second and sums are the same on every process; a 160 x 320 px grid: two windows of 160 px)."""
    pytest.importorskip("onnxruntime")
    from onnx_artifacts import exported_tiny

    s = area_world.settings.replace(checkpoint=str(exported_tiny(tmp_path_factory)), backend="onnx", threads=1)
    return s, sub_grid(area_world.grid, (96, 256), (64, 384))


@pytest.fixture(scope="module")
def local_map(world: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    s, grid = world
    out = tmp_path_factory.mktemp("dask") / "local"
    run = map_area(grid, WHEN, out, settings=s, progress=False, render=False, **TWO)
    assert run.complete and run.windows == 2
    return out


@pytest.fixture(scope="module")
def client() -> Any:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        yield c


def test_localcluster_map_is_bitwise_identical_to_the_local_one(world: tuple[Any, Any], local_map: Path,
                                                                client: Any, tmp_path: Path) -> None:
    s, grid = world
    out = tmp_path / "dask"
    run = map_area(grid, WHEN, out, settings=s, progress=False, render=False, executor=client.get_executor(), **TWO)
    assert run.complete
    import json

    workers = {json.loads(f.read_text())["worker"] for f in (out / "windows").glob("*.json")}
    assert workers and all(not w.endswith(f":{os.getpid()}") for w in workers)  # ran on the workers
    a, b = _arrays(local_map), _arrays(out)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_a_worker_killed_mid_run_loses_nothing(world: tuple[Any, Any], local_map: Path, client: Any,
                                              tmp_path: Path) -> None:
    s, grid = world
    out = tmp_path / "killed"
    pids = client.run(os.getpid)
    killed: list[int] = []

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(pids[busy[0]])
            time.sleep(0.05)

    t = threading.Thread(target=kill_when_busy)
    t.start()
    run = map_area(grid, WHEN, out, settings=s, progress=False, render=False, executor=client.get_executor(), **TWO)
    t.join()
    assert killed, "no worker was busy to kill"
    if not run.complete:  # Dask gave up on the task: the resume finishes it
        run = map_area(grid, WHEN, out, settings=s, progress=False, render=False, **TWO)
    assert run.complete
    a, b = _arrays(local_map), _arrays(out)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_a_killed_run_resumes_with_nothing_lost_or_duplicated(area_world: Any, fast: Any, tmp_path: Path) -> None:
    """A run killed (SIGKILL) after its first window; the resumed run computes the rest only, and the
    map equals an uninterrupted one. The fast linear runtime in both processes; reads slowed down."""
    import json

    s, grid = area_world.settings, area_world.grid
    whole = tmp_path / "whole"
    assert map_area(grid, WHEN, whole, settings=s, progress=False, render=False, **SMALL).complete
    out = tmp_path / "resumed"
    script = textwrap.dedent(f"""
        import json, sys
        from terramind_nyc.grid import ChipGrid
        from terramind_nyc.maps import map_area
        from terramind_nyc.pipeline import Pipeline, use_pipeline
        from terramind_nyc.settings import Settings
        from terramind_nyc.testing.model import linear_runtime
        rt = linear_runtime()
        s = Settings(**json.loads(sys.argv[1]))
        with use_pipeline(Pipeline(runtimes=lambda settings, deadline=None: rt)):
            map_area(ChipGrid.from_dict(json.loads(sys.argv[2])), {WHEN!r}, sys.argv[3], settings=s, progress=False,
                     render=False, window_px=256, chunk_px=128)
    """)
    keep = ("catalog_provider", "catalog_path", "checkpoint", "precision", "signer", "cache_enabled", "deadline_s")
    settings = {k: v for k, v in s.to_dict().items() if k in keep}
    area_world.cog_server.faults.delay(0.15, "*/area/*.tif")  # every read waits: windows take seconds
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(settings), json.dumps(grid.to_dict()), str(out)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _done(out):
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    area_world.cog_server.faults.clear()
    done_before = len(_done(out))
    assert 1 <= done_before < 4
    run = map_area(grid, WHEN, out, settings=s, progress=False, render=False, **SMALL)
    assert run.complete and run.skipped == done_before and run.done == 4 - done_before
    a, b = _arrays(whole), _arrays(out)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert len(list((out / "windows").glob("*"))) == 4  # a record the kill cut short was cleared
