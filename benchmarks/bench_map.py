"""Benchmark city maps: point answers from a written map, the Dask engine vs the in-process one,
throughput and the model's share of a window, and a whole-NYC estimate.

Runs offline: a generated clear S2 / S1 / DEM scene over the area (``write_area_catalog``, local
file hrefs for the ``local`` provider) and a random-weight artifact (``--map-encoder``, tiny by
default). Every figure of one run is measured side by side in this run; compare ratios, not
absolute seconds across machines.

    .venv/bin/python benchmarks/bench_map.py [--area-m 10240] [--window-px 512] [--chunk-px 256]
        [--points 500] [--encoder tiny|base] [--map-encoder tiny|base] [--threads N] [--rounds 1]
        [--skip-dask] [--workdir DIR] [--json]

Figures (``--json``: one JSON object on the last line of stdout):

- points_ms_p50 / points_ms_p99 / points_ms_mean: ``CityMap.open(map).at(lat, lon)`` on the map
  the in-process run wrote, ``--points`` random points whose default 2240 m window lies inside
  the map, every other one with ``radius_m=300``, after one untimed call. Target p99 < 10 ms
  (goal 1 ms).
- dask_vs_local: the same area (fresh folder each, same settings) mapped by the default engine
  (a 2-thread pool here, one model pass at a time) and by ``distributed.LocalCluster(n_workers=2,
  threads_per_worker=1, processes=True)`` through ``Client(cluster).get_executor()``: ratio of
  the ``MapRun.seconds`` (dask / local; median of the per-round ratios, rounds alternate which
  engine goes first). Before the timed runs each engine maps a small warm-up area (1 x 2 windows),
  and every Dask worker loads the model (``Client.run``), so neither model loads nor the cluster
  start are timed; ``dask_start_s`` is the cluster start. Target <= 1.15. Null when
  ``--skip-dask`` or when ``distributed`` is not installed (``dask_skipped`` says why).
- windows_per_s: done windows / wall seconds of the in-process run; model_share:
  ``timings["model"]`` / ``seconds`` of that run (target >= 0.8; with the tiny network the model
  is a small part of a window, so this figure means something with ``--map-encoder base``).
  dask_model_share is the same quotient for the Dask run (summed over its two workers, so it can
  pass 1).
- city_estimate_s: a whole-NYC pass: 625 tiles (224 px at stride 192 over the 4800 x 4800 px
  of the 48 x 48 km domain) x (seconds per tile + non-model seconds per tile). Seconds per tile:
  the CPU paths ``bench_backends.py`` plans on this machine (``--tile-paths fast``, the default:
  ONNX Runtime fp32, OpenVINO fp32 / bf16, which beat torch there; ``all`` adds torch fp32 /
  bf16), each in a fresh process on one 224 px chip (= one tile) of a random-weight
  ``--encoder`` network (``bench_backends``' artifact and worker, ``--tile-threads`` threads),
  the fastest path's median. ``--encoder tiny`` (default, quick) or ``base`` (the real estimate: builds the base
  artifact and its ONNX export once, a few minutes; reused from ``--workdir``). Non-model seconds
  per tile: (read + write summed task seconds) / tiles computed, from the in-process run; they
  are summed task seconds, and reads overlap the other window's model pass, so this is an upper
  bound. Goal < 300 s.
- the area (px, windows, tiles of the whole-area plan, tiles computed by the windows) and the
  settings (window_px, chunk_px, prob_dtype, backend, precision, threads) the maps ran with,
  and the CPU (model name, core count, its bf16 flags ``amx_bf16`` / ``avx512_bf16``), with the
  1-minute load average at the start and the end (other work on the same cores moves every figure).

Maps are written with ``formats=("zarr",)`` and ``render=False`` (no quicklook), progress off,
into a fresh folder under the work folder, removed at the end; ``--workdir`` keeps the generated
imagery and the artifacts for the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_backends' artifact and worker

#: Where the generated world lies (Midtown) and its date window (the scene is from 2024-07-18).
CENTER = (40.7484, -73.9857)
WHEN = ("2024-07-01", "2024-07-31")
#: The whole-NYC domain: 48 x 48 km at 10 m.
CITY_PX = 4800
P99_TARGET_MS, P99_GOAL_MS = 10.0, 1.0
DASK_TARGET = 1.15
MODEL_SHARE_TARGET = 0.8
CITY_GOAL_S = 300.0


def _cpu() -> dict[str, Any]:
    from terramind_nyc.model.precision import cpu_bf16_flags, cpu_model

    flags = list(cpu_bf16_flags())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return {"cpu_model": cpu_model(), "cpu_cores": usable, "cpu_bf16_flags": flags,
            "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags}


_T0 = time.perf_counter()


def _say(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def _load() -> float | None:
    """The 1-minute load average (other processes on these cores change every figure)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# ----------------------------------------------------------------------------------------
