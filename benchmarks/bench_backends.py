"""Benchmark the backends: torch vs ONNX Runtime on the base two-head network, one run side by side.

Every figure comes from fresh worker processes (``python -c``), started alternately for the two
backends (``--rounds`` each); a worker loads the artifact with :func:`terramind_nyc.runtime.load_runtime`
(``backend`` torch or onnx, CPU, ``--threads`` intra-op threads), predicts one 224x224 chip of
the three modalities, then times ``--repeats`` more predictions after ``--warmup``. The model
has random weights (the base config, ``pretrained=False``); compare ratios, not absolute
seconds, across machines.

    .venv/bin/python benchmarks/bench_backends.py [--threads 2] [--workdir DIR] [--json]

Figures:
- torch_s / ort_s: median seconds of one chip (``Runtime.predict``: standardise, tile, forward,
  blend, softmax) per backend, over every timed prediction of every round; ratio = ort_s /
  torch_s (target <= 0.9).
- max_abs_diff: largest difference between the two backends' probabilities on that chip.
- ort_peak_rss_gb / torch_peak_rss_gb: peak resident memory (VmHWM; GB = 1e9 bytes) of a worker;
  the ONNX worker never imports torch (checked; target <= 0.9 GB).
- ort_first_result_s / torch_first_result_s: process start to the first chip's probabilities
  (interpreter start, imports, artifact load and verification, first prediction), median over
  the rounds; first_result_speedup = torch / ORT (target >= 3).
- GPU: when torch sees a CUDA device or onnxruntime offers CUDAExecutionProvider, the same chip
  on it (torch fp32 and bf16 autocast, ORT CUDA provider) as chips per second; otherwise the
  table says that no GPU was available and the figures are absent (null in ``--json``).

The base artifact and its ONNX export (model.onnx only) are built in ``--workdir`` on the
first run and reused afterwards.
"""

from __future__ import annotations

import argparse
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
import json, sys, time
t_start = float(sys.argv[1])
backend, artifact, threads, repeats, warmup, out, device = sys.argv[2:9]
threads, repeats, warmup = int(threads), int(repeats), int(warmup)
import numpy as np
from terramind_nyc.runtime import load_runtime
providers = ("CUDAExecutionProvider",) if device == "cuda" else None
rt = load_runtime(artifact, backend=backend, device=device, threads=threads, providers=providers)
rng = np.random.default_rng(0)
x = {"S2L2A": rng.integers(0, 6000, (12, 224, 224)).astype(np.uint16),
     "S1RTC": rng.normal(-14, 4, (2, 224, 224)).astype(np.float32),
     "DEM": rng.normal(30, 20, (1, 224, 224)).astype(np.float32)}
p = rt.predict(x)
first = time.time() - t_start
for _ in range(warmup):
    rt.predict(x)
times = []
for _ in range(repeats):
    t = time.perf_counter()
    rt.predict(x)
    times.append(time.perf_counter() - t)
bf16 = None
if backend == "torch" and device == "cuda":
    import torch
    with torch.autocast("cuda", dtype=torch.bfloat16):
        q = rt.predict(x)
        t = time.perf_counter()
        for _ in range(repeats):
            rt.predict(x)
        bf16 = (time.perf_counter() - t) / repeats
    agree = min(float((q.probabilities[h].argmax(0) == p.probabilities[h].argmax(0)).mean()) for h in p.probabilities)
    bf16 = {"s": bf16, "argmax_agreement": agree}
np.savez(out, **{h: v for h, v in p.probabilities.items()})
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
info = rt.model_info()
print(json.dumps({"first_result_s": first, "times": times, "peak_rss_gb": hwm * 1024 / 1e9,
                  "torch_imported": "torch" in sys.modules, "terratorch_imported": "terratorch" in sys.modules,
                  "device": info["device"], "bf16": bf16}))
