"""benchmarks/bench_distill.py: a short distillation on synthetic teachers, run as a script on CPU.

The benchmark is run the way a person runs it (``python benchmarks/bench_distill.py ... --json``)
with the tiny student; the test checks the shape and sanity of its figures, never their values.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_distill.py"
KEYS = {"encoder", "device", "device_name", "precision", "steps", "batch_size", "steps_per_s", "peak_allocated_gb",
        "peak_reserved_gb", "peak_rss_gb", "loss_curve", "first_loss", "last_loss", "teacher_seconds", "fit_seconds",
        "energy", "cpu", "cpu_bf16_flags"}


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # one intra-op thread: on a shared 2-core machine OpenMP threads that spin against another process
    # make every op many times slower
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.slow
def test_bench_distill_runs_a_short_cpu_distillation(tmp_path: Path) -> None:
    proc = _run("--encoder", "terramind_v1_tiny", "--steps", "4", "--chips", "8", "--size", "64", "--batch-size", "2",
                "--precision", "32-true", "--decoder-channels", "32,16,16,8", "--threads", "1", "--device", "cpu",
                "--workdir", str(tmp_path / "work"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert KEYS <= set(res)
    assert res["encoder"] == "terramind_v1_tiny" and res["device"] == "cpu" and res["precision"] == "32-true"
    assert res["steps"] == 4 and res["batch_size"] == 2 and res["timed_steps"] == 4 - res["warmup"] >= 1
    assert res["steps_per_s"] > 0
    assert res["peak_allocated_gb"] is None and res["peak_reserved_gb"] is None and res["peak_rss_gb"] > 0
    curve = res["loss_curve"]
    assert curve and all(len(p) == 2 and math.isfinite(p[1]) for p in curve)
    assert [p[0] for p in curve] == sorted(p[0] for p in curve)
    assert res["first_loss"] == curve[0][1] and res["last_loss"] == curve[-1][1]
    assert res["teacher_seconds"] >= 0 and res["fit_seconds"] > 0
    assert res["energy"]["stages"] == ["distill"] and res["energy"]["kwh"] >= 0
    assert isinstance(res["cpu_bf16_flags"], list)
    # the run is kept under --workdir: the student artifact run_distill exported, the run's metrics
    work = tmp_path / "work"
    assert (work / "student" / "config.json").is_file()
    assert (work / "runs" / "student" / "metrics.csv").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--steps", "0"], "--steps must be >= 1"),
    (["--steps", "10", "--warmup", "10"], "--warmup must be >= 0 and < --steps"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--chips", "4"], "--chips must be >= 8"),
    (["--size", "100"], "--size must be a positive multiple of 16"),
    (["--decoder-channels", "64,32"], "four comma-separated integers"),
    (["--precision", "16-mixed"], "invalid choice"),
])
def test_bench_distill_refuses_bad_options(args: list[str], message: str) -> None:
    proc = _run(*args, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and not proc.stdout


def test_bench_distill_refuses_cuda_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    proc = _run("--device", "cuda", "--steps", "2", timeout=120)
    assert proc.returncode == 1 and "--device cuda, but torch sees no CUDA device" in proc.stderr
