"""``terramind-nyc map``: the command over :func:`~terramind_nyc.maps.map_area`, and the Dask connection.

    terramind-nyc map --aoi manhattan --when 2024-06-01/2024-08-31 --out manhattan-map
    terramind-nyc map --aoi nyc --when 2023-07-01/2023-08-31 --when 2024-07-01/2024-08-31 \\
        --out nyc-change --scheduler tcp://scheduler:8786 --format cog
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import click

from ..errors import InvalidInputError
from .engine import DEFAULT_WINDOW_PX, FORMATS, map_area
from .store import PROB_DTYPES

__all__ = ["dask_executor", "map_command"]

#: Seconds to wait for a Dask scheduler before giving up with a clear error.
CONNECT_TIMEOUT_S = 10.0


@contextlib.contextmanager
def dask_executor(address: str | None = None, *, timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator[Any]:
    """A ``concurrent.futures.Executor`` on the Dask scheduler at ``address`` (default
    ``DASK_SCHEDULER_ADDRESS``); the client closes when the block ends.

    Raises InvalidInputError when distributed is not installed (the ``[dask]`` extra), no address
    is given, or the scheduler cannot be reached within ``timeout_s`` seconds.
    """
    addr = address or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if not addr:
        raise InvalidInputError("no Dask scheduler address: pass --scheduler tcp://HOST:8786 or set "
                                "DASK_SCHEDULER_ADDRESS")
    try:
        from distributed import Client
    except ImportError:
        raise InvalidInputError("a Dask scheduler needs the distributed package: pip install "
                                "'terramind-nyc[dask]'") from None
    try:
        client = Client(addr, timeout=f"{timeout_s:g}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InvalidInputError(f"cannot reach the Dask scheduler at {addr} within {timeout_s:g} s "
                                f"({type(exc).__name__}); check the address and that the scheduler runs") from None
    try:
        yield client.get_executor()
    finally:
        client.close()


@click.command("map")
@click.option("--aoi", required=True,
              help="nyc, a borough (manhattan, brooklyn, queens, bronx, staten-island), MINLON,MINLAT,MAXLON,MAXLAT, "
                   "or a GeoJSON polygon file.")
@click.option("--when", "when", multiple=True,
              help="Date window START/END (ISO); repeat for several (a time dimension). Default: the recency window.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The map folder (resumed if it holds "
              "this same map).")
@click.option("--scheduler", default=None, help="Dask scheduler address (tcp://HOST:8786; or DASK_SCHEDULER_ADDRESS). "
              "Default: in this process.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="zarr",
              help="zarr (always written); cog adds GeoTIFF mosaics with overviews.")
@click.option("--prob-dtype", type=click.Choice(PROB_DTYPES), default="uint8", help="How probabilities are stored.")
@click.option("--window-px", type=int, default=DEFAULT_WINDOW_PX, help="Side of one task's part of the map, pixels.")
@click.option("--overwrite", is_flag=True, help="Replace a folder that holds another map.")
@click.option("--no-resume", is_flag=True, help="Compute every window again (same map folder).")
@click.option("--no-render", is_flag=True, help="Skip quicklook.png and map.html.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
@click.pass_context
def map_command(ctx: click.Context, aoi: str, when: tuple[str, ...], out: str, scheduler: str | None, fmt: str,
                prob_dtype: str, window_px: int, overwrite: bool, no_resume: bool, no_render: bool,
                as_json: bool) -> None:
    """Map an area (per date window) into a resumable Zarr folder; points are then answered from it."""
    settings = ctx.obj["settings"]
    progress = not ctx.obj.get("quiet")
    windows: Any = None if not when else when[0] if len(when) == 1 else list(when)
    formats = ("zarr",) if fmt == "zarr" else ("zarr", "cog")
    kw: dict[str, Any] = {"settings": settings, "resume": not no_resume, "overwrite": overwrite, "formats": formats,
                          "prob_dtype": prob_dtype, "window_px": window_px, "progress": progress,
                          "render": not no_render}
    with contextlib.ExitStack() as stack:
        if scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS"):
            kw["executor"] = stack.enter_context(dask_executor(scheduler))
        run = map_area(aoi, windows, out, **kw)
    summary = {"out": str(run.path), "windows": run.windows, "done": run.done, "skipped": run.skipped,
               "failed": len(run.failed), "seconds": round(run.seconds, 2), "files": [str(f) for f in run.files],
               "failures": [{k: f.get(k) for k in ("time", "window", "error_type", "error")} for f in run.failed]}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{run.windows} windows: {run.skipped} already done, {run.done} computed, {len(run.failed)} failed "
                   f"in {run.seconds:.1f} s -> {run.path}", err=True)
        for f in run.failed[:10]:
            click.echo(f"failed: t{f.get('time')} window {f.get('window')}: {f.get('error_type')}: {f.get('error')}",
                       err=True)
    if run.failed:
        click.echo(f"{len(run.failed)} window(s) failed; run the same command again to retry them", err=True)
        raise SystemExit(1)
