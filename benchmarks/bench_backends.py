"""Benchmark the backends: every backend x precision on the base two-head network, side by side.

Paths: torch fp32, torch bf16, ONNX Runtime fp32, OpenVINO fp32, OpenVINO bf16. ONNX Runtime
has no bf16 mode for float32 graphs, so ``onnx bf16`` is always listed as skipped. A path is
also skipped, with the reason, when its package is missing (``openvino``, ``onnxruntime``) or
when it asks for bf16 on hardware without bf16 units: torch on a CPU whose ``/proc/cpuinfo``
flags show neither ``amx_bf16`` nor ``avx512_bf16``
(:func:`terramind_nyc.model.precision.cpu_has_bf16`); OpenVINO on a CPU that does not list ``BF16``
among its ``OPTIMIZATION_CAPABILITIES``.

Every figure comes from fresh worker processes (``python -c``), one per path per round,
started alternately (all paths in turn, the order reversed every other round; ``--rounds``
rounds). A worker loads the artifact with :func:`terramind_nyc.model.backends.load_runtime`
(``backend``, ``device="cpu"``, ``precision`` given explicitly, ``--threads`` intra-op
threads), predicts one deterministic 224x224 chip of the three modalities, then times
``--repeats`` more predictions after ``--warmup``. The model has random weights (the config of
``--encoder``, ``pretrained=False``); compare ratios, not absolute seconds, across machines.

    .venv/bin/python benchmarks/bench_backends.py [--encoder base] [--threads 2] [--rounds 2]
        [--repeats 5] [--warmup 1] [--workdir DIR] [--json]

Figures per path (``paths`` in ``--json``; the table has one row per path):
- precision_requested / precision_ran: the ``precision`` passed to ``load_runtime`` and what
  actually ran (``model_info().precision``); precision_reason says why, and warnings lists
  the warnings raised while loading and predicting the first chip (a precision fallback, say).
- s: median seconds of one chip (``Runtime.predict``: standardise, tile, forward, blend,
  softmax) over every timed prediction of every round.
- argmax_agreement / max_prob_diff: against torch fp32 on the same chip (each worker saves its
  probabilities to an npz): the lowest per-pixel argmax agreement over the heads and the
  largest absolute probability difference over all heads (``argmax_agreement_heads`` has the
  agreement of each head).
- peak_rss_gb: the largest peak resident memory (VmHWM; GB = 1e9 bytes) of its workers.
- first_result_s: process start to the first chip's probabilities (interpreter start,
  imports, artifact load and verification, first prediction), median over the rounds.
- torch_imported: whether the worker imported torch; the onnx and openvino workers must not
  (nor terratorch): the run fails when one did.

Summary figures:
- best_backend / best_s: the fastest path that ran; best_vs_torch_fp32 = torch fp32 s / best_s
  (a speed-up).
- bf16 floor: flops_per_chip is the FLOP count (``torch.utils.flop_counter.FlopCounterMode``,
  matmuls, convolutions and attention; one multiply-add = 2 FLOPs) of one forward pass of the
  network on one 224x224 chip (batch 1, 3 modalities; a chip is one tile). bf16_matmul_gflops /
  fp32_matmul_gflops: torch's throughput on a 2048x2048 @ 2048x2048 matmul in bf16 and in IEEE
  fp32 at ``--threads`` threads (best of 5 after 2 warm-ups), measured in a fresh process after
  all workers. floor_s = flops_per_chip / bf16 throughput: the time the network's arithmetic
  alone would take at dense-matmul speed; best_vs_floor = best_s / floor_s (1 would be perfect;
  the tiling, softmax, normalisations and memory-bound ops come on top). On a CPU without bf16
  units the floor uses the fp32 throughput and ``floor_precision`` says so.
- cpu_model (``/proc/cpuinfo`` "model name") and cpu_bf16_flags (the bf16 flags it shows), at
  the top of the table.

Targets:
- on a CPU with AMX-BF16, base encoder, 2 threads: the best path <= 0.13 s per chip and >= 4x
  faster than torch fp32 (best_vs_torch_fp32 >= 4);
- every bf16 path: argmax agreement with torch fp32 >= 99% on both heads;
- on a CPU without bf16 units (only fp32 paths run): no path slower than before this
  comparison existed (torch ~1.37 s and ONNX Runtime ~1.04 s per base chip at 2 threads on the
  machine of benchmarks/README.md).

The figures of the torch-vs-ONNX-Runtime comparison keep their keys, all fp32:
- torch_s / ort_s: ``s`` of torch fp32 and onnx fp32; ratio = ort_s / torch_s (target <= 0.9).
- max_abs_diff / argmax_agreement: between those two paths' probabilities.
- ort_peak_rss_gb / torch_peak_rss_gb: their peak RSS (ORT target <= 0.9 GB); ort_provider
  the execution provider that ran.
- ort_first_result_s / torch_first_result_s: their start to first result;
  first_result_speedup = torch / ORT (target >= 3).
- GPU: when torch sees a CUDA device or onnxruntime offers CUDAExecutionProvider, a 784x784
  window (16 tiles of 224, one batch of 16 tiles) on it (torch fp32, torch ``precision="bf16"``
  with its argmax agreement against torch fp32 on the GPU, ORT CUDA provider in fp32: ONNX
  Runtime has no bf16 mode) as 224-px chips (tiles) per second, the figure of the MI300X anchor
  (7.30 it/s x 16 = ~117 chips/s of tiled inference); otherwise the table says that no GPU was
  available and the figures are absent (``gpu`` null in ``--json``).

``--json`` prints one JSON object on the last line of stdout. The artifact of ``--encoder``
and its ONNX export (model.onnx only; ONNX Runtime and OpenVINO both read it) are built in
``--workdir`` on the first run and reused afterwards.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_WORKER = r"""
import json, sys, time, warnings
t_start = float(sys.argv[1])
backend, artifact, threads, repeats, warmup, out, device, precision, side, tile_batch = sys.argv[2:12]
threads, repeats, warmup, side, tile_batch = int(threads), int(repeats), int(warmup), int(side), int(tile_batch)
import numpy as np
from terramind_nyc.model.backends import load_runtime
providers = ("CUDAExecutionProvider",) if device == "cuda" and backend == "onnx" else None
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    rt = load_runtime(artifact, backend=backend, device=device, precision=precision, threads=threads,
                      providers=providers, tile_batch=tile_batch)
    rng = np.random.default_rng(0)
    x = {"S2L2A": rng.integers(0, 6000, (12, side, side)).astype(np.uint16),
         "S1RTC": rng.normal(-14, 4, (2, side, side)).astype(np.float32),
         "DEM": rng.normal(30, 20, (1, side, side)).astype(np.float32)}
    p = rt.predict(x)
    first = time.time() - t_start