# The world: imagery and a checkpoint
# ----------------------------------------------------------------------------------------
def _world(workdir: Path, area_m: float, encoder: str, threads: int | None) -> tuple[Any, Any]:
    """(settings, area grid): the generated catalog over the area and a random-weight artifact (built once)."""
    from terramind_nyc.grid import chip_grid
    from terramind_nyc.settings import Settings
    from terramind_nyc.testing.area_catalog import write_area_catalog

    base = Settings(signer="none", cache_enabled=False, deadline_s=120.0, http_timeout_s=5.0, http_retries=2,
                    http_backoff_s=0.05)
    root = workdir / f"world-{area_m:g}m"
    items = root / "items.json"
    if not items.exists():
        _say(f"writing the imagery over {area_m:g} m x {area_m:g} m to {root} ...")
        write_area_catalog(root, base, [CENTER], size_m=area_m + 640.0)
    if encoder == "tiny":
        ckpt = workdir / "tiny-map"
        if not (ckpt / "config.json").exists():
            from terramind_nyc.testing.model import make_tiny_artifact

            make_tiny_artifact(ckpt, seed=5)
    else:
        from bench_backends import _artifact

        ckpt = _artifact(workdir, encoder)
    s = base.replace(catalog_provider="local", catalog_path=str(items), checkpoint=str(ckpt), threads=threads)
    return s, chip_grid(*CENTER, size_m=area_m, settings=s)


