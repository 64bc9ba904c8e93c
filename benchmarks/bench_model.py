"""Benchmark the model and the tiled pass: two heads on one encoder vs two single-head models,
the project's tiler vs terratorch's tiled_inference, and the peak memory of base inference.

All timings of one run are measured side by side in this process (interleaved, median of
``--repeats`` after ``--warmup``), on random weights and random standardised inputs; compare
the ratios, not absolute seconds, across machines.

    .venv/bin/python benchmarks/bench_model.py [--encoder base] [--threads 2] [--json]

Figures:
- two_head_s: one forward pass of the two-head network as the torch runtime runs it (3
  modalities, 224x224, batch 1; channels-last convolutions on CPU). The table also shows the
  pass in the default memory layout, the one terratorch's models use.
- two_single_s: two single-head models back to back, each built the way terratorch's
  EncoderDecoderFactory builds one head (same encoder size, neck, decoder), same input.
- two_head_ratio: two_head_s / two_single_s (target <= 0.55 for base).
- These three run at fp32 with IEEE matmuls (``torch_numerics("fp32", "cpu")``, whatever
  torch's process-wide matmul precision is). two_head_bf16_s / two_single_bf16_s /
  two_head_ratio_bf16: the same two passes and their ratio in bf16
  (``torch_numerics("bf16", "cpu")``: autocast to bfloat16), timed in the same interleaved
  loop. bf16_native says whether the CPU has bf16 units (AMX-BF16 / AVX512-BF16, from
  ``/proc/cpuinfo``); without them bf16 is emulated (slower than fp32) and the table says so
  (bf16_mode). bf16_speedup = two_head_s / two_head_bf16_s.
- tiler_s / terratorch_tiler_s: a --window x --window window through the two-head network to
  per-head probabilities with the project's tiler and with terratorch's tiled_inference
  (crop 224, stride 192, delta 8, the same batch size); tiler_ratio their ratio (target <= 1);
  tiler_max_abs_diff the largest probability difference (target <= 1e-5). Both run the same
  network on the same tiles (both at IEEE fp32), so the network's run-to-run variation (a few
  per cent) dominates the ratio; tiler_overhead_s / terratorch_tiler_overhead_s give each
  tiler's own time (everything outside the network: padding, cutting, blending, softmax), mean
  per call.
- peak_rss_gb: peak resident memory (GB = 1e9 bytes) of a fresh process that loads the base
  two-head artifact with the torch runtime (``precision="fp32"``) and runs one 224x224 pass
  (target <= 1.4).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_RSS_CHILD = r"""
import sys, time
import numpy as np
from terramind_nyc.model.backends import load_runtime
t = time.perf_counter()
rt = load_runtime(sys.argv[1], backend="torch", device="cpu", precision="fp32", threads=int(sys.argv[2]))
load_s = time.perf_counter() - t
rng = np.random.default_rng(0)
x = {"S2L2A": rng.integers(0, 6000, (12, 224, 224)).astype(np.uint16),
     "S1RTC": rng.normal(-14, 4, (2, 224, 224)).astype(np.float32),
     "DEM": rng.normal(30, 20, (1, 224, 224)).astype(np.float32)}