# the timed loop runs under the default warning filters (load and first chip above are recorded)
for _ in range(warmup):
    rt.predict(x)
times = []
for _ in range(repeats):
    t = time.perf_counter()
    rt.predict(x)
    times.append(time.perf_counter() - t)
np.savez(out, **{h: v for h, v in p.probabilities.items()})
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
info = rt.model_info()
print(json.dumps({"first_result_s": first, "times": times, "peak_rss_gb": hwm * 1024 / 1e9, "n_tiles": p.n_tiles,
                  "torch_imported": "torch" in sys.modules, "terratorch_imported": "terratorch" in sys.modules,
                  "device": info.device, "precision": info.precision,
                  "precision_requested": info.precision_requested, "precision_reason": info.precision_reason,
                  "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught})}))
"""

# The bf16 floor: FLOPs of one chip through the network, and torch's dense matmul throughput.
_FLOOR = r"""
import json, sys, time
artifact, threads = sys.argv[1], int(sys.argv[2])
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from terramind_nyc.model.artifact import load_artifact
from terramind_nyc.model.precision import torch_numerics
torch.set_num_threads(threads)
art = load_artifact(artifact)
net, cfg = art.network, art.config
g = torch.Generator().manual_seed(0)
t = cfg.tile_size
extra = [cfg.input_timesteps] if cfg.input_timesteps > 1 else []
x = {m.name: torch.randn(1, len(m.bands), *extra, t, t, generator=g) for m in cfg.modalities}
# scaled_dot_product_attention runs as this op on the CPU; torch's FLOP registry lacks it
custom = {}
cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
if cpu_flash is not None:
    custom[cpu_flash] = lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)
counter = FlopCounterMode(display=False, custom_mapping=custom)
with torch.inference_mode(), torch_numerics("fp32", "cpu"), counter:
    net(x)
flops = counter.get_total_flops()
by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
del net, art

def gflops(dtype, n=2048, warm=2, reps=5):
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    for _ in range(warm):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9

with torch.inference_mode(), torch_numerics("fp32", "cpu"):
    fp32 = gflops(torch.float32)
    bf16 = gflops(torch.bfloat16)
print(json.dumps({"flops": flops, "by_op": by_op, "fp32_gflops": fp32, "bf16_gflops": bf16}))
"""


#: GPU figures: a 784x784 window (the tile plan cuts it into 4 x 4 = 16 tiles of 224) in one batch of 16.
GPU_SIDE = 784
GPU_TILE_BATCH = 16


def _subprocess_json(code: str, args: list[str], *, threads: int, what: str) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _worker(backend: str, artifact: Path, *, threads: int, repeats: int, warmup: int, out: Path,
            device: str = "cpu", precision: str = "fp32", side: int = 224, tile_batch: int = 8) -> dict[str, Any]:
    args = [repr(time.time()), backend, str(artifact), str(threads), str(repeats), str(warmup), str(out), device,
            precision, str(side), str(tile_batch)]
    return _subprocess_json(_WORKER, args, threads=threads, what=f"{backend} {precision} worker on {device}")


def _artifact(workdir: Path, encoder: str) -> Path:
    """The random-weight two-head artifact with a full-modality ONNX export (built once)."""
    from terramind_nyc.model.config import ModelConfig
    from terramind_nyc.model.locate import read_config
    from terramind_nyc.model.export_onnx import export_onnx
    from terramind_nyc.testing.model import make_tiny_artifact

    path = workdir / f"{encoder}-random"
    try:
        ready = read_config(path).onnx is not None
    except Exception:  # noqa: BLE001 - not built yet (or broken): build it
        ready = False
    if not ready:
        cfg = ModelConfig(encoder=f"terramind_v1_{encoder}", name=f"bench-{encoder}-random", version="0.0.0+random")
        print(f"building {path} (random weights) and its ONNX export ...", file=sys.stderr)
        make_tiny_artifact(path, config=cfg)
        export_onnx(path, subsets="full", progress=lambda line: print(line, file=sys.stderr))
    return path


def _gpu_available() -> tuple[bool, bool, str]:
    """(torch sees CUDA, onnxruntime offers CUDA, description)."""
    import torch

    t = torch.cuda.is_available()
    o = False
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        o = "CUDAExecutionProvider" in ort.get_available_providers()
    name = torch.cuda.get_device_name(0) if t else ""
    return t, o, name


def _plan_paths() -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """(the (backend, precision) paths to run, the skipped ones with their reasons)."""
    from terramind_nyc.model.precision import cpu_has_bf16

    run: list[tuple[str, str]] = [("torch", "fp32")]
    skipped: list[dict[str, str]] = []

    def skip(backend: str, precision: str, reason: str) -> None:
        skipped.append({"backend": backend, "precision": precision, "reason": reason})

    if cpu_has_bf16():
        run.append(("torch", "bf16"))
    else:
        skip("torch", "bf16", "the CPU flags show neither amx_bf16 nor avx512_bf16 (bf16 would be emulated, "
                              "slower than fp32)")
    if importlib.util.find_spec("onnxruntime") is not None:
        run.append(("onnx", "fp32"))
    else:
        skip("onnx", "fp32", "onnxruntime is not installed (pip install 'terramind-nyc[onnx]')")
    skip("onnx", "bf16", "ONNX Runtime has no bf16 mode for float32 graphs")
    if importlib.util.find_spec("openvino") is None:
        for p in ("fp32", "bf16"):
            skip("openvino", p, "openvino is not installed (pip install 'terramind-nyc[openvino]')")
        return run, skipped
    try:
        import openvino

        caps = [str(c) for c in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything
        for p in ("fp32", "bf16"):
            skip("openvino", p, f"openvino does not start ({type(exc).__name__}: {str(exc)[:200]})")
        return run, skipped
    run.append(("openvino", "fp32"))
    if "BF16" in caps:
        run.append(("openvino", "bf16"))
    else:
        skip("openvino", "bf16", f"OpenVINO's CPU optimisation capabilities ({', '.join(caps)}) lack BF16")
    return run, skipped


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="base", help="tiny, small, base or large (default base)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of every backend (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed predictions per worker (>= 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed predictions after the first")
    ap.add_argument("--rounds", type=int, default=2, help="fresh worker processes per path, alternating")
    ap.add_argument("--workdir", default=None, help="keep the artifact here (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object (last line)")
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")
    if args.rounds < 1 or args.threads < 1 or args.warmup < 0:
        ap.error("--rounds and --threads must be >= 1, --warmup >= 0")

    import numpy as np

    from terramind_nyc.model.precision import cpu_bf16_flags, cpu_model

    tmp = tempfile.TemporaryDirectory(prefix="bench-backends-")
    workdir = Path(args.workdir) if args.workdir else Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    artifact = _artifact(workdir, args.encoder)
    plan, skipped = _plan_paths()
    outs = {p: workdir / f"probs-{p[0]}-{p[1]}.npz" for p in plan}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {p: [] for p in plan}
    for rnd in range(args.rounds):
        for path in plan if rnd % 2 == 0 else plan[::-1]:
            backend, precision = path
            runs[path].append(_worker(backend, artifact, threads=args.threads, repeats=args.repeats,
                                      warmup=args.warmup, out=outs[path], precision=precision))
    leaky = [f"{b} {p}" for (b, p), rs in runs.items() if b != "torch"
             and any(r["torch_imported"] or r["terratorch_imported"] for r in rs)]
    if leaky:
        raise SystemExit(f"the {', '.join(leaky)} worker(s) imported torch or terratorch: those paths are not "
                         "torch-free")

    ref = np.load(outs[("torch", "fp32")])
    heads = list(ref.files)
    paths: list[dict[str, Any]] = []
    for (backend, precision), rs in runs.items():
        probs = np.load(outs[(backend, precision)])
        agree = {h: float((probs[h].argmax(0) == ref[h].argmax(0)).mean()) for h in heads}
        ran = sorted({r["precision"] for r in rs})
        paths.append({
            "backend": backend,
            "precision_requested": precision,
            "precision_ran": ran[0] if len(ran) == 1 else "/".join(ran),
            "precision_reason": rs[0]["precision_reason"],
            "s": statistics.median(t for r in rs for t in r["times"]),
            "argmax_agreement": min(agree.values()),
            "argmax_agreement_heads": agree,
            "max_prob_diff": max(float(np.abs(probs[h] - ref[h]).max()) for h in heads),
            "peak_rss_gb": max(r["peak_rss_gb"] for r in rs),
            "first_result_s": statistics.median(r["first_result_s"] for r in rs),
            "device": rs[0]["device"],
            "torch_imported": any(r["torch_imported"] for r in rs),
            "warnings": sorted({w for r in rs for w in r["warnings"]}),
        })
    by_key = {(p["backend"], p["precision_requested"]): p for p in paths}
    tp = by_key[("torch", "fp32")]
    op = by_key.get(("onnx", "fp32"))
    best = min(paths, key=lambda p: p["s"])

    # the bf16 floor, after the workers so that it does not disturb them
    floor = _subprocess_json(_FLOOR, [str(artifact), str(args.threads)], threads=args.threads, what="floor worker")
    flags = list(cpu_bf16_flags())
    floor_precision = "bf16" if flags else "fp32 (the CPU has no bf16 units)"
    per_s = (floor["bf16_gflops"] if flags else floor["fp32_gflops"]) * 1e9
    floor_s = floor["flops"] / per_s

    res: dict[str, Any] = {
        "encoder": args.encoder,
        "threads": args.threads,
        "torch_s": tp["s"],
        "ort_s": op["s"] if op else None,
        "max_abs_diff": op["max_prob_diff"] if op else None,
        "argmax_agreement": op["argmax_agreement"] if op else None,
        "ort_peak_rss_gb": op["peak_rss_gb"] if op else None,
        "torch_peak_rss_gb": tp["peak_rss_gb"],
        "ort_first_result_s": op["first_result_s"] if op else None,
        "torch_first_result_s": tp["first_result_s"],
        "ort_provider": op["device"] if op else None,
    }
    res["ratio"] = res["ort_s"] / res["torch_s"] if op else None
    res["first_result_speedup"] = res["torch_first_result_s"] / res["ort_first_result_s"] if op else None
    res.update({
        "cpu_model": cpu_model(),
        "cpu_bf16_flags": flags,
        "paths": paths,
        "skipped": skipped,
        "best_backend": f"{best['backend']} {best['precision_ran']}",
        "best_s": best["s"],
        "best_vs_torch_fp32": tp["s"] / best["s"],
        "flops_per_chip": floor["flops"],
        "flops_by_op": floor["by_op"],
        "bf16_matmul_gflops": floor["bf16_gflops"],
        "fp32_matmul_gflops": floor["fp32_gflops"],
        "floor_precision": floor_precision,
        "floor_s": floor_s,
        "best_vs_floor": best["s"] / floor_s,
    })

    # GPU section
    t_gpu, o_gpu, name = _gpu_available()
    res["gpu"] = None
    gpu_lines: list[str] = []
    if not (t_gpu or o_gpu):
        gpu_lines.append("GPU: none available here (torch sees no CUDA device and onnxruntime offers no "
                         "CUDAExecutionProvider); GPU figures skipped")
    else:
        # one forward pass of 16 tiles per prediction (GPU_SIDE, GPU_TILE_BATCH)
        gpu: dict[str, Any] = {"device": name or "?", "window_px": GPU_SIDE, "tile_batch": GPU_TILE_BATCH}
        on_gpu: dict[str, Any] = {"device": "cuda", "side": GPU_SIDE, "tile_batch": GPU_TILE_BATCH}

        def tiles_per_s(r: dict[str, Any]) -> float:
            return float(r["n_tiles"]) / statistics.median(r["times"])

        if t_gpu:
            fp32_out = workdir / "probs-torch-fp32-cuda.npz"
            r = _worker("torch", artifact, threads=args.threads, repeats=args.repeats, warmup=args.warmup,
                        out=fp32_out, precision="fp32", **on_gpu)
            gpu["torch_chips_per_s"] = tiles_per_s(r)
            bf16_out = workdir / "probs-torch-bf16-cuda.npz"
            r = _worker("torch", artifact, threads=args.threads, repeats=args.repeats, warmup=args.warmup,
                        out=bf16_out, precision="bf16", **on_gpu)
            a, b = np.load(fp32_out), np.load(bf16_out)
            gpu["torch_bf16_chips_per_s"] = tiles_per_s(r)
            gpu["torch_bf16_precision_ran"] = r["precision"]
            gpu["torch_bf16_argmax_agreement"] = min(float((a[h].argmax(0) == b[h].argmax(0)).mean())
                                                     for h in a.files)
        if o_gpu:
            r = _worker("onnx", artifact, threads=args.threads, repeats=args.repeats, warmup=args.warmup,
                        out=workdir / "probs-onnx-fp32-cuda.npz", precision="fp32", **on_gpu)
            gpu["ort_chips_per_s"] = tiles_per_s(r)
            gpu["ort_provider"] = r["device"]
        res["gpu"] = gpu
        gpu_lines.append(f"GPU: {gpu['device']}")
        for k, v in gpu.items():
            if k != "device":
                gpu_lines.append(f"  {k:28s} {v:.3f}" if isinstance(v, float) else f"  {k:28s} {v}")

    if args.json:
        print(json.dumps(res))
    else:
        _print_table(args, res, gpu_lines)
    tmp.cleanup()
    return res


def _print_table(args: argparse.Namespace, res: dict[str, Any], gpu_lines: list[str]) -> None:
    print(f"CPU: {res['cpu_model']}; bf16 flags: {', '.join(res['cpu_bf16_flags']) or 'none (no bf16 units)'}")
    print(f"{args.encoder} two-head, 224x224, 3 modalities, {args.threads} threads, CPU, "
          f"{args.rounds} rounds x {args.repeats} timed chips per path")
    head = (f"{'path':16s} {'ran':>5s} {'s/chip':>8s} {'vs torch fp32':>13s} {'first (s)':>9s} {'RSS (GB)':>8s} "
            f"{'argmax agree':>12s} {'max |dp|':>9s}  device")
    print(head)
    torch_s = res["torch_s"]
    for p in res["paths"]:
        print(f"{p['backend'] + ' ' + p['precision_requested']:16s} {p['precision_ran']:>5s} {p['s']:8.3f} "
              f"{torch_s / p['s']:12.2f}x {p['first_result_s']:9.2f} {p['peak_rss_gb']:8.2f} "
              f"{100 * p['argmax_agreement']:11.3f}% {p['max_prob_diff']:9.2e}  {p['device']}"
              + ("  (imported torch)" if p["torch_imported"] and p["backend"] != "torch" else ""))
        for w in p["warnings"]:
            print(f"  warning: {w}")
    for s in res["skipped"]:
        print(f"{s['backend'] + ' ' + s['precision']:16s} skipped: {s['reason']}")
    print(f"best: {res['best_backend']} {res['best_s']:.3f} s/chip, {res['best_vs_torch_fp32']:.2f}x torch fp32 "
          f"(targets, base on AMX-BF16 at 2 threads: <= 0.13 s and >= 4x; bf16 argmax agreement >= 99%)")
    print(f"floor: {res['flops_per_chip'] / 1e9:.2f} GFLOP per chip / {res['floor_precision']} matmul throughput "
          f"(bf16 {res['bf16_matmul_gflops']:.1f} GFLOP/s, fp32 {res['fp32_matmul_gflops']:.1f} GFLOP/s, "
          f"2048^2, {args.threads} threads) = {res['floor_s']:.3f} s; best / floor {res['best_vs_floor']:.2f}")
    if res["ort_s"] is not None:
        print(f"{'torch fp32 vs ONNX Runtime':28s} {'torch':>10s} {'onnxruntime':>12s} {'ratio/speed-up':>15s} target")
        print(f"{'per chip, median (s)':28s} {res['torch_s']:10.3f} {res['ort_s']:12.3f} {res['ratio']:15.2f} "
              "<= 0.9")
        print(f"{'start to first result (s)':28s} {res['torch_first_result_s']:10.2f} "
              f"{res['ort_first_result_s']:12.2f} {res['first_result_speedup']:14.1f}x >= 3x")
        print(f"{'peak RSS (GB)':28s} {res['torch_peak_rss_gb']:10.2f} {res['ort_peak_rss_gb']:12.2f} "
              f"{'':15s} ORT <= 0.9")
        print(f"max abs diff of probabilities {res['max_abs_diff']:.2e}; argmax agreement "
              f"{100 * res['argmax_agreement']:.3f}%; ORT provider {res['ort_provider']}; ORT worker imported "
              "torch: no")
    for line in gpu_lines:
        print(line)


if __name__ == "__main__":
    main()
