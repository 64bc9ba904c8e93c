"""The ``terramind-nyc`` command line. Each command parses options and calls one library function.

Logging goes to stderr: ``-v`` the library's INFO, ``-vv`` its DEBUG (terramind_nyc only),
``-vvv`` DEBUG of everything (rasterio, urllib3, pystac-client, ... included); ``-q`` errors
only. Every line passes :class:`~terramind_nyc.logging.RedactSecretsFilter`, so no signing
token reaches the terminal at any level. A library error (:class:`~terramind_nyc.errors.TerramindNYCError`,
an invalid ``TERRAMIND_NYC_*`` variable included) ends as one ``error: ...`` line and exit status 1.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import IO, Any

import click

from ._version import __version__
from .errors import TerramindNYCError
from .settings import Settings

#: The name of the stderr handler the CLI puts on the root logger (replaced, never stacked).
_HANDLER_NAME = "terramind-nyc-cli"


class LibraryError(click.ClickException):
    """A :class:`TerramindNYCError` as the CLI shows it: one ``error: Type: message`` line, exit 1."""

    exit_code = 1

    def __init__(self, exc: TerramindNYCError) -> None:
        from .imagery.urls import redact

        super().__init__(" ".join(redact(f"{type(exc).__name__}: {exc}").split()))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class _Cli(click.Group):
    """The command group: a library error in the group's own callback (settings from the
    environment) or in any command ends as a :class:`LibraryError`, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TerramindNYCError as exc:
            raise LibraryError(exc) from None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name != "map":
            return super().get_command(ctx, name)
        from .maps.cli import map_command  # terramind_nyc.maps loads only for `map`

        return map_command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "map"])


def _configure_logging(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Log to stderr at the level ``-v`` / ``-q`` ask for, every line redacted; undone when the
    command ends (the CLI may run inside another program, e.g. a test's CliRunner)."""
    from .logging import THIRD_PARTY_LOGGERS, quiet_third_party, redact_secrets

    root, pkg = logging.getLogger(), logging.getLogger("terramind_nyc")
    for h in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = (root.level, pkg.level)
    root.addHandler(handler)
    flt = redact_secrets(root)  # every handler of the root logger, the one above included
    level = (logging.ERROR if quiet else logging.WARNING if verbose == 0 else logging.INFO if verbose == 1
             else logging.DEBUG)
    # the root logger (every other library's records) stays at WARNING below -vvv: -v and -vv
    # raise terramind_nyc's own logger only
    root.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose >= 3 else logging.WARNING)
    pkg.setLevel(level)
    # dependencies stay at WARNING (ERROR with -q) unless -vvv: their DEBUG is noise, and URLs
    old = quiet_third_party(logging.NOTSET if verbose >= 3 else logging.ERROR if quiet else logging.WARNING)

    def restore() -> None:
        root.removeHandler(handler)
        for h in root.handlers:
            h.removeFilter(flt)
        root.setLevel(saved[0])
        pkg.setLevel(saved[1])
        for name in THIRD_PARTY_LOGGERS:
            logging.getLogger(name).setLevel(old[name])

    ctx.call_on_close(restore)


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]  # type: ignore[no-any-return]


def _emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    for line in [json.dumps(data, indent=2, default=str)] if as_json else lines:
        click.echo(line)


def _result_lines(r: Any) -> list[str]:
    """A short human-readable table of one Result."""
    s2 = r.provenance.imagery.get("S2L2A", {})
    return [
        f"point ({r.lat:.5f}, {r.lon:.5f})  window {r.grid.width}x{r.grid.height} px"
        + (f"  radius {r.radius_m:g} m" if r.radius_m else ""),
        f"buildings: {100 * r.building_density:.1f}% of the area, {r.n_building_components} components",
        "land cover: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in r.lulc_fractions.items()),
        f"dominant: {r.dominant_class} (confidence {r.confidence:.2f}); nodata {100 * r.nodata_fraction:.1f}%",
        f"S2 {', '.join(s2.get('item_ids') or [])} ({(s2.get('datetimes') or ['?'])[0]})",
        (f"model {r.provenance.checkpoint.get('id')} via {r.provenance.backend}/{r.provenance.device} "
         f"({r.provenance.precision})  in {r.timings.get('total', 0):.2f} s"),
    ] + [f"warning: {w}" for w in r.warnings]


