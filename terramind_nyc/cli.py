"""The ``terramind-nyc`` command line. Each command parses options and calls one library function."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from . import __version__
from .settings import Settings


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]  # type: ignore[no-any-return]


def _emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        for line in lines:
            click.echo(line)


@click.group()
@click.version_option(__version__, prog_name="terramind-nyc")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.option("--checkpoint", default=None, help="Checkpoint: local artifact directory or Hugging Face repo id.")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnx"]), default=None, help="Inference backend.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, checkpoint: str | None, backend: str | None) -> None:
    """Building density and land-cover fractions for New York City points."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    overrides: dict[str, Any] = {}
    if checkpoint:
        overrides["checkpoint"] = checkpoint
    if backend:
        overrides["backend"] = backend
    ctx.obj = {"settings": Settings.from_env(**overrides)}


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
        lines.append(f"  {name:6s} {state}{extra}")
    ck = data["checkpoint"]
    rev = f"@{ck['revision']}" if ck.get("revision") else ""
    lines.append(f"checkpoint: {ck['id']}{rev}")
    lines.append(f"  reachable: {'yes' if ck['reachable'] else 'no'} ({ck['detail']})")
    lines.append(f"catalog: {data['catalog']}")
    _emit(data, as_json, lines)


def main() -> None:  # pragma: no cover - console entry point
    cli(prog_name="terramind-nyc")


if __name__ == "__main__":  # pragma: no cover
    main()
