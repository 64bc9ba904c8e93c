"""Benchmark fetch(): cold vs warm (result cache), fetch_many vs sequential fetch, stage times.

Runs offline against the loopback harness (generated COGs over HTTP + a local STAC catalog)
and a tiny random-weight two-head artifact unless ``--checkpoint`` names one. All figures of one
run are measured side by side in this process; compare ratios, not absolute seconds.

    .venv/bin/python benchmarks/bench_fetch.py [--points 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=50, help="points in the batch (inside a 3 km square)")
    ap.add_argument("--warm-repeats", type=int, default=200)
    ap.add_argument("--checkpoint", default=None, help="artifact to use (default: tiny random weights)")
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "openvino"])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    from terramind_nyc import fetch, fetch_many
    from terramind_nyc.cache import clear_caches
    from terramind_nyc.testing import CogServer, build_fixture_catalog

    with tempfile.TemporaryDirectory() as tmp, CogServer(Path(tmp) / "imagery") as cogs:
        # data reach 2.3 km beyond the default chip: every window of a point in the 3 km square fits
        cat = build_fixture_catalog(Path(tmp) / "imagery", cogs.url, scenarios=["clear"], margin_m=2400.0)
        if args.checkpoint:
            ck = args.checkpoint
        else:
            from terramind_nyc.testing.model import make_tiny_artifact

            ck = str(make_tiny_artifact(Path(tmp) / "artifact"))
        lat, lon = cat.points["clear"]
        when = cat.when("clear")
        settings = cat.settings(checkpoint=ck, backend=args.backend, cache_enabled=True)
        off = settings.replace(cache_enabled=False)

        # load the model once so "cold" measures a cold request, not the model load
        fetch(lat + 0.01, lon + 0.01, when=when, settings=off)

        clear_caches()
        t = time.perf_counter()
        cold = fetch(lat, lon, when=when, settings=settings)
        cold_s = time.perf_counter() - t
        warm = []
        for _ in range(args.warm_repeats):
            t = time.perf_counter()
            r = fetch(lat, lon, when=when, settings=settings)
            warm.append(time.perf_counter() - t)
            assert r.cached
        warm_ms = 1000 * statistics.median(warm)

        rng = np.random.default_rng(0)
        # 50 points inside a 3 km square centred on the scenario's chip (~0.027 deg lat, ~0.036 deg lon)
        pts = [(lat + dy, lon + dx) for dy, dx in rng.uniform(-0.5, 0.5, size=(args.points, 2)) * (0.027, 0.0355)]
        t = time.perf_counter()
        seq = [fetch(p[0], p[1], when=when, settings=off, radius_m=100) for p in pts]
        sequential_s = time.perf_counter() - t
        t = time.perf_counter()
        items = fetch_many(pts, when=when, settings=off, radius_m=100, progress=False)
        batch_s = time.perf_counter() - t
        assert all(it.ok for it in items), [str(it.error) for it in items if not it.ok][:3]
        agree = float(np.mean([abs(a.building_density - b.result.building_density) < 0.05
                               for a, b in zip(seq, items)]))

    stages = {k: round(v, 4) for k, v in cold.timings.items()}
    out: dict[str, object] = {
        "cold_s": round(cold_s, 4),
        "warm_ms": round(warm_ms, 4),
        "warm_cold_ratio": warm_ms / 1000 / cold_s,
        "batch_s": round(batch_s, 3),
        "sequential_s": round(sequential_s, 3),
        "batch_ratio": batch_s / sequential_s,
        "stages": stages,
        "points": args.points,
        "batch_agreement": agree,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{'figure':34s} value")
        print(f"{'cold fetch (s)':34s} {cold_s:.3f}")
        print(f"{'warm fetch, cache hit (ms, median)':34s} {warm_ms:.4f}")
        print(f"{'warm / cold':34s} {out['warm_cold_ratio']:.2e}")
        print(f"{f'fetch_many {args.points} pts (s)':34s} {batch_s:.2f}")
        print(f"{f'{args.points} sequential fetch, no cache (s)':34s} {sequential_s:.2f}")
        print(f"{'batch / sequential':34s} {out['batch_ratio']:.3f}   (target <= 0.3)")
        print(f"{'points within 5 pp of sequential':34s} {agree:.2f}")
        names = {"imagery_search": "STAC search", "imagery_choose": "SCL scoring", "imagery_read": "pixel reads"}
        print("cold stages (s): " + ", ".join(f"{names.get(k, k)} {v:.3f}" for k, v in stages.items()))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
