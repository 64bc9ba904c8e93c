"""Benchmark the converted NYC adapters against the way Riprap runs them: one chip, side by side.

The adapters (two LoRA fine-tunes of TerraMind base, DESIGN section 9) are run two ways on the
same raw 256x256 chip (three modalities: S2L2A DN uniform 0..4000, S1RTC dB uniform -25..0,
DEM uniform 0..100 m; one tile, the adapters' chip size), on random weights in the adapters'
exact shapes (:func:`terramind_nyc.testing.adapters.write_synthetic_adapters`: TerraMind
``--encoder``, UNet decoder 512/256/128/64, LoRA r = 16, alpha = 32 on ``attn.qkv`` and
``attn.proj``; T = 4 concat neck):

- adapters: the synthetic repos converted by :func:`terramind_nyc.model.adapters.import_adapters`,
  loaded with :func:`~terramind_nyc.model.artifact.load_artifact` and
  ``TorchRuntime.from_artifact(art, precision=...)``; one ``predict`` per chip (validate,
  standardise, tile, forward, softmax): each head's LoRA-merged encoder runs once
  (``temporal_repeat``: the four identical time steps are one pass, its features repeated).
- riprap_way: two separate full models, one per head, built the way the adapters were trained
  and are run by Riprap (:func:`terramind_nyc.testing.adapters.reference_model`: terratorch's
  EncoderDecoderFactory, TemporalWrapper T = 4 concat), loaded strictly from the same synthetic
  files with the LoRA merged (``W + (alpha / r) * B @ A`` = ``W + 2.0 * B @ A``), fed
  ``{modality: [1, C, 4, 256, 256]}`` (four identical copies), both run back to back per chip
  under ``torch.inference_mode``. The chip is validated and standardised with the same library
  functions the adapters way uses (the converted config's statistics), so both ways compute the
  same function and only the model side differs; softmax per head.

Every figure comes from fresh worker processes (``python -c``), one per way x precision per
round, started alternately (``--rounds`` rounds, the order reversed every other round). A worker
loads its way, predicts the chip once (its first result), then times ``--repeats`` more chips
after ``--warmup`` untimed ones, at ``--threads`` torch threads. The synthetic repos (~1.5 GB
for base) and the converted artifact are written once, in this process, into ``--workdir``
(default: a temporary folder) and reused when they are already there.

    .venv/bin/python benchmarks/bench_adapters.py [--encoder base] [--threads 2] [--repeats 5]
        [--warmup 1] [--rounds 1] [--workdir DIR] [--quick] [--json]

Figures (``--json`` prints one JSON object on the last line of stdout):
- adapters_s / riprap_way_s: median seconds per chip over every timed chip of every round;
  adapters_ratio = adapters_s / riprap_way_s (target <= 0.3).
- adapters_peak_rss_gb / riprap_way_peak_rss_gb: the largest peak resident memory (VmHWM of
  the worker, GB = 1e9 bytes) of a fresh process that loads and runs that way (targets:
  adapters <= 1.6 GB; Riprap's way about 3.3 GB). VmHWM rather than ``ru_maxrss``: after
  fork + exec, ``ru_maxrss`` still counts the parent's peak (the parent holds the synthetic
  weights it wrote).
- adapters_first_s / riprap_way_first_s: process start to the first chip's probabilities;
  adapters_load_s / riprap_way_load_s: the load alone (artifact load + runtime, or the two
  models built and their weights read and merged).
- max_prob_diff / argmax_agreement: the adapters way against the Riprap way on the same chip
  and precision (largest absolute probability difference over both heads; the lowest per-pixel
  argmax agreement of the two heads). At fp32 the two are the same function, so the difference
  is float rounding only.
- The same figures with ``_bf16`` appended: both ways in bf16 (the adapters way with
  ``precision="bf16"``, the Riprap way under ``torch_numerics("bf16", "cpu")``: autocast to
  bfloat16), measured only where the CPU has bf16 units (``cpu_bf16_flags``: AMX-BF16 /
  AVX512-BF16); elsewhere bf16 would be emulated (slower than fp32), the figures are None and
  ``bf16_skipped`` says why.
- fp32 passes run with IEEE matmuls (``torch_numerics("fp32", "cpu")``) in both ways, whatever
  terratorch's import set process-wide.
- cpu_model, cpu_bf16_flags, torch version, threads, repeats, warmup, rounds.

``--quick`` is a smoke run: the tiny encoder, fp32 only, one round, one timed chip, no warm-up.
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

#: The chip both workers predict (deterministic), and the worker's common preamble.
_PREAMBLE = r"""
import json, sys, time
t_start = float(sys.argv[1])
repos, artifact, encoder, threads, precision, repeats, warmup, out = sys.argv[2:10]
threads, repeats, warmup = int(threads), int(repeats), int(warmup)
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(threads)
rng = np.random.default_rng(0)
SIDE = 256
x = {"S2L2A": rng.integers(0, 4001, (12, SIDE, SIDE)).astype(np.uint16),
     "S1RTC": rng.uniform(-25.0, 0.0, (2, SIDE, SIDE)).astype(np.float32),
     "DEM": rng.uniform(0.0, 100.0, (1, SIDE, SIDE)).astype(np.float32)}