@click.group(cls=_Cli)
@click.version_option(__version__, prog_name="terramind-nyc")
@click.option("-v", "--verbose", count=True,
              help="More logging on stderr: -v info, -vv debug of terramind_nyc, -vvv debug of every library "
                   "(rasterio, urllib3, ...). Signing tokens are redacted at every level.")
@click.option("-q", "--quiet", is_flag=True,
              help="Errors only: no log lines, no library warnings, no progress bars.")
@click.option("--checkpoint", default=None, help="Checkpoint: local artifact directory or Hugging Face repo id.")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnx", "openvino"]), default=None,
              help="Inference backend.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=None,
              help="Numeric precision of the network (auto: bf16 where the hardware has it).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, checkpoint: str | None, backend: str | None,
        precision: str | None) -> None:
    """Building density and land-cover fractions for New York City points."""
    if quiet and verbose:
        raise click.UsageError("-q and -v contradict each other; pass one of them")
    _configure_logging(ctx, verbose, quiet)
    if quiet:
        import warnings

        from .errors import TerramindNYCWarning

        warnings.simplefilter("ignore", TerramindNYCWarning)
    overrides: dict[str, Any] = {k: v for k, v in (("checkpoint", checkpoint), ("backend", backend),
                                                    ("precision", precision)) if v}
    ctx.obj = {"settings": Settings.from_env(**overrides), "quiet": quiet}


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def info(ctx: click.Context, as_json: bool) -> None:
    """Version, available backends, the configured checkpoint and whether it is reachable."""
    from .diagnostics import environment_info

    data = environment_info(_settings(ctx))
    lines = [f"terramind-nyc {data['version']}", "backends:"]
    for name, b in data["backends"].items():
        state = "available" if b["available"] else "not installed"
        extra = f" ({b['detail']})" if b.get("detail") else ""
        lines.append(f"  {name:8s} {state}{extra}")
    ck = data["checkpoint"]
    rev = f"@{ck['revision']}" if ck.get("revision") else ""
    lines.append(f"checkpoint: {ck['id']}{rev}")
    lines.append(f"  reachable: {'yes' if ck['reachable'] else 'no'} ({ck['detail']})")
    lines.append(f"catalog: {data['catalog']}")
    p = data["precision"]
    lines.append(f"precision: {p['setting']} (CPU {p['cpu']}; bf16 flags: {', '.join(p['cpu_bf16_flags']) or 'none'})")
    for name, ran in p["runs"].items():
        lines.append(f"  {name:15s} runs {ran}")
    lines.append(f"backend: {data['backend_setting']} (auto order: {data['auto_backend_order']})")
    _emit(data, as_json, lines)


# ignore_unknown_options: a negative longitude such as -73.98 is an argument, not an option
@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("lat", type=float)
@click.argument("lon", type=float)
@click.option("--when", default=None, help="Date, datetime, or START/END window (ISO). Default: the recency window.")
@click.option("--size-m", type=float, default=None, help="Window side in metres (default 2240).")
@click.option("--radius-m", type=float, default=None, help="Summarise a circle of this radius around the point.")
@click.option("--geotiff", type=click.Path(dir_okay=False), default=None, help="Write rasters to this GeoTIFF.")
@click.option("--geojson", type=click.Path(dir_okay=False), default=None, help="Write polygons to this GeoJSON.")
@click.option("--quicklook", type=click.Path(dir_okay=False), default=None, help="Write a PNG quicklook.")
@click.option("--riprap", is_flag=True, help="Print the Riprap client's one dict instead of the full result.")
@click.option("--views", is_flag=True, help="Print Riprap's three documents (terramind_nyc.riprap) as JSON.")
@click.option("--map", "map_dir", default=None, help="Answer from this city map folder where it can, else live.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def fetch(ctx: click.Context, lat: float, lon: float, when: str | None, size_m: float | None,
          radius_m: float | None, geotiff: str | None, geojson: str | None, quicklook: str | None,
          riprap: bool, views: bool, map_dir: str | None, as_json: bool) -> None:
    """Building density and land-cover fractions around LAT LON."""
    from .api import fetch as _fetch

    r = _fetch(lat, lon, when=when, size_m=size_m, radius_m=radius_m, settings=_settings(ctx), map=map_dir)
    if geotiff:
        r.to_geotiff(geotiff)
    if geojson:
        r.write_geojson(geojson)
    if quicklook:
        r.quicklook(quicklook)
    from .riprap import views as riprap_views

    data = riprap_views(r) if views else r.to_riprap() if riprap else r.to_dict()
    _emit(data, as_json or riprap or views, _result_lines(r))  # the Riprap documents are always JSON


