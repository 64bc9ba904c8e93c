"""The ``python -m training`` command line. Each command parses options and calls one function.

Commands::

    build-dataset   chips + WorldCover + footprints -> the dataset layout (resumable)
    fit | validate | test
                    LightningCLI over TerraMindTask + NYCDataModule (``--config training/configs/X.yaml``)
    distill         teachers' cached probabilities -> the two-head student (LightningCLI options) -> artifact
    gate            the two-head run against both single-task runs, or (--student) a student artifact
                    against its teachers, on one test split; the seed's verdict
    verify          the publication battery of an artifact: weights, backends, calibration, panels, card
    export          a terramind_nyc artifact from a run (threshold chosen on val, test metrics)
    selfcheck       the whole path on a synthetic dataset on this machine (CPU, minutes)
    synthetic-dataset
                    write a synthetic dataset in the real layout (smoke runs of the configs)
    bench-fit       a bounded fit on synthetic chips: iterations/s and peak memory (GPU or CPU)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

LIGHTNING_COMMANDS = ("fit", "validate", "test")


def _logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name in ("lightning.pytorch", "lightning.fabric"):  # Lightning logs through its own handler too
        lg = logging.getLogger(name)
        lg.propagate = False
        if verbose == 0:
            lg.setLevel(max(level, logging.WARNING))


def _floats(text: str, n: int, what: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: expected {n} comma-separated numbers, got {text!r}") from None
    if len(vals) != n:
        raise argparse.ArgumentTypeError(f"{what}: expected {n} comma-separated numbers, got {text!r}")
    return vals


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="fit, validate and test take LightningCLI options: python -m training fit --help",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build-dataset", help="build (or resume) the NYC two-label dataset")
    b.add_argument("--out", required=True, help="dataset root (an existing one is resumed)")
    where = b.add_mutually_exclusive_group()
    where.add_argument("--points", help="CSV (lat,lon columns) or GeoJSON of chip centres")
    where.add_argument("--bbox", help="minlon,minlat,maxlon,maxlat to tile with chips (default: the NYC domain)")
    b.add_argument("--size", type=int, default=224, help="chip side in pixels (default 224)")
    b.add_argument("--when", default=None, help="imagery date or START/END window (ISO); default: the recency window")
    b.add_argument("--footprints", default="socrata",
                   help="'socrata' (NYC Open Data 5zhs-2jue), a Socrata base URL, or a GeoJSON/GPKG/GeoParquet file")
    b.add_argument("--footprints-crs", default=None, help="CRS of a footprints file that declares none")
    b.add_argument("--buildings-extent", default=None,
                   help="polygon file: building labels are -1 (ignored) outside it (e.g. the NYC boundary)")
    b.add_argument("--max-lulc-nodata", type=float, default=0.5, help="skip chips with more WorldCover nodata")
    b.add_argument("--allow-missing", default="", help="modalities a chip may lack, e.g. S1RTC,DEM")
    b.add_argument("--fractions", default="0.7,0.15,0.15", help="train,val,test fractions")
    b.add_argument("--block-m", type=float, default=6720.0, help="side of the spatial split blocks in metres")
    b.add_argument("--seed", type=int, default=42, help="split seed")
    b.add_argument("--limit", type=int, default=None, help="build at most this many chip centres")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--json", action="store_true", help="print the summary as JSON")

    d = sub.add_parser("distill", help="distill the two-head student from teacher artifacts (+ LightningCLI options)",
                       epilog="other options go to LightningCLI: --config training/configs/distill_tiny.yaml "
                              "--data.root=DIR --trainer.max_steps=N ...")
    d.add_argument("--teachers", nargs="+", required=True, metavar="ARTIFACT",
                   help="teacher artifacts: PATH (every head it has) or HEAD=PATH, e.g. the converted adapters")
    d.add_argument("--labels", action="store_true", help="mix the dataset's labels into the loss")
    d.add_argument("--out", default=None, help="student artifact directory (default: <run>/artifact)")
    d.add_argument("--device", default="cpu", help="where the teachers run and the export is scored (cpu, cuda)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    g = sub.add_parser("gate", help="the seed's gate: two-head run vs single-task runs, or student vs teachers")
    g.add_argument("--multi", default=None, help="two-head run directory (or .ckpt)")
    g.add_argument("--lulc", default=None, help="land-cover-only run directory (or .ckpt)")
    g.add_argument("--buildings", default=None, help="buildings-only run directory (or .ckpt)")
    g.add_argument("--student", default=None, help="a student artifact (instead of --multi/--lulc/--buildings)")
    g.add_argument("--teachers", nargs="+", default=None, metavar="ARTIFACT",
                   help="with --student: the teacher artifacts (PATH or HEAD=PATH)")
    g.add_argument("--data", default=None, help="dataset root (default: the two-head run's)")
    g.add_argument("--out", default=None, help="report folder (default: <multi or student>/gate)")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")
    g.add_argument("--json", action="store_true", help="print the report as JSON")

    e = sub.add_parser("export", help="write a terramind_nyc artifact from a run")
    e.add_argument("run", help="run directory (or .ckpt)")
    e.add_argument("--out", required=True, help="artifact directory")
    e.add_argument("--data", default=None, help="dataset root (default: the run's)")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--device", default="auto", help="auto, cpu or cuda")
    e.add_argument("--json", action="store_true", help="print the summary as JSON")

    bf = sub.add_parser("bench-fit", help="time a bounded fit on synthetic chips (it/s, peak memory)")
    bf.add_argument("--encoder", default="terramind_v1_base")
    bf.add_argument("--batch-size", type=int, default=16)
    bf.add_argument("--steps", type=int, default=30, help="timed steps (after --warmup)")
    bf.add_argument("--warmup", type=int, default=5)
    bf.add_argument("--precision", default="bf16-mixed")
    bf.add_argument("--tile-size", type=int, default=224)
    bf.add_argument("--device", default="auto", help="auto, cpu or cuda")
    bf.add_argument("--num-workers", type=int, default=2)
    bf.add_argument("--json", action="store_true", help="print one JSON object")

    sd = sub.add_parser("synthetic-dataset", help="write a synthetic dataset in the dataset layout (for smoke runs)")
    sd.add_argument("--out", required=True, help="dataset root")
    sd.add_argument("--chips", type=int, default=24, help="number of chips (default 24)")
    sd.add_argument("--size", type=int, default=224, help="chip side in pixels, a multiple of 16 (default 224)")
    sd.add_argument("--seed", type=int, default=0, help="generator seed (the split seed is always 42)")

    v = sub.add_parser("verify", help="verify an artifact before publication (report.md, README.md model card)")
    v.add_argument("artifact", help="artifact directory")
    v.add_argument("--data", required=True, help="dataset root (its test split is scored)")
    v.add_argument("--teachers", nargs="+", default=None, metavar="ARTIFACT", help="teachers: add the gate")
    v.add_argument("--sniff", choices=("online", "offline", "skip"), default="online",
                   help="panels of the ten sniff areas: live catalog (settings), generated imagery, or none")
    v.add_argument("--backends", default="torch,onnx,openvino", help="backends compared with torch at fp32")
    v.add_argument("--no-progress", action="store_true", help="no progress bars")
    v.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    s = sub.add_parser("selfcheck", help="synthetic dataset -> train -> gate -> export -> runtime, on this machine")
    s.add_argument("--workdir", default=None, help="keep everything here (default: a temporary folder)")
    s.add_argument("--steps", type=int, default=None, help="training steps per run (default: the selfcheck's)")
    s.add_argument("--jobs", type=int, default=None,
                   help="fits run side by side as processes (default 3 on 2+ cores; 1 = one after the other here)")
    s.add_argument("--threads", type=int, default=None, help="intra-op threads per fit (default cores // jobs, >= 1)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _build(args: argparse.Namespace) -> int:
    from terramind_nyc.settings import Settings

    from .build import BuildOptions, Sources, build_dataset
    from .points import read_points, tile_centres
    from .footprints import LocalFootprints, open_footprints
    from .modelconfig import default_classes_and_bands

    settings = Settings.from_env()
    if args.points:
        centres = read_points(args.points)
    else:
        bbox = _floats(args.bbox, 4, "--bbox") if args.bbox else (
            settings.domain_lon[0], settings.domain_lat[0], settings.domain_lon[1], settings.domain_lat[1])
        centres = tile_centres(bbox, settings=settings, size_px=args.size)
    if args.limit is not None:
        centres = centres[: args.limit]
    fr = _floats(args.fractions, 3, "--fractions")
    classes, bands = default_classes_and_bands()
    extent = None
    extent_crs = None
    if args.buildings_extent:
        src = LocalFootprints(args.buildings_extent)
        gdf = src._load()
        extent, extent_crs = gdf.union_all(), gdf.crs.to_string()
    sources = Sources(settings=settings, footprints=open_footprints(args.footprints, assume_crs=args.footprints_crs),
                      classes=classes, bands=bands, extent=extent, extent_crs=extent_crs)
    opts = BuildOptions(out=Path(args.out), centres=tuple(centres), size_px=args.size, when=args.when,
                        max_lulc_nodata=args.max_lulc_nodata,
                        allow_missing=tuple(m for m in args.allow_missing.split(",") if m),
                        fractions={"train": fr[0], "val": fr[1], "test": fr[2]}, block_m=args.block_m,
                        seed=args.seed, progress=not args.no_progress)
    summary = build_dataset(opts, sources)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(f"dataset {summary.root}: {summary.ok} chips ok, {summary.skipped} skipped, "
              f"{summary.failed} failed (rerun to retry), {summary.resumed} resumed")
        for k, v in sorted(summary.reasons.items()):
            print(f"  {k}: {v}")
        for cid, why in sorted(summary.failures.items()):
            print(f"  failed {cid}: {why}")
        if summary.splits:
            print("  split: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.splits.items())))
    return 0 if summary.failed == 0 else 3


def _gate(args: argparse.Namespace) -> int:
    from .errors import TrainingConfigError

    runs = (args.multi, args.lulc, args.buildings)
    if args.student is not None:
        from .distill import gate_against_teachers

        if any(runs) or not args.teachers or not args.data:
            raise TrainingConfigError("gate --student needs --teachers and --data, and no --multi/--lulc/--buildings")
        result, paths = gate_against_teachers(args.student, args.teachers, data=args.data, out=args.out,
                                              device="cpu" if args.device == "auto" else args.device)
    else:
        from .evaluate import run_gate

        if not all(runs) or args.teachers:
            raise TrainingConfigError("gate needs --multi, --lulc and --buildings (or --student with --teachers)")
        result, paths = run_gate(args.multi, args.lulc, args.buildings, data=args.data, out=args.out,
                                 batch_size=args.batch_size, device=args.device)
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
    else:
        print(f"verdict: {result.verdict or 'none'} ({result.rule})")
        for h, c in result.heads.items():
            print(f"  {h}: {c.metric} two-head {100 * c.multi:.2f} %, single {100 * c.single:.2f} %, "
                  f"{c.delta_pp:+.2f} pp")
        print(f"report: {paths[1]} and {paths[0]}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_run

    summary = export_run(args.run, args.out, data=args.data, batch_size=args.batch_size, device=args.device)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"artifact written to {summary['artifact']} (buildings threshold {summary['threshold']:.2f})")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .benchmark import bench_fit

    r = bench_fit(encoder=args.encoder, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                  precision=args.precision, tile_size=args.tile_size, device=args.device,
                  num_workers=args.num_workers)
    if args.json:
        print(json.dumps(r.to_dict(), indent=2))
    else:
        mem = (f"peak GPU memory {r.peak_allocated_gb:.1f} GiB allocated / {r.peak_reserved_gb:.1f} GiB reserved"
               if r.peak_allocated_gb is not None else f"peak RSS {r.peak_rss_gb:.2f} GiB")
        print(f"{r.encoder} two-head, {r.device}, {r.precision}, batch {r.batch_size} x {r.tile_size} px: "
              f"{r.it_per_s:.2f} it/s over {r.steps} steps; {mem}")
        print("reference (not this model): TerraMind-base-Flood reproduction on one AMD MI300X, 4.69 it/s at batch 16 "
              "(4 timesteps x 256 px), fp16-mixed, ~30 GB peak; see docs/training.md")
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    from .errors import DatasetError
    from .modelconfig import default_classes_and_bands
    from .synthetic import write_synthetic_dataset

    if args.chips < 3 or args.size < 16 or args.size % 16:
        raise DatasetError(f"--chips must be >= 3 and --size a positive multiple of 16, got {args.chips}, {args.size}")
    classes, bands = default_classes_and_bands()
    root = write_synthetic_dataset(args.out, n_chips=args.chips, size=args.size, class_names=classes, bands=bands,
                                   seed=args.seed)
    print(f"synthetic dataset {root}: {args.chips} chips of {args.size} px (model.tile_size: {args.size})")
    return 0


def _distill(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .distill import run_distill

    summary = run_distill(args.teachers, rest, labels=args.labels, out=args.out, device=args.device,
                          progress=False if args.no_progress else None)
    if args.json:
        print(json.dumps(summary.to_dict(), default=str))
    else:
        print(f"student artifact {summary.artifact} (run {summary.run}; teacher cache {summary.cache})")
        for k, val in sorted(summary.test.items()):
            if k.endswith(("IoU", "_IoU_building")):
                print(f"  test {k}: {val}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .verify import verify_artifact

    report = verify_artifact(args.artifact, data=args.data, teachers=args.teachers, sniff=args.sniff,
                             backends=tuple(b for b in args.backends.split(",") if b),
                             progress=False if args.no_progress else None)
    if args.json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        for line in report.lines():
            print(line)
    return 0 if report.ok else 1


def _selfcheck(args: argparse.Namespace) -> int:
    from .selfcheck import run_selfcheck

    result = run_selfcheck(workdir=args.workdir, steps=args.steps, jobs=args.jobs, threads=args.threads)
    if args.json:
        print(json.dumps(result.to_json(), default=str))  # one object on one line
    else:
        for line in result.lines():
            print(line)
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from terramind_nyc.errors import TerramindNYCError

    if argv and argv[0] in LIGHTNING_COMMANDS:
        from .lightning_cli import run_lightning_cli

        try:
            run_lightning_cli(argv)
        except TerramindNYCError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "distill":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    _logging(args.verbose, args.quiet)
    handlers: dict[str, Any] = {"build-dataset": _build, "gate": _gate, "export": _export, "selfcheck": _selfcheck,
                                "bench-fit": _bench, "synthetic-dataset": _synthetic, "verify": _verify}
    try:
        if args.command == "distill":
            return _distill(args, rest)
        return int(handlers[args.command](args))
    except TerramindNYCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
