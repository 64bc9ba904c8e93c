"""Loopback servers for tests: a Range-capable COG server, STAC APIs and a fault-injecting proxy.

Every server binds 127.0.0.1 on a free port, starts in the background, and is a context
manager that stops it again::

    with CogServer(root) as cogs:                        # serves files under root, Range included
        cat = build_fixture_catalog(root, cogs.url)
        with StacServer(cat.items_path) as stac, FaultProxy(stac.url) as proxy:
            proxy.faults.fail(503, "/search", times=2)  # the next two searches fail
            ...
            cogs.faults.delay(0.05)                       # 50 ms per COG request
            cogs.request_count, cogs.requests             # what the reader asked for

:class:`Faults` is the shared, thread-safe rule book: delay, hang, fail (500/429/404/...)
and truncate, each matched with :func:`fnmatch.fnmatchcase` against the request path (no
query string). :class:`CogServer` and :class:`FaultProxy` consult it for every request.

:class:`StacServer` runs ``rustac serve`` (in-memory backend: collections, bbox, intersects,
datetime and ids work; ``query``, ``filter`` and ``sortby`` are ignored, as on some real
servers). :class:`PgstacServer` runs the stack Planetary Computer runs: PostgreSQL + PostGIS
with pgstac and stac-fastapi-pgstac under uvicorn; it raises :class:`HarnessUnavailable`
when the PostgreSQL binaries or the Python packages are missing, so tests can skip.

Modules: :mod:`.loopback` (address, errors, request log, the in-process server base),
:mod:`.faults` (the rule book), :mod:`.cog`, :mod:`.hub`, :mod:`.proxy` (in-process servers),
:mod:`.rustac` and :mod:`.pgstac` (subprocess servers).
"""

from __future__ import annotations

from .cog import CogServer
from .faults import FaultKind, Faults
from .hub import HubServer
from .loopback import LOOPBACK, HarnessError, HarnessUnavailable, RequestRecord, free_port
from .pgstac import PgstacServer
from .proxy import FaultProxy
from .rustac import StacServer

__all__ = [
    "LOOPBACK",
    "CogServer",
    "FaultKind",
    "FaultProxy",
    "Faults",
    "HarnessError",
    "HarnessUnavailable",
    "HubServer",
    "PgstacServer",
    "RequestRecord",
    "StacServer",
    "free_port",
]