def report(run, load_s, extra):
    probs = run()
    first = time.time() - t_start
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    np.savez(out, **probs)
    # VmHWM, not ru_maxrss: after fork + exec, ru_maxrss still counts the parent's peak
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps({"first_result_s": first, "load_s": load_s, "times": times, "peak_rss_gb": hwm * 1024 / 1e9,
                      "terratorch_imported": "terratorch" in sys.modules,
                      "matmul_precision_after": torch.get_float32_matmul_precision(), **extra}))
"""

_ADAPTERS_WORKER = _PREAMBLE + r"""
from terramind_nyc.model.artifact import load_artifact
from terramind_nyc.model.runtime_torch import TorchRuntime
t = time.perf_counter()
rt = TorchRuntime.from_artifact(load_artifact(artifact), precision=precision)
load_s = time.perf_counter() - t
n_tiles = rt.plan(SIDE, SIDE).n_tiles

def run():
    return rt.predict(x).probabilities

report(run, load_s, {"precision": rt.precision.used, "n_tiles": n_tiles})
"""

_RIPRAP_WORKER = _PREAMBLE + r"""
from safetensors.torch import load_file
from terramind_nyc.model.adapters import HEAD_FOLDERS, base_file_name
from terramind_nyc.model.inputs import standardise, validate_inputs
from terramind_nyc.model.locate import read_config
from terramind_nyc.model.precision import torch_numerics
from terramind_nyc.testing.adapters import ADAPTER_TIMESTEPS, reference_model
t = time.perf_counter()
cfg = read_config(artifact)  # the preprocessing statistics only; the weights come from the repos
base = torch.load(Path(repos) / "base" / base_file_name(encoder), map_location="cpu", weights_only=True)
models = {}
for head, folder in HEAD_FOLDERS.items():
    d = Path(repos) / "adapters" / folder
    acfg = json.loads((d / "adapter_config.json").read_text())
    scale = float(acfg["lora_alpha"]) / int(acfg["r"])
    m = reference_model(encoder, int(acfg["num_classes"]), cfg.decoder_channels)
    sd = {k: base[k[len("encoder.encoder."):]] for k in m.state_dict() if k.startswith("encoder.encoder.")}
    sd.update({k: v for k, v in load_file(str(d / "decoder_head.safetensors")).items()
               if not k.startswith("aux_heads.")})
    lora = load_file(str(d / "adapter_model.safetensors"))
    for k, a in lora.items():
        if k.endswith(".lora_A.default.weight"):
            target = k[: -len(".lora_A.default.weight")]
            b = lora[target + ".lora_B.default.weight"]
            sd[target + ".weight"] = sd[target + ".weight"] + scale * (b @ a)
    m.load_state_dict(sd, strict=True)
    models[head] = m.eval()
    del sd, lora
del base
load_s = time.perf_counter() - t

def run():
    arrays, valid, _ = validate_inputs(cfg, x, None)
    s = standardise(cfg, arrays, valid)
    probs = {}
    with torch.inference_mode(), torch_numerics(precision, "cpu"):
        inp = {k: torch.from_numpy(a)[None, :, None].repeat(1, 1, ADAPTER_TIMESTEPS, 1, 1) for k, a in s.items()}
        for head, m in models.items():
            probs[head] = m(inp).output.float().softmax(1)[0].numpy()
    return probs

