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

All work runs in fresh worker processes (``python -c``, ``--threads`` torch threads), per
precision: one timing worker loads both ways, predicts the chip once with each, then alternates
them chip by chip (``--warmup`` untimed rounds, then ``--repeats`` timed ones, the order reversed
every other round), so a busy CPU slows both alike; then one worker per way loads only that way
and predicts one chip, for its peak RSS and its first result. The synthetic repos (~1 GB for
base) and the converted artifact (~1 GB) are written once, in this process, into ``--workdir``
(default: a temporary folder) and reused when they are already there.

    .venv/bin/python benchmarks/bench_adapters.py [--encoder base] [--threads 2] [--repeats 5]
        [--warmup 1] [--workdir DIR] [--skip-rss] [--quick] [--json]

Figures (``--json`` prints one JSON object on the last line of stdout):
- adapters_s / riprap_way_s: median seconds per chip over the timed chips (validate and
  standardise included in both ways); adapters_ratio = adapters_s / riprap_way_s (target <= 0.3).
- adapters_peak_rss_gb / riprap_way_peak_rss_gb: the peak resident memory (VmHWM of the
  worker, GB = 1e9 bytes) of a fresh process that loads and runs that way (targets:
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
- adapters_n_tiles (1), adapters_precision (what the runtime ran), adapters_imported_terratorch
  (the network is built from terratorch's modules, so it does), loadavg_1min_max (the highest
  1-minute load average a worker saw at its end: above ``--threads`` something else was running).
- cpu_model, cpu_bf16_flags, torch_version, threads, repeats, warmup.

``--skip-rss`` skips the per-way workers (their figures are None). ``--quick`` is a smoke run:
the tiny encoder, fp32 only, one timed chip per way, no warm-up.
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

#: The worker: loads one way (``adapters`` / ``riprap_way``: peak RSS, first result) or both
#: (``timing``: chips of the two ways alternated, median of ``repeats`` after ``warmup``).
_WORKER = r"""
import json, sys, time
t_start = float(sys.argv[1])
mode, repos, artifact, encoder, threads, precision, repeats, warmup, out = sys.argv[2:11]
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


def load_adapters():
    from terramind_nyc.model.artifact import load_artifact
    from terramind_nyc.model.runtime_torch import TorchRuntime

    rt = TorchRuntime.from_artifact(load_artifact(artifact), precision=precision)
    info = {"precision": rt.precision.used, "n_tiles": rt.plan(SIDE, SIDE).n_tiles}
    return (lambda: rt.predict(x).probabilities), info


def load_riprap_way():
    from safetensors.torch import load_file
    from terramind_nyc.model.adapters import HEAD_FOLDERS, base_file_name
    from terramind_nyc.model.inputs import standardise, validate_inputs
    from terramind_nyc.model.locate import read_config
    from terramind_nyc.model.precision import torch_numerics
    from terramind_nyc.testing.adapters import ADAPTER_TIMESTEPS, reference_model

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
                sd[target + ".weight"] = sd[target + ".weight"] + scale * (lora[target + ".lora_B.default.weight"] @ a)
        m.load_state_dict(sd, strict=True)
        models[head] = m.eval()
        del sd, lora
    del base

    def run():
        arrays, valid, _ = validate_inputs(cfg, x, None)
        s = standardise(cfg, arrays, valid)
        probs = {}
        with torch.inference_mode(), torch_numerics(precision, "cpu"):
            inp = {k: torch.from_numpy(a)[None, :, None].repeat(1, 1, ADAPTER_TIMESTEPS, 1, 1) for k, a in s.items()}
            for head, m in models.items():
                probs[head] = m(inp).output.float().softmax(1)[0].numpy()
        return probs

    return run, {"precision": precision, "n_tiles": 1}


ways = ("adapters", "riprap_way") if mode == "timing" else (mode,)
res = {"ways": {}}
runs = {}
for way in ways:
    t = time.perf_counter()
    runs[way], info = load_adapters() if way == "adapters" else load_riprap_way()
    res["ways"][way] = dict(info, load_s=time.perf_counter() - t)
probs = {}
for way in ways:
    probs[way] = runs[way]()
    res["ways"][way]["first_result_s"] = time.time() - t_start
if mode == "timing":
    times = {w: [] for w in ways}
    for i in range(warmup + repeats):
        for way in ways if i % 2 == 0 else ways[::-1]:
            t = time.perf_counter()
            runs[way]()
            if i >= warmup:
                times[way].append(time.perf_counter() - t)
    for way in ways:
        res["ways"][way]["times"] = times[way]
    np.savez(out, **{f"{w}/{h}": v for w, p in probs.items() for h, v in p.items()})
# VmHWM, not ru_maxrss: after fork + exec, ru_maxrss still counts the parent's peak
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
res.update(peak_rss_gb=hwm * 1024 / 1e9, terratorch_imported="terratorch" in sys.modules,
           loadavg=list(__import__("os").getloadavg()))
print(json.dumps(res))
"""


def _worker(mode: str, repos: Path, artifact: Path, encoder: str, *, threads: int, precision: str,
            repeats: int = 0, warmup: int = 0, out: Path | None = None) -> dict[str, Any]:
    args = [repr(time.time()), mode, str(repos), str(artifact), encoder, str(threads), precision, str(repeats),
            str(warmup), str(out or "")]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", _WORKER, *args], capture_output=True, text=True, env=env,
                          timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} {precision} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _build(workdir: Path, encoder: str) -> tuple[Path, Path]:
    """The synthetic base + adapters repos and their converted artifact (written once, then reused)."""
    from terramind_nyc.model.convert_adapters import import_adapters
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
    ap.add_argument("--repeats", type=int, default=5, help="timed chips per way (median; default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed chips per way after the first (default 1)")
    ap.add_argument("--workdir", default=None, help="keep the synthetic repos and artifact here (default: temporary)")
    ap.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS worker processes")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny encoder, fp32 only, 1 timed chip, no warm-up")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object (last line)")
    args = ap.parse_args(argv)
    if args.quick:
        args.encoder, args.repeats, args.warmup = "tiny", 1, 0
    if args.repeats < 1 or args.threads < 1 or args.warmup < 0:
        ap.error("--repeats and --threads must be >= 1, --warmup >= 0")
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

    res: dict[str, Any] = {
        "encoder": encoder, "chip_px": 256, "cpu_model": cpu_model(), "cpu_bf16_flags": flags,
        "torch_version": torch.__version__, "threads": args.threads, "repeats": args.repeats,
        "warmup": args.warmup, "bf16_skipped": bf16_skipped, "adapters_imported_terratorch": None,
    }
    loadavg: list[float] = []
    for p in ("fp32", "bf16"):
        sfx = "" if p == "fp32" else "_bf16"
        if p not in precisions:
            res.update({k + sfx: None for k in (
                "adapters_s", "riprap_way_s", "adapters_ratio", "adapters_peak_rss_gb", "riprap_way_peak_rss_gb",
                "adapters_first_s", "riprap_way_first_s", "adapters_load_s", "riprap_way_load_s",
                "adapters_precision", "max_prob_diff", "argmax_agreement")})
            continue
        out = workdir / f"probs-{p}.npz"
        print(f"{p}: both ways, {args.repeats} chips each, alternated ...", file=sys.stderr)
        timing = _worker("timing", repos, artifact, encoder, threads=args.threads, precision=p,
                         repeats=args.repeats, warmup=args.warmup, out=out)
        loadavg.append(timing["loadavg"][0])
        for way in ("adapters", "riprap_way"):
            res[f"{way}_s{sfx}"] = statistics.median(timing["ways"][way]["times"])
        res["adapters_ratio" + sfx] = res["adapters_s" + sfx] / res["riprap_way_s" + sfx]
        res["adapters_precision" + sfx] = timing["ways"]["adapters"]["precision"]
        res["adapters_n_tiles"] = timing["ways"]["adapters"]["n_tiles"]
        probs = np.load(out)
        heads = sorted({k.split("/", 1)[1] for k in probs.files})
        a = {h: probs[f"adapters/{h}"] for h in heads}
        b = {h: probs[f"riprap_way/{h}"] for h in heads}
        res["max_prob_diff" + sfx] = max(float(np.abs(a[h] - b[h]).max()) for h in heads)
        res["argmax_agreement" + sfx] = min(float((a[h].argmax(0) == b[h].argmax(0)).mean()) for h in heads)
        for way in ("adapters", "riprap_way"):
            if args.skip_rss:
                res.update({f"{way}_{k}{sfx}": None for k in ("peak_rss_gb", "first_s", "load_s")})
                continue
            print(f"{p}: {way} alone in a fresh process (peak RSS, first result) ...", file=sys.stderr)
            r = _worker(way, repos, artifact, encoder, threads=args.threads, precision=p)
            loadavg.append(r["loadavg"][0])
            res[f"{way}_peak_rss_gb{sfx}"] = r["peak_rss_gb"]
            res[f"{way}_first_s{sfx}"] = r["ways"][way]["first_result_s"]
            res[f"{way}_load_s{sfx}"] = r["ways"][way]["load_s"]
            if way == "adapters":
                res["adapters_imported_terratorch"] = r["terratorch_imported"]
    if res["bf16_skipped"] is None:
        res["bf16_speedup_adapters"] = res["adapters_s"] / res["adapters_s_bf16"]
        res["bf16_speedup_riprap_way"] = res["riprap_way_s"] / res["riprap_way_s_bf16"]
    res["loadavg_1min_max"] = max(loadavg)

    if args.json:
        print(json.dumps(res))
    else:
        _print_table(res)
    tmp.cleanup()
    return res