@cli.command()
@click.argument("points_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("out_file", type=click.Path(dir_okay=False))
@click.option("--when", default=None, help="Date or START/END window (ISO).")
@click.option("--size-m", type=float, default=None, help="Window side in metres (default 2240).")
@click.option("--radius-m", type=float, default=None, help="Summarise a circle of this radius around each point.")
@click.option("--workers", type=int, default=None, help="Concurrent windows.")
@click.option("--riprap", is_flag=True, help="Store the Riprap client's dict per point (JSONL output).")
@click.option("--retry-failed", is_flag=True, help="Rerun points that failed in an earlier run.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when on a terminal).")
@click.pass_context
def batch(ctx: click.Context, points_file: str, out_file: str, when: str | None, size_m: float | None,
          radius_m: float | None, workers: int | None, riprap: bool, retry_failed: bool,
          progress: bool | None) -> None:
    """Run every point of POINTS_FILE (CSV lat,lon or GeoJSON points) into OUT_FILE (.jsonl or .csv).

    Resumable: rerunning skips the points OUT_FILE already holds.
    """
    from .batch import run_batch

    s = run_batch(points_file, out_file, when=when, size_m=size_m, radius_m=radius_m, settings=_settings(ctx),
                  workers=workers, riprap=riprap, retry_failed=retry_failed,
                  progress=False if ctx.obj.get("quiet") else progress)
    click.echo(f"{s.total} points: {s.skipped} already done, {s.ok} ok, {s.failed} failed -> {s.output}", err=True)


@cli.command()
@click.option("--checkpoint", "ck", default=None, help="Use this artifact instead of a tiny random-weight one.")
@click.option("--out", "outdir", type=click.Path(file_okay=False), default=None,
              help="Keep the JSON, GeoTIFF, GeoJSON and quicklook outputs in this folder.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def selfcheck(ctx: click.Context, ck: str | None, outdir: str | None, as_json: bool) -> None:
    """Run fetch end to end against a generated local catalog (offline) and report each check."""
    from .selfcheck import run_selfcheck

    settings = _settings(ctx)

    def show(c: Any) -> None:
        if not as_json:
            mark = "PASS" if c.ok else "FAIL"
            click.echo(f"[{mark}] {c.name} ({c.seconds:.2f} s): {c.detail}")

    rep = run_selfcheck(checkpoint=ck, backend=settings.backend, precision=settings.precision, outdir=outdir,
                        progress=show)
    if as_json:
        click.echo(json.dumps({"ok": rep.ok, "random_weights": rep.random_weights, "outputs": rep.outputs,
                               "checks": [c.__dict__ for c in rep.checks],
                               "result": rep.result.to_dict() if rep.result is not None else None},
                              indent=2, default=str))
    else:
        if rep.result is not None:
            click.echo("\nresult of the first scenario:")
            for line in _result_lines(rep.result):
                click.echo(f"  {line}")
        if rep.random_weights:
            click.echo("\nnote: the model has RANDOM weights; these figures check the plumbing, not the land cover."
                       "\n      Run `terramind-nyc selfcheck --checkpoint DIR_OR_REPO_ID` to check a trained artifact.")
        click.echo(f"selfcheck: {len(rep.checks) - len(rep.failed)} passed, {len(rep.failed)} failed")
    if not rep.ok:
        raise SystemExit(1)


@cli.command("export-onnx")
@click.argument("artifact")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Write the exported artifact to this folder (default: into ARTIFACT).")
@click.option("--subsets", default="default", show_default=True,
              help="Modality subsets that get a graph: 'default' (every subset with the first modality, S2L2A), "
                   "'all', 'full', or a list such as 'S2L2A,S2L2A+DEM'.")
@click.option("--opset", type=int, default=20, show_default=True, help="ONNX opset.")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript", show_default=True,
              help="torch.onnx exporter.")
@click.option("--tolerance", type=float, default=None,
              help="Largest absolute logit difference of ONNX Runtime from torch that passes verification "
                   "(default 1e-4; 1e-2 with --fp16).")
@click.option("--fp16", is_flag=True, help="float16 weights and arithmetic (float32 inputs/outputs), for GPU providers.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the export record).")
@click.pass_context
def export_onnx_command(ctx: click.Context, artifact: str, out: str | None, subsets: str, opset: int, exporter: str,
                        tolerance: float | None, fp16: bool, as_json: bool) -> None:
    """Export ARTIFACT's network to ONNX (one graph per modality subset, weights stored once), verify it
    against torch and record it in config.json. Needs the torch extra and onnxruntime."""
    from .model.export_onnx import export_onnx

    def show(line: str) -> None:
        if not ctx.obj.get("quiet"):
            click.echo(line, err=True)

    record = export_onnx(artifact, out, subsets=subsets, opset=opset, exporter=exporter,  # type: ignore[arg-type]
                         tolerance=tolerance, fp16=fp16, progress=show)
    data = record.to_dict()
    subsets = ", ".join("+".join(g.modalities) for g in record.graphs)
    _emit(data, as_json, [(f"exported {len(record.graphs)} graph(s) ({subsets}) to {out or artifact}; max abs diff "
                           f"{record.max_abs_diff:.2e}, argmax agreement {100 * record.argmax_agreement:.3f}%")])


@cli.command("import-adapters")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Artifact directory to write.")
@click.option("--adapters", default=None, help="Adapters repo id or local folder (default msradam/TerraMind-NYC-Adapters).")
@click.option("--revision", default=None, help="Revision (tag, branch or commit) of the adapters repo.")
@click.option("--base", default=None, help="TerraMind base repo id or local folder (default: the base the adapters name, "
              "ibm-esa-geospatial/TerraMind-1.0-base).")
@click.option("--base-revision", default=None, help="Revision of the base repo.")
@click.option("--encoder", default=None, help="TerraMind size the adapters were trained on (default: from the base's name).")
@click.option("--overwrite", is_flag=True, help="Replace an existing artifact at --out.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def import_adapters_command(out: str, adapters: str | None, revision: str | None, base: str | None,
                            base_revision: str | None, encoder: str, overwrite: bool, as_json: bool) -> None:
    """Download the published NYC adapters and their TerraMind base, check every tensor, and write them as
    one artifact (config.json + model.safetensors) that every backend serves. Needs the torch extra."""
    from .model.adapters import ADAPTERS_REPO
    from .model.convert_adapters import import_adapters
    from .model.locate import read_config

    path = import_adapters(out, adapters=adapters or ADAPTERS_REPO, revision=revision, base=base,
                           base_revision=base_revision, encoder=encoder, overwrite=overwrite)
    config = read_config(path)
    data = {"path": str(path), "name": config.name, "kind": config.kind, "heads": list(config.head_names),
            "source": config.training.get("source")}
    line = (f"wrote {path}: {config.name} ({config.kind}, heads {', '.join(config.head_names)}); "
            f"serve it with TERRAMIND_NYC_CHECKPOINT={path}")
    _emit(data, as_json, [line])


def _sniff_lines(rep: Any) -> list[str]:
    """The aligned table of a :class:`~terramind_nyc.sniff.SniffReport`, then notes and the summary line."""
    head = ("area", "expected: buildings; cover", "dominant", "buildings (px of 50176)")
    lines = [f"{head[0]:23s} {head[1]:27s} {head[2]:11s} {head[3]:>23s}  result"]
    for r in rep.rows:
        expected = f"{r.expected_buildings}; {' or '.join(r.expected_lulc)}"
        bld = "-" if r.building_share is None else f"{100 * r.building_share:5.1f}% {r.building_px_224:>6d} px"
        verdict = "ERROR" if r.error else "PASS" if r.ok else "FAIL (" + ", ".join(
            k for k, ok in (("cover", r.lulc_ok), ("buildings", r.buildings_ok)) if not ok) + ")"
        lines.append(f"{r.area:23s} {expected:27s} {r.dominant or '-':11s} {bld:>23s}  {verdict}")
    lines += [f"error: {r.area}: {r.error}" for r in rep.rows if r.error is not None]
    lines += [f"warning: {w}" for w in dict.fromkeys(w for r in rep.rows for w in r.warnings)]
    p = rep.preprocessing
    sha = f", sha256 {p['sha256'][:12]}" if p.get("sha256") else ""
    prep = (f"stats {p['stats'] or 'as configured'}, s1 {p['s1']}, chip {p['chip']}; "
            f"checkpoint {p['checkpoint']}{sha}; imagery {rep.catalog}")
    errors = sum(r.error is not None for r in rep.rows)
    counts = f"{rep.passed} of {len(rep.rows)} areas hold, {rep.failed} fail ({errors} with an error)"
    judged = "" if rep.judged else f"NOT JUDGED (exit 0): {rep.note}. The table checks the plumbing only: "
    return [*lines, f"sniff: {judged}{counts}; {prep}"]


@cli.command("sniff")
@click.option("--checkpoint", "ck", default=None,
              help="Artifact directory or repo id to sniff (default: the configured one; offline: a tiny random-weight "
                   "model).")
@click.option("--stats", type=click.Choice(["flood", "pretraining"]), default=None,
              help="Standardise with ImpactMesh-Flood or TerraMind pretraining statistics (default: the checkpoint's).")
@click.option("--s1", "s1", type=click.Choice(["linear", "db"]), default=None,
              help="Feed Sentinel-1 as linear power or dB (default: the checkpoint's).")
@click.option("--chip", type=click.Choice(["224", "256"]), default=None,
              help="Model tile size in px (default: the checkpoint's).")
@click.option("--offline/--online", default=None,
              help="--offline: the local harness (generated imagery), never judged; --online: always judge. Default: "
                   "judge unless the catalog is local or unreachable.")
@click.option("--when", default=None, help="Acquisition window (ISO date or START/END); pin it to compare candidates.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Keep (and reuse) the offline harness and tiny model in this folder.")
@click.option("--panels", type=click.Path(file_okay=False), default=None, help="Write one quicklook PNG per area here.")
@click.option("--json", "as_json", is_flag=True, help="Also print the report as one JSON object on the last line.")
@click.pass_context
def sniff_command(ctx: click.Context, ck: str | None, stats: str | None, s1: str | None, chip: str | None,
                  offline: bool | None, when: str | None, workdir: str | None, panels: str | None,
                  as_json: bool) -> None:
    """Fetch the ten NYC sanity areas the published adapters were judged on and check each area's dominant
    land cover and building amount. Exit 0 when every area holds (or nothing could be judged), 1 when one fails."""
    from .sniff import sniff

    rep = sniff(_settings(ctx), stats=stats, s1=s1, chip=None if chip is None else int(chip), offline=offline,
                checkpoint=ck, when=when, workdir=workdir, progress=False if ctx.obj.get("quiet") else None,
                panels=panels)
    click.echo("\n".join(_sniff_lines(rep)))
    if as_json:
        click.echo(json.dumps(rep.to_dict(), allow_nan=False))
    if rep.exit_code:
        raise SystemExit(rep.exit_code)


def main() -> None:  # pragma: no cover - console entry point
    cli(prog_name="terramind-nyc")


if __name__ == "__main__":  # pragma: no cover
    main()
