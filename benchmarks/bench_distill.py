"""Benchmark a short distillation: the base student fitted on synthetic teachers, in bf16.

One prepared script for a lent GPU: a few hundred steps of ``python -m training distill``'s code
(:func:`training.distill.run_distill`: teacher cache pass, LightningCLI fit, export) that reports
steps per second, peak memory and the loss curve. Runs offline: a synthetic dataset
(:func:`training.synthetic.write_synthetic_dataset`), two random-weight tiny teacher artifacts at
the chip size (a land-cover-only and a buildings-only one; cheap on purpose, their cost is the
one-off cache pass) and a student built with ``pretrained: false`` (no hub).

    .venv/bin/python benchmarks/bench_distill.py [--encoder terramind_v1_base] [--steps 300]
        [--warmup N] [--batch-size 8] [--chips 64] [--size 224] [--precision bf16-mixed]
        [--device auto|cpu|cuda] [--decoder-channels 512,256,128,64] [--num-workers N]
        [--threads N] [--val-batches 2] [--log-every N] [--workdir DIR] [--json]

Figures (``--json``: one JSON object on the last line of stdout):

- steps_per_s: optimizer steps per second over the timed steps (``--steps`` minus ``--warmup``),
  measured by a Lightning callback (:class:`StepTimer`, passed through ``trainer.callbacks``) from
  the start of the first step after the warm-up to the end of the last step (CUDA synchronised at
  both ends); validation time inside that window is subtracted. The student is validated once, at
  the last step (``val_check_interval`` = ``--steps``, ``--val-batches`` batches), so that
  ``run_distill`` has a best checkpoint to export.
- peak_allocated_gb / peak_reserved_gb: CUDA: ``torch.cuda.max_memory_allocated`` /
  ``max_memory_reserved`` over the fit (reset at its start, after the teacher pass), GiB; null on
  CPU. peak_rss_gb: the process's peak resident memory over the whole run, GiB.
- loss_curve: ``[step, train/loss]`` for every logged step of the run's ``metrics.csv``
  (``--log-every``, default 10 or fewer for short runs); first_loss / last_loss its ends.
- teacher_seconds / fit_seconds / export_seconds: ``run_distill``'s stage wall times (the teacher
  cache pass, ``trainer.fit`` including the final validation and checkpoint, the export with its
  test-split scoring).
- energy: the fit's estimate from the run's ``energy.json`` (:mod:`training.energy`: wall time x
  nominal power x PUE; an estimate, not a measurement).
- cpu / cpu_bf16_flags: the CPU model and its bf16 flags (``amx_bf16`` / ``avx512_bf16``); bf16
  on a CPU without them is emulated and slow.

The weights are random: the figures measure speed and memory, not what the student learns.
Everything is written under ``--workdir`` (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import resource
import shutil
import sys
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

PRECISIONS = ("bf16-mixed", "32-true", "bf16-true")
TEACHER_DECODER = (32, 16, 16, 8)  # teachers are tiny on purpose: their cost is the one-off cache pass
BLOCK = 16  # the synthetic chips' cell size: the chip side must be a multiple of it
GIB = 1024**3


def _ensure_cuda_synchronised() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@cache
def _step_timer_class() -> type:
    """:class:`StepTimer`, built on first use so that option errors and ``--help`` need no Lightning."""
    from terramind_nyc.model.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import lightning.pytorch as L
    import torch

    class StepTimer(L.Callback):
        """Times optimizer steps after ``warmup`` and records CUDA peak memory; writes them to ``out`` (JSON).

        ``on_train_batch_end`` sees the global step after the optimizer step, so the window runs from the
        start of the batch at global step ``warmup`` to the end of the batch that reaches ``max_steps``.
        """

        def __init__(self, out: str, warmup: int = 0) -> None:
            self.out, self.warmup = out, int(warmup)
            self.t0: float | None = None
            self.t_end: float | None = None
            self.timed = 0
            self.val_seconds = 0.0
            self._val_t0: float | None = None
            self.cuda = False

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.cuda = pl_module.device.type == "cuda"
            if self.cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if self.t0 is None and trainer.global_step >= self.warmup:
                if self.cuda:
                    torch.cuda.synchronize()
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.t0 is None:
                return
            self.timed += 1
            last = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
            if last and self.cuda:
                torch.cuda.synchronize()
            self.t_end = time.perf_counter()

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if self.cuda:
                torch.cuda.synchronize()
            self._val_t0 = time.perf_counter()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if self._val_t0 is None:
                return
            if self.cuda:
                torch.cuda.synchronize()
            now = time.perf_counter()
            if self.t0 is not None and trainer.global_step < (trainer.max_steps or 0):
                self.val_seconds += now - self._val_t0  # a validation inside the timed window
            self._val_t0 = None

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            record: dict[str, Any] = {
                "warmup": self.warmup, "timed_steps": self.timed, "val_seconds": self.val_seconds,
                "seconds": (self.t_end - self.t0 - self.val_seconds) if self.t0 is not None and self.t_end else None,
                "peak_allocated": torch.cuda.max_memory_allocated() if self.cuda else None,
                "peak_reserved": torch.cuda.max_memory_reserved() if self.cuda else None,
                "global_step": int(trainer.global_step)}
            Path(self.out).write_text(json.dumps(record))

    StepTimer.__module__, StepTimer.__qualname__ = __name__, "StepTimer"
    return StepTimer


def __getattr__(name: str) -> Any:  # ``trainer.callbacks`` names ``<this module>.StepTimer``
    if name == "StepTimer":
        return _step_timer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _channels(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected four comma-separated integers, got {text!r}") from None
    if len(values) != 4 or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected four comma-separated integers >= 1, got {text!r}")
    return values


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="terramind_v1_base",
                    help="student encoder: tiny, small, base or large, or terramind_v1_<size> (default base)")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps in all, warm-up included (default 300)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps at the start (default min(20, steps // 10), at least 1 when steps > 1)")
    ap.add_argument("--batch-size", type=int, default=8, help="chips per step (default 8)")
    ap.add_argument("--chips", type=int, default=64, help="synthetic chips, all splits (default 64, >= 8)")
    ap.add_argument("--size", type=int, default=224, help=f"chip side in px, a multiple of {BLOCK} (default 224)")
    ap.add_argument("--precision", default="bf16-mixed", choices=PRECISIONS,
                    help="Lightning precision of the student (default bf16-mixed; fp16 is refused by distill)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="accelerator of the fit, the teacher pass and the export (auto: cuda when visible)")
    ap.add_argument("--decoder-channels", type=_channels, default=None, metavar="A,B,C,D",
                    help="the student's UNet decoder channels (default: the model config's, 512,256,128,64)")
    ap.add_argument("--num-workers", type=int, default=None,
                    help="data-loader workers (default 8 on cuda, 0 on cpu; chips are cached in memory after their first read)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's; 1 is fastest on a shared 2-core CPU)")
    ap.add_argument("--val-batches", type=int, default=2, help="validation batches of the final validation")
    ap.add_argument("--log-every", type=int, default=None,
                    help="log train/loss every N steps (default min(10, max(1, steps // 10)))")
    ap.add_argument("--workdir", default=None, help="where to write data, teachers and the run (default: temp)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = ap.parse_args(argv)
    args.encoder = args.encoder if args.encoder.startswith("terramind_v1_") else f"terramind_v1_{args.encoder}"
    if args.warmup is None:
        args.warmup = min(20, args.steps // 10) or (1 if args.steps > 1 else 0)
    if args.log_every is None:
        args.log_every = min(10, max(1, args.steps // 10))
    problems = [msg for bad, msg in (
        (args.steps < 1, f"--steps must be >= 1, got {args.steps}"),
        (not 0 <= args.warmup < args.steps, f"--warmup must be >= 0 and < --steps ({args.steps}), got {args.warmup}"),
        (args.batch_size < 1, f"--batch-size must be >= 1, got {args.batch_size}"),
        (args.chips < 8, f"--chips must be >= 8 (train, val and test each need a spatial block), got {args.chips}"),
        (args.size < BLOCK or args.size % BLOCK, f"--size must be a positive multiple of {BLOCK}, got {args.size}"),
        (args.num_workers is not None and args.num_workers < 0, f"--num-workers must be >= 0, got {args.num_workers}"),
        (args.threads is not None and args.threads < 1, f"--threads must be >= 1, got {args.threads}"),
        (args.val_batches < 1, f"--val-batches must be >= 1, got {args.val_batches}"),
        (args.log_every < 1, f"--log-every must be >= 1, got {args.log_every}"),
    ) if bad]
    if problems:
        ap.error("; ".join(problems))
    return args


def _teachers(work: Path, size: int) -> list[str]:
    """Two random-weight tiny teachers at the chip size: land cover only, buildings only."""
    from terramind_nyc.model.config import DEFAULT_HEADS
    from terramind_nyc.testing.model import make_tiny_artifact, tiny_config

    specs = []
    for seed, head in enumerate(("lulc", "buildings"), start=1):
        heads = tuple(h for h in DEFAULT_HEADS if h.name == head)
        cfg = tiny_config(tile_size=size, decoder_channels=TEACHER_DECODER, heads=heads,
                          name=f"bench-teacher-{head}")
        specs.append(f"{head}={make_tiny_artifact(work / 'teachers' / head, config=cfg, seed=seed)}")
    return specs


def _student_config(args: argparse.Namespace, data: Path, run_dir: Path, accel: str, timer_out: Path) -> dict[str, Any]:
    from training.selfcheck import distill_config

    cfg = distill_config(data, run_dir, args.steps)
    cfg["trainer"].update({
        "accelerator": accel, "precision": args.precision, "max_steps": args.steps, "max_epochs": -1,
        # one validation, at the last step: the best checkpoint run_distill exports, outside the timed steps
        "check_val_every_n_epoch": None, "val_check_interval": args.steps, "limit_val_batches": args.val_batches,
        "log_every_n_steps": args.log_every, "enable_checkpointing": True,
        "callbacks": [{"class_path": f"{__name__}.StepTimer",
                       "init_args": {"out": str(timer_out), "warmup": args.warmup}}],
    })
    cfg["model"].update({"encoder": args.encoder, "pretrained": False, "tile_size": args.size,
                         "decoder_channels": args.decoder_channels})
    workers = args.num_workers if args.num_workers is not None else (8 if accel == "gpu" else 0)
    cfg["data"].update({"batch_size": args.batch_size, "num_workers": workers, "pin_memory": accel == "gpu"})
    return cfg


def _loss_curve(metrics_csv: Path) -> list[list[float]]:
    curve: list[list[float]] = []
    if not metrics_csv.is_file():
        return curve
    with metrics_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            loss, step = row.get("train/loss") or "", row.get("step") or ""
            if loss and step:
                curve.append([int(float(step)), float(loss)])
    return curve


def _round(x: float | None, n: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, n)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_distill: --device cuda, but torch sees no CUDA device "
                         f"(torch {torch.__version__}); use --device cpu or auto")

    import yaml

    from terramind_nyc.model.precision import cpu_bf16_flags, cpu_model
    from training import modelconfig
    from training.distill import run_distill
    from training.energy import read_energy, total
    from training.errors import TrainingError
    from training.synthetic import write_synthetic_dataset

    gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    accel, device = ("gpu", "cuda") if gpu else ("cpu", "cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.json:  # keep stdout for the JSON line
        for name in ("lightning.pytorch", "lightning.fabric", "lightning", "training", "terramind_nyc"):
            logging.getLogger(name).setLevel(logging.WARNING)

    tmp = tempfile.TemporaryDirectory(prefix="bench-distill-") if args.workdir is None else None
    work = Path(tmp.name if tmp is not None else args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        for stale in ("data", "teachers", "runs", "student"):  # a rerun in the same workdir starts afresh
            shutil.rmtree(work / stale, ignore_errors=True)
        t = time.perf_counter()
        classes, bands = modelconfig.default_classes_and_bands()
        data = write_synthetic_dataset(work / "data", n_chips=args.chips, size=args.size, class_names=classes,
                                       bands=bands, seed=0)
        teachers = _teachers(work, args.size)
        setup_s = time.perf_counter() - t
        run_dir = work / "runs" / "student"
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        timer_out = work / "runs" / "step_timer.json"
        config = work / "student.yaml"
        config.write_text(yaml.safe_dump(_student_config(args, data, run_dir, accel, timer_out), sort_keys=False))
        t = time.perf_counter()
        try:
            summary = run_distill(teachers, ["--config", str(config)], labels=False, out=work / "student",
                                  device=device, progress=False)
        except TrainingError as exc:
            raise SystemExit(f"bench_distill: the distillation failed: {exc}") from None
        total_s = time.perf_counter() - t
        _ensure_cuda_synchronised()
        if not timer_out.is_file():
            raise SystemExit(f"bench_distill: the step timer wrote nothing to {timer_out} (did the fit run?)")
        timer = json.loads(timer_out.read_text())
        curve = _loss_curve(Path(summary.run) / "metrics.csv")
        estimates = read_energy(summary.run)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1024 if sys.platform != "darwin" else 1)
        seconds = timer["seconds"]
        result: dict[str, Any] = {
            "encoder": args.encoder,
            "device": device,
            "device_name": torch.cuda.get_device_name(0) if gpu else (cpu_model() or "cpu"),
            "precision": args.precision,
            "steps": int(timer["global_step"]),
            "warmup": args.warmup,
            "timed_steps": int(timer["timed_steps"]),
            "batch_size": args.batch_size,
            "size": args.size,
            "chips": args.chips,
            "decoder_channels": args.decoder_channels,
            "steps_per_s": _round(timer["timed_steps"] / seconds if seconds else None),
            "chips_per_s": _round(timer["timed_steps"] * args.batch_size / seconds if seconds else None, 3),
            "peak_allocated_gb": _round(timer["peak_allocated"] / GIB if timer["peak_allocated"] is not None else None, 3),
            "peak_reserved_gb": _round(timer["peak_reserved"] / GIB if timer["peak_reserved"] is not None else None, 3),
            "peak_rss_gb": _round(rss / GIB, 3),
            "loss_curve": [[s, _round(v, 5)] for s, v in curve],
            "first_loss": _round(curve[0][1], 5) if curve else None,
            "last_loss": _round(curve[-1][1], 5) if curve else None,
            "teacher_seconds": summary.seconds.get("teachers"),
            "fit_seconds": summary.seconds.get("fit"),
            "export_seconds": summary.seconds.get("export"),
            "setup_seconds": round(setup_s, 2),
            "distill_seconds": round(total_s, 2),
            "energy": ({**total(estimates), "lines": [e.line() for e in estimates]} if estimates else None),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cpu": cpu_model(),
            "cpu_bf16_flags": list(cpu_bf16_flags()),
            "workdir": None if tmp is not None else str(work),
        }
    finally:
        if tmp is not None:
            tmp.cleanup()

    if args.json:
        print(json.dumps(result))
        return result
    flags = ", ".join(result["cpu_bf16_flags"]) or "none"
    print(f"distillation of {args.encoder} (random weights) on {result['device_name']}, {args.precision}, "
          f"torch {torch.__version__}; CPU {result['cpu']} (bf16 flags: {flags})")

    def gb(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f} GiB"

    rows = [
        ("steps (warm-up + timed)", f"{result['steps']}", f"{args.warmup} + {result['timed_steps']}"),
        ("steps / s (timed)", "n/a" if result["steps_per_s"] is None else f"{result['steps_per_s']:.3f}",
         f"batch {args.batch_size} x {args.size} px; {result['chips_per_s']} chips / s"),
        ("peak CUDA allocated", gb(result["peak_allocated_gb"]), "over the fit"),
        ("peak CUDA reserved", gb(result["peak_reserved_gb"]), "over the fit"),
        ("peak RSS", gb(result["peak_rss_gb"]), "whole process"),
        ("loss first -> last", f"{result['first_loss']} -> {result['last_loss']}",
         f"{len(curve)} logged steps (every {args.log_every})"),
        ("teacher cache pass", f"{result['teacher_seconds']} s", f"{args.chips} chips, 2 tiny teachers"),
        ("fit", f"{result['fit_seconds']} s", "incl. final validation and checkpoint"),
        ("export", f"{result['export_seconds']} s", "incl. test-split scoring"),
        ("energy of the fit", "" if not estimates else f"{result['energy']['kwh']} kWh",
         "; ".join(result["energy"]["lines"]) if estimates else "no energy.json"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>14}  {note}")
    if curve:
        print("loss curve (step: train/loss): " + ", ".join(f"{s}: {v:.4f}" for s, v in curve))
    return result


if __name__ == "__main__":
    main()