def _print_table(res: dict[str, Any]) -> None:
    print(f"CPU: {res['cpu_model']}; bf16 flags: {', '.join(res['cpu_bf16_flags']) or 'none (no bf16 units)'}")
    print(f"{res['encoder']} adapters (2 heads), one raw 256x256 chip ({res['adapters_n_tiles']} tile), 3 modalities, "
          f"{res['threads']} threads, torch {res['torch_version']}; {res['repeats']} timed chips per way after "
          f"{res['warmup']} warm-up, alternated in one process; peak RSS and first result from fresh processes; "
          f"1-min load average up to {res['loadavg_1min_max']:.2f}")

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    print(f"{'precision':10s} {'adapters s':>10s} {'riprap s':>9s} {'ratio':>6s} {'RSS ours':>8s} {'RSS riprap':>10s} "
          f"{'first ours':>10s} {'first rip':>9s} {'max |dp|':>9s} {'argmax':>8s}")
    for p, sfx in (("fp32", ""), ("bf16", "_bf16")):
        if res["adapters_s" + sfx] is None:
            print(f"{p:10s} skipped: {res['bf16_skipped']}")
            continue
        print(f"{p:10s} {res['adapters_s' + sfx]:10.3f} {res['riprap_way_s' + sfx]:9.3f} "
              f"{res['adapters_ratio' + sfx]:6.3f} {f(res['adapters_peak_rss_gb' + sfx], '8.2f'):>8s} "
              f"{f(res['riprap_way_peak_rss_gb' + sfx], '10.2f'):>10s} {f(res['adapters_first_s' + sfx], '10.2f'):>10s} "
              f"{f(res['riprap_way_first_s' + sfx], '9.2f'):>9s} {res['max_prob_diff' + sfx]:9.2e} "
              f"{100 * res['argmax_agreement' + sfx]:7.2f}%")
    print("targets: adapters / riprap way <= 0.3; adapters peak RSS <= 1.6 GB (riprap way ~3.3 GB)")
    if res["bf16_skipped"] is None:
        print(f"bf16 speed-up: adapters {res['bf16_speedup_adapters']:.2f}x, riprap way "
              f"{res['bf16_speedup_riprap_way']:.2f}x")


if __name__ == "__main__":
    main()
