"""Helpers of the imagery tests (``from imagery.helpers import ...``; tests/ is on the path)."""

from __future__ import annotations

import time
import uuid
import warnings
from datetime import datetime
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from testing.helpers import local_path

from terramind_nyc.dates import resolve_when
from terramind_nyc.deadline import Deadline
from terramind_nyc.errors import MissingModalityWarning
from terramind_nyc.grid import ChipGrid
from terramind_nyc.imagery._tasks import Runner
from terramind_nyc.imagery.catalog import Catalog, get_catalog
from terramind_nyc.imagery.chip import Chip
from terramind_nyc.imagery.reader import read_chip, read_scl
from terramind_nyc.imagery.scene_choice import S2Choice, SclReader, choose_s2
from terramind_nyc.settings import Settings

#: The stand-in for a signing token: it must never show up in results, errors or logs.
SECRET = "SECRET"


def window(cat: Any, scenario: str) -> tuple[datetime, datetime]:
    """The scenario's date window, as the reader resolves it at the fixture's ``now``."""
    return resolve_when(cat.when(scenario), Settings(), now=cat.now)


def fresh(settings: Settings, token: str | None = None) -> Catalog:
    """A catalog whose asset URLs carry a unique token-like query: new to GDAL's per-URL cache,
    and a stand-in for a signed URL that must never show up in results, errors or logs."""
    tok = token or uuid.uuid4().hex

    def signer(href: str) -> str:
        return f"{href}?sig={SECRET}{tok}" if "://" in href else href

    return get_catalog(settings, signer=signer)


def s2_search(c: Catalog, cat: Any, deadline: Deadline) -> list[pystac.Item]:
    """The S2 search of the ``clear`` scenario (its chip and window) in catalog ``c``."""
    start, end = window(cat, "clear")
    return c.search("sentinel-2-l2a", bbox_4326=cat.grid("clear").bounds_4326, start=start, end=end,
                    deadline=deadline)


def choose(grid: ChipGrid, catalog: Catalog, *, start: datetime, end: datetime, settings: Settings,
           deadline: Deadline, read_scl: SclReader = read_scl) -> S2Choice:
    """The scene choice as :func:`read_chip` runs it: the prefiltered S2 search, then ``choose_s2``
    with the reader's SCL reader (or ``read_scl``) on a request's I/O pool."""
    s = settings
    items = catalog.search(s.s2_collection, bbox_4326=grid.bounds_4326, start=start, end=end, deadline=deadline,
                           cloud_lt=s.scene_prefilter_cloud_pct)
    with Runner(s.io_threads, deadline) as runner:
        return choose_s2(grid, items, source=catalog.source, start=start, end=end, settings=s, runner=runner,
                         read_scl=read_scl)


def library_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the library itself logged (the loopback servers log request lines, queries included;
    rasterio's DEBUG records name datasets by their full URL, which is outside the library)."""
    return "\n".join(r.getMessage() for r in caplog.records
                     if r.name.startswith("terramind_nyc") and not r.name.startswith("terramind_nyc.testing"))


def read_scenario(fx: Any, scenario: str, settings: Settings, *, when: Any = None, deadline: Deadline | None = None,
                  catalog: Catalog | None = None) -> Chip:
    """``read_chip`` of a fixture scenario (its grid and window) through a :func:`fresh` catalog."""
    cat = fx.catalog
    return read_chip(cat.grid(scenario, settings), when=when if when is not None else cat.when(scenario),
                     settings=settings, deadline=deadline, catalog=catalog or fresh(settings))


def source_on_grid(fx: Any, item_id: str, asset: str, grid: ChipGrid) -> np.ndarray:
    """The asset's pixels under a 10 m-aligned grid, read straight from the file (no resampling)."""
    path = local_path(fx.catalog, fx.catalog.item(item_id)["assets"][asset]["href"])
    with rasterio.open(path) as ds:
        k = round(grid.resolution / ds.res[0]) if ds.res[0] < grid.resolution else 1
        assert k == 1
        col = round((grid.bounds[0] - ds.transform.c) / ds.res[0])
        row = round((ds.transform.f - grid.bounds[3]) / ds.res[0])
        return ds.read(1, window=((row, row + grid.height), (col, col + grid.width)))


def settle(server: Any, quiet_s: float = 0.3, limit_s: float = 5.0) -> None:
    """Release hung requests and wait until reads abandoned at a deadline stop arriving, so they
    do not land in the next test's request log."""
    server.faults.clear()
    t_end = time.monotonic() + limit_s
    n = -1
    while time.monotonic() < t_end and n != server.request_count:
        n = server.request_count
        time.sleep(quiet_s)


def quiet(fn: Any, *a: Any, **k: Any) -> Any:
    """``fn(*a, **k)`` with MissingModalityWarning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingModalityWarning)
        return fn(*a, **k)
