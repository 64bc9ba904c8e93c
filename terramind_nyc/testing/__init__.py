"""Test harness: generated imagery, loopback STAC/COG servers and fault injection.

Usable by this project's tests and by anyone testing code built on terramind_nyc, offline::

    from terramind_nyc.testing import CogServer, StacServer, FaultProxy, build_fixture_catalog

    with CogServer(tmp_path) as cogs:
        cat = build_fixture_catalog(tmp_path, cogs.url)
        lat, lon = cat.points["cloudy_vs_clear"]
        settings = cat.settings()                      # local provider over cat.items_path
        with StacServer([cat.items_path, *cat.collection_paths]) as stac, FaultProxy(stac.url) as api:
            api.faults.fail(503, "/search")            # the next search fails once
            settings = settings.replace(catalog_provider="stac-api", catalog_url=api.url)

Nothing here imports torch. The servers (and their ``rangehttpserver`` dependency, in the
``dev`` extra) load on first use, so the generated catalog works in a torch-free, dev-free
install (``terramind-nyc selfcheck`` reads it through the local provider). The pytest fixtures
built on this live in the project's ``tests/conftest.py``.

Modules: :mod:`.fixture_catalog` (the generated catalog; its docstring lists the scenarios),
:mod:`.scenarios`, :mod:`.synth` and :mod:`.cogs` (what it is built from), :mod:`.real_chip`
(a real TerraMind tile served the same way), :mod:`.servers` (the loopback servers) and
:mod:`.model` (tiny model artifacts). The sensor facts (bands, SCL classes, nodata, the S2
offset) come from :mod:`terramind_nyc.sensors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..sensors import S1_NODATA, S2_BANDS, SCL_CLOUD, SCL_NODATA
from .fixture_catalog import FixtureCatalog, build_fixture_catalog
from .real_chip import RealChip, build_real_chip, data_dir
from .scenarios import SCENARIOS
from .synth import S2_OFFSET, S2_RESOLUTION, baseline_has_offset, chip_fractions, fixture_elevation

if TYPE_CHECKING:  # pragma: no cover
    from .servers import (
        CogServer,
        FaultProxy,
        Faults,
        HarnessError,
        HarnessUnavailable,
        HubServer,
        PgstacServer,
        RequestRecord,
        StacServer,
        free_port,
    )

_SERVERS = ("CogServer", "FaultProxy", "Faults", "HarnessError", "HarnessUnavailable", "HubServer", "PgstacServer",
            "RequestRecord", "StacServer", "free_port")


def __getattr__(name: str) -> Any:
    if name in _SERVERS:
        from . import servers

        return getattr(servers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "S1_NODATA",
    "S2_BANDS",
    "S2_OFFSET",
    "S2_RESOLUTION",
    "SCENARIOS",
    "SCL_CLOUD",
    "SCL_NODATA",
    "CogServer",
    "FaultProxy",
    "Faults",
    "FixtureCatalog",
    "HarnessError",
    "HarnessUnavailable",
    "HubServer",
    "PgstacServer",
    "RealChip",
    "RequestRecord",
    "StacServer",
    "baseline_has_offset",
    "build_fixture_catalog",
    "build_real_chip",
    "chip_fractions",
    "data_dir",
    "fixture_elevation",
    "free_port",
]
