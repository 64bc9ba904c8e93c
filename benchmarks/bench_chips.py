"""Cold 224 px chip: the project's parallel reader against a sequential one, at a per-request latency.

Serves the generated fixture catalog from loopback servers (COGs from a Range-capable server,
the STAC API from ``rustac serve`` behind a fault proxy, both in a separate process) with an
injected latency on every HTTP request, then times ``read_chip`` cold (new URLs for GDAL's cache, a new STAC client)
with the default ``io_threads`` and with ``io_threads=1``: every search, SCL read and band read
one after another, as a band-by-band client does. Prints a table, or one JSON object with
``--json``::

    .venv/bin/python benchmarks/bench_chips.py                 # 50 ms per request
    .venv/bin/python benchmarks/bench_chips.py --latency-ms 100 --runs 5 --json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from terramind_nyc.imagery.catalog import Catalog, get_catalog
from terramind_nyc.imagery.reader import read_chip
from terramind_nyc.settings import Settings
from terramind_nyc.testing import CogServer, FaultProxy, StacServer, build_fixture_catalog


def _fresh_catalog(settings: Settings) -> Catalog:
    token = uuid.uuid4().hex  # new URLs: nothing in GDAL's per-URL cache; a new STAC client

    def signer(href: str) -> str:
        return f"{href}?run={token}" if "://" in href else href

    return get_catalog(settings, signer=signer)


def _serve(root: str, latency_s: float, conn: Any, nodelay: bool) -> None:
    """Child process: the COG server (and later the STAC fault proxy), each request delayed."""
    if nodelay:
        # Two artefacts of Python's http.server that a blob store does not have: Nagle's algorithm
        # is left on, so a response written as headers + body waits for the client's delayed ACK
        # (about 40 ms per response on Linux, on top of the injected latency); and the listen
        # backlog is 5, so a burst of parallel connections loses SYNs and waits 1 s to retry.
        from terramind_nyc.testing.servers import loopback as harness

        harness.FaultHandlerMixin.disable_nagle_algorithm = True
        harness.LoopbackHTTPServer.request_queue_size = 128
    servers: dict[str, Any] = {}
    with CogServer(root) as cogs:
        servers["cog"] = cogs
        cogs.faults.delay(latency_s)
        conn.send(cogs.url)
        try:
            while True:
                cmd, arg = conn.recv()
                if cmd == "proxy":
                    proxy = servers["stac"] = FaultProxy(arg).start()
                    proxy.faults.delay(latency_s)
                    conn.send(proxy.url)
                elif cmd == "reset":
                    for srv in servers.values():
                        srv.reset()
                    conn.send(None)
                elif cmd == "stats":
                    cog = servers["cog"].requests
                    stac = servers["stac"].requests if "stac" in servers else []
                    conn.send((len(cog), len(stac), [r.path for r in cog if not r.path.endswith(".tif")]))
                else:
                    break
        finally:
            if "stac" in servers:
                servers["stac"].stop()


class _Servers:
    """The loopback servers in their own process: an in-process server would share the GIL (and,
    on small machines, the few cores) with the reader it serves, which a blob store does not."""

    def __init__(self, root: Path, latency_s: float, nodelay: bool) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(str(root), latency_s, child, nodelay), daemon=True)
        self._proc.start()
        self.cog_url: str = self._conn.recv()

    def call(self, cmd: str, arg: Any = None) -> Any:
        self._conn.send((cmd, arg))
        return self._conn.recv()

    def stop(self) -> None:
        try:
            self._conn.send(("stop", None))
        except OSError:
            pass
        self._proc.join(timeout=10)


def _one(fx: Any, scenario: str, settings: Settings, servers: _Servers) -> dict[str, Any]:
    servers.call("reset")
    grid = fx.grid(scenario)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chip = read_chip(grid, when=fx.when(scenario), settings=settings, catalog=_fresh_catalog(settings))
    dt = time.perf_counter() - t
    cog, stac, odd = servers.call("stats")
    return {"seconds": dt, "cog_requests": cog, "stac_requests": stac, "odd": odd,
            "modalities": list(chip.arrays), "timings": dict(chip.timings)}


def run(latency_ms: float, runs: int, scenario: str, threads: int | None, nodelay: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-chips-") as tmp:
        root = Path(tmp)
        servers = _Servers(root, latency_ms / 1000.0, nodelay)
        stac = None
        try:
            fx = build_fixture_catalog(root / "fixture", f"{servers.cog_url}/fixture", scenarios=[scenario])
            base = fx.settings(cache_enabled=False)
            catalog = "local ItemCollection"
            if StacServer.available():
                stac = StacServer([fx.items_path, *fx.collection_paths]).start()
                base = base.replace(catalog_provider="stac-api", catalog_url=servers.call("proxy", stac.url))
                catalog = "rustac STAC API"
            par = base if threads is None else base.replace(io_threads=threads)
            seq = base.replace(io_threads=1)
            _one(fx, scenario, par, servers)  # warm imports, the GDAL driver, the rustac process
            results: dict[str, list[dict[str, Any]]] = {"parallel": [], "sequential": []}
            for _ in range(runs):  # interleaved, so drift hits both alike
                results["parallel"].append(_one(fx, scenario, par, servers))
                results["sequential"].append(_one(fx, scenario, seq, servers))
        finally:
            servers.stop()
            if stac is not None:
                stac.stop()
    p = statistics.median(r["seconds"] for r in results["parallel"])
    q = statistics.median(r["seconds"] for r in results["sequential"])
    first = results["parallel"][0]
    return {
        "latency_ms": latency_ms,
        "parallel_s": round(p, 4),
        "sequential_s": round(q, 4),
        "ratio": round(p / q, 4),
        "requests_per_chip": first["cog_requests"] + first["stac_requests"],
        "cog_requests": first["cog_requests"],
        "stac_requests": first["stac_requests"],
        "sequential_requests_per_chip": results["sequential"][0]["cog_requests"]
        + results["sequential"][0]["stac_requests"],
        "listing_or_sidecar_requests": sum(len(r["odd"]) for rs in results.values() for r in rs),
        "io_threads": par.io_threads,
        "runs": runs,
        "scenario": scenario,
        "catalog": catalog,
        "server_nodelay": nodelay,
        "modalities": first["modalities"],
        "stages_parallel_s": {k: round(statistics.median(r["timings"][k] for r in results["parallel"]), 4)
                              for k in first["timings"]},
        "stages_sequential_s": {k: round(statistics.median(r["timings"][k] for r in results["sequential"]), 4)
                                for k in first["timings"]},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=50.0, help="latency added to every HTTP request (ms)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per reader (median reported)")
    ap.add_argument("--scenario", default="clear", help="fixture scenario (default: clear)")
    ap.add_argument("--threads", type=int, default=None, help="io_threads of the parallel reader (default: setting)")
    ap.add_argument("--server-nagle", action="store_true",
                    help="keep http.server's defaults: Nagle on (~40 ms delayed-ACK stall per response), "
                         "listen backlog 5 (1 s SYN retry on bursts)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    r = run(a.latency_ms, max(1, a.runs), a.scenario, a.threads, nodelay=not a.server_nagle)
    if a.json:
        print(json.dumps(r))
        return 0
    print(f"cold {r['scenario']} chip (224 x 224, {', '.join(r['modalities'])}), {r['latency_ms']:g} ms per request, "
          f"{r['catalog']}, median of {r['runs']}"
          f"{'' if r['server_nodelay'] else ', http.server defaults (Nagle on, backlog 5)'}")
    print(f"{'reader':<12}{'threads':>8}{'seconds':>10}{'COG req':>9}{'STAC req':>10}   stages (search / choose / read)")
    for name, secs, thr, st in (("parallel", r["parallel_s"], r["io_threads"], r["stages_parallel_s"]),
                                ("sequential", r["sequential_s"], 1, r["stages_sequential_s"])):
        reqs = r["cog_requests"], r["stac_requests"]
        print(f"{name:<12}{thr:>8}{secs:>10.3f}{reqs[0]:>9}{reqs[1]:>10}   "
              f"{st.get('search', 0):.3f} / {st.get('choose', 0):.3f} / {st.get('read', 0):.3f}")
    print(f"ratio parallel / sequential: {r['ratio']:.3f} (target <= 0.25)")
    print(f"requests per chip: {r['requests_per_chip']} (sequential reader: {r['sequential_requests_per_chip']}); "
          f"directory listings or sidecar probes: {r['listing_or_sidecar_requests']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