t = time.perf_counter()
p = rt.predict(x)
pass_s = time.perf_counter() - t
assert p.probabilities["lulc"].shape == (5, 224, 224)
# VmHWM, not ru_maxrss: after fork + exec, ru_maxrss still counts the parent's peak
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(hwm * 1024, load_s, pass_s)
"""


def _median_interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="base", help="tiny, small, base or large (default base)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per figure (median; >= 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs")
    ap.add_argument("--window", type=int, default=512, help="side of the tiler window in px (default 512)")
    ap.add_argument("--tile-batch", type=int, default=16, help="tiles per forward pass, both tilers (default 16)")
    ap.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS child process")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    encoder = args.encoder if args.encoder.startswith("terramind_v1_") else f"terramind_v1_{args.encoder}"

    import torch

    from terramind_nyc.model.compat import terratorch_imports

    with terratorch_imports():
        from terratorch.models import EncoderDecoderFactory
        from terratorch.tasks.tiled_inference import tiled_inference

    from terramind_nyc.model.artifact import save_artifact
    from terramind_nyc.model.config import ModelConfig
    from terramind_nyc.model.network import build_network
    from terramind_nyc.model.precision import cpu_bf16_flags, torch_numerics
    from terramind_nyc.model.runtime_torch import TorchRuntime

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=encoder, name=f"bench-{encoder}", version="0.0.0+random")
    two_head = build_network(cfg).eval()
    plain = copy.deepcopy(two_head)  # the default memory layout, as terratorch's models run
    # the network as the torch runtime runs it (prepare_for_inference: channels-last convolutions on CPU)
    runtime = TorchRuntime(two_head, tile_overlap=32, tile_batch=args.tile_batch)

    def single(num_classes: int) -> torch.nn.Module:
        return EncoderDecoderFactory().build_model(
            task="segmentation", backbone=encoder, backbone_modalities=list(cfg.modality_names),
            backbone_pretrained=False,
            necks=[{"name": "SelectIndices", "indices": list(cfg.resolved_neck_indices)},
                   {"name": "ReshapeTokensToImage", "remove_cls_token": False},
                   {"name": "LearnedInterpolateToPyramidal"}],
            decoder="UNetDecoder", decoder_channels=list(cfg.decoder_channels), num_classes=num_classes,
        ).eval()

    singles = [single(len(h.classes)) for h in cfg.heads]
    g = torch.Generator().manual_seed(1)
    x224 = {m.name: torch.randn(1, len(m.bands), 224, 224, generator=g) for m in cfg.modalities}

    def run_two_head(precision: str) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode(), torch_numerics(precision, "cpu"):
                two_head(x224)
        return run

    def run_plain() -> None:
        with torch.inference_mode(), torch_numerics("fp32", "cpu"):
            plain(x224)

    def run_singles(precision: str) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode(), torch_numerics(precision, "cpu"):
                for s in singles:
                    s(x224)
        return run

    bf16_flags = cpu_bf16_flags()
    bf16_mode = (f"native ({', '.join(bf16_flags)})" if bf16_flags
                 else "emulated (the CPU has no AMX-BF16 / AVX512-BF16 units)")
    model_t = _median_interleaved({"two_head": run_two_head("fp32"), "two_single": run_singles("fp32"),
                                   "plain": run_plain, "two_head_bf16": run_two_head("bf16"),
                                   "two_single_bf16": run_singles("bf16")},
                                  args.repeats, args.warmup)
    singles.clear()

    # --- tiler --------------------------------------------------------------------------------
    w = args.window
    rng = np.random.default_rng(2)
    xw = {m.name: rng.normal(size=(len(m.bands), w, w)).astype(np.float32) for m in cfg.modalities}
    bounds = np.cumsum([0] + [len(h.classes) for h in cfg.heads])
    out: dict[str, dict[str, np.ndarray]] = {}

    # seconds inside the network, per tiler: what is left is the tiler's own work (pad, cut,
    # blend, softmax), the part where the two can differ; the network's own time varies by a
    # few per cent between identical calls on a busy CPU
    in_net = {"ours": 0.0, "theirs": 0.0}
    forward = runtime._forward

    def timed_forward(batch: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return forward(batch)
        finally:
            in_net["ours"] += time.perf_counter() - t0

    runtime._forward = timed_forward  # type: ignore[method-assign]

    def their_model(t: Any) -> torch.Tensor:
        t0 = time.perf_counter()
        try:
            return torch.cat(list(two_head(t).values()), dim=1)
        finally:
            in_net["theirs"] += time.perf_counter() - t0

    def ours() -> None:
        out["ours"] = runtime.predict_standardised(xw)

    def theirs() -> None:
        with torch.inference_mode(), torch_numerics("fp32", "cpu"):
            logits = tiled_inference(their_model,
                                     {m: torch.from_numpy(a)[None] for m, a in xw.items()},
                                     crop=224, stride=192, delta=8, batch_size=args.tile_batch)[0]
            out["theirs"] = {h.name: logits[bounds[i]:bounds[i + 1]].softmax(0).numpy()
                             for i, h in enumerate(cfg.heads)}

    total = {"ours": 0.0, "theirs": 0.0}

    def timed(name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            t0 = time.perf_counter()
            fn()
            total[name] += time.perf_counter() - t0
        return run

    tiler_t = _median_interleaved({"ours": timed("ours", ours), "theirs": timed("theirs", theirs)},
                                  args.repeats, args.warmup)
    calls = args.repeats + args.warmup
    overhead = {k: (total[k] - in_net[k]) / calls for k in total}  # mean seconds per call outside the network
    diff = max(float(np.abs(out["ours"][h] - out["theirs"][h]).max()) for h in cfg.head_names)
    n_tiles = runtime.plan(w, w).n_tiles

    # --- peak RSS of a fresh process: load the base two-head artifact, one pass -------------
    rss_gb: float | None = None
    child: tuple[float, float] | None = None
    if not args.skip_rss:
        base = two_head if encoder == "terramind_v1_base" else None
        with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
            if base is None:
                torch.manual_seed(0)
                base = build_network(ModelConfig(encoder="terramind_v1_base")).eval()
            path = save_artifact(base, None, Path(tmp) / "base")
            del base, two_head, runtime
            proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path), str(args.threads)],
                                  capture_output=True, text=True, timeout=900, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"peak-RSS child failed:\n{proc.stderr[-3000:]}")
            rss_b, load_s, pass_s = (float(v) for v in proc.stdout.split()[-3:])
            rss_gb, child = rss_b / 1e9, (load_s, pass_s)

    result: dict[str, Any] = {
        "encoder": encoder,
        "two_head_s": round(model_t["two_head"], 4),
        "two_single_s": round(model_t["two_single"], 4),
        "two_head_ratio": round(model_t["two_head"] / model_t["two_single"], 4),
        "two_head_precision": "fp32 (IEEE matmuls)",
        "two_head_bf16_s": round(model_t["two_head_bf16"], 4),
        "two_single_bf16_s": round(model_t["two_single_bf16"], 4),
        "two_head_ratio_bf16": round(model_t["two_head_bf16"] / model_t["two_single_bf16"], 4),
        "bf16_speedup": round(model_t["two_head"] / model_t["two_head_bf16"], 4),
        "bf16_native": bool(bf16_flags),
        "bf16_mode": bf16_mode,
        "tiler_s": round(tiler_t["ours"], 4),
        "terratorch_tiler_s": round(tiler_t["theirs"], 4),
        "tiler_ratio": round(tiler_t["ours"] / tiler_t["theirs"], 4),
        "tiler_max_abs_diff": float(f"{diff:.3g}"),
        "tiler_overhead_s": round(overhead["ours"], 4),
        "terratorch_tiler_overhead_s": round(overhead["theirs"], 4),
        "peak_rss_gb": None if rss_gb is None else round(rss_gb, 3),
    }
    if args.json:
        print(json.dumps(result))
        return result
    print(f"encoder {encoder}, 3 modalities, {args.threads} threads, median of {args.repeats} after "
          f"{args.warmup} warm-up, torch {torch.__version__}")
    rows = [
        ("two-head pass (224), fp32", f"{result['two_head_s']:.3f} s", "IEEE fp32 matmuls"),
        ("two single-head models (224), fp32", f"{result['two_single_s']:.3f} s", ""),
        ("  two-head pass, default layout, fp32", f"{model_t['plain']:.3f} s",
         f"ratio {model_t['plain'] / model_t['two_single']:.3f} without channels-last"),
        ("two-head / two single, fp32", f"{result['two_head_ratio']:.3f}", "target <= 0.55 (base)"),
        ("two-head pass (224), bf16", f"{result['two_head_bf16_s']:.3f} s",
         f"bf16 {bf16_mode}; {result['bf16_speedup']:.2f}x fp32"),
        ("two single-head models (224), bf16", f"{result['two_single_bf16_s']:.3f} s", ""),
        ("two-head / two single, bf16", f"{result['two_head_ratio_bf16']:.3f}",
         "bf16 " + ("native" if bf16_flags else "EMULATED")),
        (f"project tiler ({w}x{w}, {n_tiles} tiles)", f"{result['tiler_s']:.3f} s", ""),
        (f"terratorch tiled_inference ({w}x{w})", f"{result['terratorch_tiler_s']:.3f} s", ""),
        ("project / terratorch", f"{result['tiler_ratio']:.3f}", "target <= 1.0"),
        ("  time outside the network, per call", f"{overhead['ours']:.3f} s",
         f"terratorch {overhead['theirs']:.3f} s (pad, cut, blend, softmax)"),
        ("max |probability difference|", f"{result['tiler_max_abs_diff']:.2g}", "target <= 1e-5"),
        ("peak RSS, base load + one pass", "skipped" if rss_gb is None else f"{rss_gb:.3f} GB", "target <= 1.4"),
    ]
    if child is not None:
        rows.append(("  (child: load, pass)", f"{child[0]:.2f} s, {child[1]:.2f} s", ""))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")
    return result


if __name__ == "__main__":
    main()