"""


def _worker(backend: str, artifact: Path, *, threads: int, repeats: int, warmup: int, out: Path,
            device: str = "cpu") -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", _WORKER, repr(t0), backend, str(artifact), str(threads),
                           str(repeats), str(warmup), str(out), device],
                          capture_output=True, text=True, env=env, timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _artifact(workdir: Path, encoder: str) -> Path:
    """The random-weight two-head artifact with a full-modality ONNX export (built once)."""
    from terramind_nyc.artifact import ModelConfig, read_config
    from terramind_nyc.onnx_export import export_onnx
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
    import onnxruntime as ort
    import torch

    t = torch.cuda.is_available()
    o = "CUDAExecutionProvider" in ort.get_available_providers()
    name = torch.cuda.get_device_name(0) if t else ""
    return t, o, name


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="base", help="tiny, small, base or large (default base)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of both backends (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed predictions per worker (>= 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed predictions after the first")
    ap.add_argument("--rounds", type=int, default=2, help="fresh worker processes per backend, alternating")
    ap.add_argument("--workdir", default=None, help="keep the artifact here (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")

    import numpy as np

    tmp = tempfile.TemporaryDirectory(prefix="bench-backends-")
    workdir = Path(args.workdir) if args.workdir else Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    artifact = _artifact(workdir, args.encoder)
    outs = {b: workdir / f"probs-{b}.npz" for b in ("torch", "onnx")}
    runs: dict[str, list[dict[str, Any]]] = {"torch": [], "onnx": []}
    for _ in range(args.rounds):
        for backend in ("onnx", "torch"):
            runs[backend].append(_worker(backend, artifact, threads=args.threads, repeats=args.repeats,
                                         warmup=args.warmup, out=outs[backend]))
    if any(r["torch_imported"] or r["terratorch_imported"] for r in runs["onnx"]):
        raise SystemExit("the ONNX Runtime worker imported torch or terratorch: the ONNX path is not torch-free")
    a, b = np.load(outs["torch"]), np.load(outs["onnx"])
    max_diff = max(float(np.abs(a[h] - b[h]).max()) for h in a.files)
    agree = min(float((a[h].argmax(0) == b[h].argmax(0)).mean()) for h in a.files)

    def med(backend: str, key: str) -> float:
        if key == "times":
            return statistics.median(t for r in runs[backend] for t in r["times"])
        return statistics.median(r[key] for r in runs[backend])

    res: dict[str, Any] = {
        "encoder": args.encoder,
        "threads": args.threads,
        "torch_s": med("torch", "times"),
        "ort_s": med("onnx", "times"),
        "max_abs_diff": max_diff,
        "argmax_agreement": agree,
        "ort_peak_rss_gb": max(r["peak_rss_gb"] for r in runs["onnx"]),
        "torch_peak_rss_gb": max(r["peak_rss_gb"] for r in runs["torch"]),
        "ort_first_result_s": med("onnx", "first_result_s"),
        "torch_first_result_s": med("torch", "first_result_s"),
        "ort_provider": runs["onnx"][0]["device"],
    }
    res["ratio"] = res["ort_s"] / res["torch_s"]
    res["first_result_speedup"] = res["torch_first_result_s"] / res["ort_first_result_s"]

    # GPU section
    t_gpu, o_gpu, name = _gpu_available()
    res["gpu"] = None
    gpu_lines: list[str] = []
    if not (t_gpu or o_gpu):
        gpu_lines.append("GPU: none available here (torch sees no CUDA device and onnxruntime offers no "
                         "CUDAExecutionProvider); GPU figures skipped")
    else:
        gpu: dict[str, Any] = {"device": name or "?"}
        if t_gpu:
            r = _worker("torch", artifact, threads=args.threads, repeats=args.repeats, warmup=args.warmup,
                        out=workdir / "probs-torch-cuda.npz", device="cuda")
            gpu["torch_chips_per_s"] = 1 / statistics.median(r["times"])
            if r.get("bf16"):
                gpu["torch_bf16_chips_per_s"] = 1 / r["bf16"]["s"]
                gpu["torch_bf16_argmax_agreement"] = r["bf16"]["argmax_agreement"]
        if o_gpu:
            r = _worker("onnx", artifact, threads=args.threads, repeats=args.repeats, warmup=args.warmup,
                        out=workdir / "probs-onnx-cuda.npz", device="cuda")
            gpu["ort_chips_per_s"] = 1 / statistics.median(r["times"])
            gpu["ort_provider"] = r["device"]
        res["gpu"] = gpu
        gpu_lines.append(f"GPU: {gpu['device']}")
        for k, v in gpu.items():
            if k != "device":
                gpu_lines.append(f"  {k:28s} {v:.3f}" if isinstance(v, float) else f"  {k:28s} {v}")

    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{args.encoder} two-head, 224x224, 3 modalities, {args.threads} threads, CPU, "
              f"{args.rounds} rounds x {args.repeats} timed chips per backend")
        print(f"{'':28s} {'torch':>10s} {'onnxruntime':>12s} {'ratio/speed-up':>15s} target")
        print(f"{'per chip, median (s)':28s} {res['torch_s']:10.3f} {res['ort_s']:12.3f} {res['ratio']:15.2f} <= 0.9")
        print(f"{'start to first result (s)':28s} {res['torch_first_result_s']:10.2f} {res['ort_first_result_s']:12.2f} "
              f"{res['first_result_speedup']:14.1f}x >= 3x")
        print(f"{'peak RSS (GB)':28s} {res['torch_peak_rss_gb']:10.2f} {res['ort_peak_rss_gb']:12.2f} "
              f"{'':15s} ORT <= 0.9")
        print(f"max abs diff of probabilities {max_diff:.2e}; argmax agreement {100 * agree:.3f}%; "
              f"ORT provider {res['ort_provider']}; ORT worker imported torch: no")
        for line in gpu_lines:
            print(line)
    tmp.cleanup()
    return res


if __name__ == "__main__":
    main()