report(run, load_s, {"precision": precision, "n_tiles": 1})
"""

_WORKERS = {"adapters": _ADAPTERS_WORKER, "riprap_way": _RIPRAP_WORKER}


def _worker(way: str, repos: Path, artifact: Path, encoder: str, *, threads: int, precision: str,
            repeats: int, warmup: int, out: Path) -> dict[str, Any]:
    args = [repr(time.time()), str(repos), str(artifact), encoder, str(threads), precision, str(repeats),
            str(warmup), str(out)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", _WORKERS[way], *args], capture_output=True, text=True, env=env,
                          timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{way} {precision} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _build(workdir: Path, encoder: str) -> tuple[Path, Path]:
    """The synthetic base + adapters repos and their converted artifact (written once, then reused)."""
    from terramind_nyc.model.adapters import import_adapters
    from terramind_nyc.model.locate import read_config
    from terramind_nyc.testing.adapters import write_synthetic_adapters

    repos, artifact = workdir / f"repos-{encoder}", workdir / f"adapters-{encoder}"
    done = repos / ".complete"
    if not done.is_file():
        print(f"writing synthetic {encoder} base and adapters repos into {repos} ...", file=sys.stderr)
        t = time.perf_counter()
        write_synthetic_adapters(repos, encoder=encoder, decoder_channels=(512, 256, 128, 64))
        done.write_text("")
        print(f"  {time.perf_counter() - t:.1f} s", file=sys.stderr)
    try:
        ready = read_config(artifact).encoder == encoder
    except Exception:  # noqa: BLE001 - not converted yet (or broken): convert it
        ready = False
    if not ready:
        print(f"converting them into {artifact} ...", file=sys.stderr)
        t = time.perf_counter()
        import_adapters(artifact, adapters=str(repos / "adapters"), base=str(repos / "base"), encoder=encoder,
                        overwrite=True)
        print(f"  {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return repos, artifact


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="base", help="tiny, small, base or large (default base, the adapters')")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads of every worker (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed chips per worker (median; default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed chips after the first (default 1)")
    ap.add_argument("--rounds", type=int, default=1, help="fresh worker processes per way x precision, alternating")
    ap.add_argument("--workdir", default=None, help="keep the synthetic repos and artifact here (default: temporary)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny encoder, fp32 only, 1 timed chip, no warm-up")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object (last line)")
    args = ap.parse_args(argv)
    if args.quick:
        args.encoder, args.repeats, args.warmup, args.rounds = "tiny", 1, 0, 1
    if args.repeats < 1 or args.rounds < 1 or args.threads < 1 or args.warmup < 0:
        ap.error("--repeats, --rounds and --threads must be >= 1, --warmup >= 0")
    encoder = args.encoder if args.encoder.startswith("terramind_v1_") else f"terramind_v1_{args.encoder}"

    import numpy as np
    import torch

    from terramind_nyc.model.precision import cpu_bf16_flags, cpu_model

    flags = list(cpu_bf16_flags())
    precisions = ["fp32"] + (["bf16"] if flags and not args.quick else [])
    bf16_skipped = (None if "bf16" in precisions else
                    "--quick: fp32 only" if args.quick else
                    "the CPU flags show neither amx_bf16 nor avx512_bf16 (bf16 would be emulated, slower than fp32)")

    tmp = tempfile.TemporaryDirectory(prefix="bench-adapters-")
    workdir = Path(args.workdir) if args.workdir else Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    repos, artifact = _build(workdir, encoder)

    plan = [(way, p) for p in precisions for way in ("adapters", "riprap_way")]
    outs = {k: workdir / f"probs-{k[0]}-{k[1]}.npz" for k in plan}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {k: [] for k in plan}
    for rnd in range(args.rounds):
        for way, p in plan if rnd % 2 == 0 else plan[::-1]:
            print(f"round {rnd + 1}: {way} {p} ...", file=sys.stderr)
            runs[(way, p)].append(_worker(way, repos, artifact, encoder, threads=args.threads, precision=p,
                                          repeats=args.repeats, warmup=args.warmup, out=outs[(way, p)]))
    leaky = [p for p in precisions if any(r["terratorch_imported"] for r in runs[("adapters", p)])]

    res: dict[str, Any] = {
        "encoder": encoder, "chip_px": 256, "cpu_model": cpu_model(), "cpu_bf16_flags": flags,
        "torch_version": torch.__version__, "threads": args.threads, "repeats": args.repeats,
        "warmup": args.warmup, "rounds": args.rounds, "bf16_skipped": bf16_skipped,
        "adapters_imported_terratorch": bool(leaky),
    }
    for p in ("fp32", "bf16"):
        sfx = "" if p == "fp32" else "_bf16"
        keys = ["adapters_s", "riprap_way_s", "adapters_ratio", "adapters_peak_rss_gb", "riprap_way_peak_rss_gb",
                "adapters_first_s", "riprap_way_first_s", "adapters_load_s", "riprap_way_load_s",
                "adapters_precision", "adapters_n_tiles", "max_prob_diff", "argmax_agreement"]
        if p not in precisions:
            res.update({k + sfx: None for k in keys})
            continue
        for way in ("adapters", "riprap_way"):
            rs = runs[(way, p)]
            res[f"{way}_s{sfx}"] = statistics.median(t for r in rs for t in r["times"])
            res[f"{way}_peak_rss_gb{sfx}"] = max(r["peak_rss_gb"] for r in rs)
            res[f"{way}_first_s{sfx}"] = statistics.median(r["first_result_s"] for r in rs)
            res[f"{way}_load_s{sfx}"] = statistics.median(r["load_s"] for r in rs)
        ours = runs[("adapters", p)]
        res["adapters_ratio" + sfx] = res["adapters_s" + sfx] / res["riprap_way_s" + sfx]
        res["adapters_precision" + sfx] = "/".join(sorted({r["precision"] for r in ours}))
        res["adapters_n_tiles" + sfx] = ours[0]["n_tiles"]
        a, b = np.load(outs[("adapters", p)]), np.load(outs[("riprap_way", p)])
        res["max_prob_diff" + sfx] = max(float(np.abs(a[h] - b[h]).max()) for h in a.files)
        res["argmax_agreement" + sfx] = min(float((a[h].argmax(0) == b[h].argmax(0)).mean()) for h in a.files)
    if res["bf16_skipped"] is None:
        res["bf16_speedup_adapters"] = res["adapters_s"] / res["adapters_s_bf16"]
        res["bf16_speedup_riprap_way"] = res["riprap_way_s"] / res["riprap_way_s_bf16"]

    if args.json:
        print(json.dumps(res))
    else:
        _print_table(res)
    tmp.cleanup()
    return res


def _print_table(res: dict[str, Any]) -> None:
    print(f"CPU: {res['cpu_model']}; bf16 flags: {', '.join(res['cpu_bf16_flags']) or 'none (no bf16 units)'}")
    print(f"{res['encoder']} adapters (2 heads), one raw 256x256 chip ({res['adapters_n_tiles']} tile), 3 modalities, "
          f"{res['threads']} threads, torch {res['torch_version']}, {res['rounds']} round(s) x {res['repeats']} timed "
          f"chips after {res['warmup']} warm-up, fresh processes")
    print(f"{'precision':10s} {'adapters s':>10s} {'riprap s':>9s} {'ratio':>6s} {'RSS ours':>8s} {'RSS riprap':>10s} "
          f"{'first ours':>10s} {'first rip':>9s} {'max |dp|':>9s} {'argmax':>8s}")
    for p, sfx in (("fp32", ""), ("bf16", "_bf16")):
        if res["adapters_s" + sfx] is None:
            print(f"{p:10s} skipped: {res['bf16_skipped']}")
            continue
        print(f"{p:10s} {res['adapters_s' + sfx]:10.3f} {res['riprap_way_s' + sfx]:9.3f} "
              f"{res['adapters_ratio' + sfx]:6.3f} {res['adapters_peak_rss_gb' + sfx]:8.2f} "
              f"{res['riprap_way_peak_rss_gb' + sfx]:10.2f} {res['adapters_first_s' + sfx]:10.2f} "
              f"{res['riprap_way_first_s' + sfx]:9.2f} {res['max_prob_diff' + sfx]:9.2e} "
              f"{100 * res['argmax_agreement' + sfx]:7.2f}%")
    print("targets: adapters / riprap way <= 0.3; adapters peak RSS <= 1.6 GB (riprap way ~3.3 GB)")
    if res["bf16_skipped"] is None:
        print(f"bf16 speed-up: adapters {res['bf16_speedup_adapters']:.2f}x, riprap way "
              f"{res['bf16_speedup_riprap_way']:.2f}x")


if __name__ == "__main__":
    main()