def _warm_worker(s: Any) -> dict[str, Any]:
    """Run on every Dask worker: load the model (the process's runtime) and the map modules."""
    import terramind_nyc.imagery.reader
    import terramind_nyc.maps.window  # noqa: F401
    from terramind_nyc.pipeline import current_pipeline

    info = current_pipeline().runtimes(s, None).model_info()
    torch_threads = None
    if "torch" in sys.modules:
        torch_threads = sys.modules["torch"].get_num_threads()
    return {"backend": info.backend, "precision": info.precision, "threads": info.threads,
            "torch_threads": torch_threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def _map(area: Any, out: Path, s: Any, executor: Any, args: argparse.Namespace) -> Any:
    from terramind_nyc.maps import map_area

    run = map_area(area, WHEN, out, settings=s, executor=executor, window_px=args.window_px,
                   chunk_px=args.chunk_px, prob_dtype=args.prob_dtype, progress=False, render=False,
                   formats=("zarr",), resume=False, overwrite=True)
    if not run.complete:
        first = run.failed[0] if run.failed else {}
        raise SystemExit(f"the map {out} is not complete ({run.done} done, {len(run.failed)} failed of "
                         f"{run.windows}): {first.get('error_type')}: {first.get('error')}")
    return run


def _tiles_computed(path: Path) -> int:
    from terramind_nyc.maps.store import MapStore

    return sum(int(r.get("n_tiles", 0)) for r in MapStore.open(path).records().values() if r.get("status") == "done")


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------
def _points(path: Path, grid: Any, s: Any, n: int, seed: int = 0) -> dict[str, Any]:
    """``CityMap.at`` on ``n`` random points whose default window lies inside the map (every other one r=300 m)."""
    from pyproj import Transformer

    from terramind_nyc.maps import CityMap

    m = CityMap.open(path)
    x0, y0, x1, y1 = grid.bounds
    margin = s.size_m / 2 + 4 * s.resolution_m  # the request's window, snapped to the lattice, stays inside
    if x1 - x0 <= 2 * margin or y1 - y0 <= 2 * margin:
        raise SystemExit(f"the area ({x1 - x0:g} m) is too small for {s.size_m:g} m point windows; raise --area-m")
    import numpy as np

    rng = np.random.default_rng(seed)
    xs = rng.uniform(x0 + margin, x1 - margin, n + 1)
    ys = rng.uniform(y0 + margin, y1 - margin, n + 1)
    lons, lats = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    m.at(float(lats[0]), float(lons[0]), settings=s)  # warm-up: imports, zarr metadata, first chunk reads
    times = []
    for k in range(1, n + 1):
        radius = 300.0 if k % 2 == 0 else None
        t = time.perf_counter()
        m.at(float(lats[k]), float(lons[k]), radius_m=radius, settings=s)
        times.append(time.perf_counter() - t)
    ms = np.asarray(times) * 1000.0
    return {"points": n, "points_ms_p50": float(np.percentile(ms, 50)), "points_ms_p99": float(np.percentile(ms, 99)),
            "points_ms_mean": float(ms.mean()), "points_ms_max": float(ms.max())}


def _per_tile(workdir: Path, encoder: str, threads: int, repeats: int, which: str) -> dict[str, Any]:
    """Seconds per 224 px tile on the CPU paths bench_backends plans (``which``); the fastest wins."""
    from bench_backends import _artifact, _plan_paths, _worker

    artifact = _artifact(workdir, encoder)
    plan, skipped = _plan_paths()
    if which == "fast" and any(b != "torch" for b, _ in plan):
        # bench_backends: ONNX Runtime and OpenVINO beat torch at either precision on every CPU measured
        skipped += [{"backend": b, "precision": p, "reason": "not measured (--tile-paths fast; torch was slower "
                     "than ONNX Runtime / OpenVINO in bench_backends.py)"} for b, p in plan if b == "torch"]
        plan = [(b, p) for b, p in plan if b != "torch"]
    paths = []
    for backend, precision in plan:
        _say(f"seconds per tile: {encoder} {backend} {precision} ...")
        r = _worker(backend, artifact, threads=threads, repeats=repeats, warmup=1,
                    out=workdir / f"tile-{encoder}-{backend}-{precision}.npz", precision=precision)
        paths.append({"backend": backend, "precision_requested": precision, "precision_ran": r["precision"],
                      "s_per_tile": statistics.median(r["times"]) / max(1, int(r["n_tiles"])),
                      "first_result_s": r["first_result_s"]})
    best = min(paths, key=lambda p: p["s_per_tile"])
    return {"tile_paths": paths, "tile_skipped": skipped, "tile_best": f"{best['backend']} {best['precision_ran']}",
            "s_per_tile": best["s_per_tile"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--area-m", type=float, default=10240.0,
                    help="side of the mapped square in metres (default 10240: 1024 px, 2 x 2 windows of 512)")
    ap.add_argument("--window-px", type=int, default=512, help="map_area window_px (default 512)")
    ap.add_argument("--chunk-px", type=int, default=256, help="map_area chunk_px (default 256)")
    ap.add_argument("--prob-dtype", default="uint8", choices=["uint8", "float16", "float32"])
    ap.add_argument("--points", type=int, default=500, help="CityMap.at calls timed (default 500)")
    ap.add_argument("--encoder", default="tiny", choices=["tiny", "small", "base", "large"],
                    help="network of the seconds-per-tile figure behind city_estimate_s (default tiny, quick; "
                         "base for the real estimate)")
    ap.add_argument("--map-encoder", default="tiny", choices=["tiny", "base"],
                    help="network of the map runs (default tiny; base uses bench_backends' artifact, auto backend)")
    ap.add_argument("--threads", type=int, default=None,
                    help="Settings.threads of the map runs (default: the library default)")
    ap.add_argument("--tile-threads", type=int, default=2, help="threads of the seconds-per-tile workers (default 2)")
    ap.add_argument("--tile-repeats", type=int, default=5, help="timed tiles per backend path (default 5)")
    ap.add_argument("--tile-paths", default="fast", choices=["fast", "all"],
                    help="backend paths of the seconds-per-tile figure: fast (default: ONNX Runtime and OpenVINO, "
                         "fp32 and bf16) or all (torch fp32 / bf16 too)")
    ap.add_argument("--rounds", type=int, default=1, help="local + dask map pairs, order alternating (default 1)")
    ap.add_argument("--skip-dask", action="store_true", help="do not start a LocalCluster (dask_vs_local null)")
    ap.add_argument("--workdir", default=None, help="keep / reuse the world and artifacts here (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object (last line)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.points < 1 or args.tile_repeats < 1 or args.tile_threads < 1:
        ap.error("--rounds, --points, --tile-repeats and --tile-threads must be >= 1")
    if args.window_px % args.chunk_px:
        ap.error("--window-px must be a multiple of --chunk-px")

    t_bench = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="bench-map-")
    workdir = Path(args.workdir) if args.workdir else Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(tempfile.mkdtemp(prefix="maps-", dir=workdir))  # fresh map folders for this run

    from terramind_nyc.maps.window import sub_grid
    from terramind_nyc.model.backends import get_runtime
    from terramind_nyc.model.tiling import tile_count, tile_geometry

    res: dict[str, Any] = _cpu()
    res["load_avg_1m_start"] = _load()
    s, area = _world(workdir, args.area_m, args.map_encoder, args.threads)
    geom = tile_geometry(224, s.tile_overlap_px)
    h, w = area.shape
    warm_area = sub_grid(area, (0, min(h, 224)), (0, min(w, 2 * args.window_px)))

    # --- in-process engine: warm-up (model load), then the timed runs further down --------------
    _say("local engine: warm-up map ...")
    _map(warm_area, runs_dir / "warm-local", s, None, args)
    info = get_runtime(s).model_info()
    torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None

    # --- Dask engine ------------------------------------------------------------------------------
    client = cluster = ex = None
    dask_skipped: str | None = None
    worker_info: list[dict[str, Any]] = []
    if args.skip_dask:
        dask_skipped = "--skip-dask"
    else:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            dask_skipped = "distributed is not installed (pip install distributed); dask_vs_local not measured"
            _say(dask_skipped)
    try:
        if dask_skipped is None:
            _say("dask engine: starting a LocalCluster of 2 worker processes ...")
            import warnings

            # the scheduler's HTTP server (not the dashboard) moves off a busy 8787 and warns: noise here
            warnings.filterwarnings("ignore", message="Port 8787 is already in use")
            t = time.perf_counter()
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
            client.wait_for_workers(2)
            res["dask_start_s"] = time.perf_counter() - t
            worker_info = list(client.run(_warm_worker, s).values())
            ex = client.get_executor()
            _say("dask engine: warm-up map ...")
            _map(warm_area, runs_dir / "warm-dask", s, ex, args)

        local_runs: list[Any] = []
        dask_runs: list[Any] = []
        for rnd in range(args.rounds):
            order = ["local", "dask"] if rnd % 2 == 0 else ["dask", "local"]
            for eng in order:
                if eng == "dask" and ex is None:
                    continue
                _say(f"round {rnd + 1}: {eng} engine, {args.area_m:g} m area ...")
                run = _map(area, runs_dir / f"{eng}-{rnd}", s, ex if eng == "dask" else None, args)
                (dask_runs if eng == "dask" else local_runs).append(run)
    finally:
        import logging

        # a nanny kills a worker that takes over 4 s to exit (model threads) and logs a warning: noise here
        logging.getLogger("distributed").setLevel(logging.ERROR)
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    local = local_runs[0]
    tiles_done = _tiles_computed(local.path)
    res.update({
        "area_m": args.area_m, "area_px": [h, w], "windows": local.windows,
        "area_tiles": tile_count(h, w, **geom), "tiles_computed": tiles_done,
        "window_px": args.window_px, "chunk_px": args.chunk_px, "prob_dtype": args.prob_dtype,
        "map_encoder": args.map_encoder, "backend": info.backend, "precision": info.precision,
        "threads": info.threads if info.threads is not None else torch_threads,
        "threads_setting": args.threads, "dask_workers": worker_info or None,
        "local_s": [r.seconds for r in local_runs], "dask_s": [r.seconds for r in dask_runs] or None,
        "local_timings": local.timings, "dask_timings": dask_runs[0].timings if dask_runs else None,
        "dask_skipped": dask_skipped,
    })
    res.setdefault("dask_start_s", None)
    res["dask_vs_local"] = (statistics.median(d.seconds / lo.seconds for d, lo in zip(dask_runs, local_runs))
                            if dask_runs else None)
    res["windows_per_s"] = local.done / local.seconds
    res["model_share"] = local.timings["model"] / local.seconds
    res["dask_model_share"] = dask_runs[0].timings["model"] / dask_runs[0].seconds if dask_runs else None

    # --- points from the written map ---------------------------------------------------------------
    _say(f"CityMap.at: {args.points} points ...")
    res.update(_points(local.path, area, s, args.points))

    # --- whole-NYC estimate ---------------------------------------------------------------------
    res["encoder"] = args.encoder
    res.update(_per_tile(workdir, args.encoder, args.tile_threads, args.tile_repeats, args.tile_paths))
    res["overhead_s_per_tile"] = (local.timings["read"] + local.timings["write"]) / max(1, tiles_done)
    res["city_px"] = CITY_PX
    res["city_tiles"] = tile_count(CITY_PX, CITY_PX, **geom)
    res["city_estimate_s"] = res["city_tiles"] * (res["s_per_tile"] + res["overhead_s_per_tile"])
    res["load_avg_1m_end"] = _load()
    res["bench_s"] = time.perf_counter() - t_bench

    if args.json:
        print(json.dumps(res))
    else:
        _print_table(res)
    shutil.rmtree(runs_dir, ignore_errors=True)  # this run's maps; the world and artifacts stay in --workdir
    tmp.cleanup()
    return res


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _print_table(res: dict[str, Any]) -> None:
    flags = ", ".join(res["cpu_bf16_flags"]) or "none (no bf16 units)"
    print(f"CPU: {res['cpu_model']}, {res['cpu_cores']} cores; bf16 flags: {flags}; 1-minute load average "
          f"{_fmt(res['load_avg_1m_start'], '.2f')} at the start, {_fmt(res['load_avg_1m_end'], '.2f')} at the end")
    print(f"area: {res['area_m']:g} m, {res['area_px'][0]} x {res['area_px'][1]} px, {res['windows']} windows, "
          f"{res['area_tiles']} tiles in the whole-area plan, {res['tiles_computed']} computed by the windows")
    print(f"settings: window_px {res['window_px']}, chunk_px {res['chunk_px']}, prob_dtype {res['prob_dtype']}, "
          f"map network {res['map_encoder']}, backend {res['backend']}, precision {res['precision']}, "
          f"threads {_fmt(res['threads'], '') if res['threads'] is not None else 'the backend default'} "
          f"(Settings.threads {res['threads_setting']})")
    if res["dask_workers"]:
        ws = res["dask_workers"]
        print(f"dask workers: {len(ws)} x (backend {ws[0]['backend']}, precision {ws[0]['precision']}, "
              f"torch threads {ws[0]['torch_threads']}, OMP_NUM_THREADS {ws[0]['omp_num_threads']})")
    print(f"{'figure':36s} {'value':>12s}  target")
    print(f"{'CityMap.at p50 (ms)':36s} {res['points_ms_p50']:12.3f}")
    print(f"{'CityMap.at p99 (ms)':36s} {res['points_ms_p99']:12.3f}  < {P99_TARGET_MS:g} (goal {P99_GOAL_MS:g})")
    print(f"{'CityMap.at mean (ms)':36s} {res['points_ms_mean']:12.3f}  ({res['points']} points, half r=300 m)")
    print(f"{'local engine wall (s)':36s} {res['local_s'][0]:12.2f}")
    print(f"{'dask engine wall (s)':36s} {_fmt(res['dask_s'][0] if res['dask_s'] else None, '12.2f'):>12s}")
    print(f"{'dask / local':36s} {_fmt(res['dask_vs_local'], '12.3f'):>12s}  <= {DASK_TARGET}"
          + (f"  (skipped: {res['dask_skipped']})" if res["dask_skipped"] else ""))
    print(f"{'dask cluster start (s)':36s} {_fmt(res['dask_start_s'], '12.2f'):>12s}  (not in the ratio)")
    print(f"{'windows per second (local)':36s} {res['windows_per_s']:12.3f}")
    t = res["local_timings"]
    print(f"{'model share (local)':36s} {res['model_share']:12.3f}  >= {MODEL_SHARE_TARGET}  "
          f"(task seconds: read {t['read']:.2f}, model {t['model']:.2f}, write {t['write']:.2f})")
    if res["dask_model_share"] is not None:
        print(f"{'model task s / wall s (dask)':36s} {res['dask_model_share']:12.3f}  (summed over its 2 workers)")
    for p in res["tile_paths"]:
        print(f"  {res['encoder']} {p['backend']} {p['precision_requested']} (ran {p['precision_ran']}): "
              f"{p['s_per_tile']:.4f} s / tile")
    for sk in res["tile_skipped"]:
        print(f"  {sk['backend']} {sk['precision']} skipped: {sk['reason']}")
    print(f"{'s per tile, fastest path (' + res['tile_best'] + ')':36s} {res['s_per_tile']:12.4f}  "
          f"({res['encoder']} network)")
    print(f"{'non-model s per tile (read+write)':36s} {res['overhead_s_per_tile']:12.4f}")
    print(f"{'whole-NYC estimate (s)':36s} {res['city_estimate_s']:12.1f}  goal < {CITY_GOAL_S:g}  "
          f"({res['city_tiles']} tiles x (tile + overhead), {res['encoder']} network)")
    print(f"benchmark wall time: {res['bench_s']:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
