"""Shared pytest fixtures: generated imagery, loopback STAC/COG servers, test settings.

Costly things are session-scoped and built on first use: a tests that does not ask for a
server never starts one. After every test the fault rules of every started server are cleared
(hung requests released) and request logs are reset before the next test, so a test sees only
its own requests and faults.

Fixtures:

- ``fixture_catalog``: ``.catalog`` (a :class:`terramind_nyc.testing.FixtureCatalog`, COGs +
  items generated once per session) and ``.cog_server`` (the Range-capable server serving them).
- ``cog_server``: that :class:`~terramind_nyc.testing.CogServer` (``.faults``, ``.requests``).
- ``stac_server``: ``rustac serve`` over the fixture items (bbox/datetime/collections work;
  query/filter/sortby are ignored).
- ``faulty_stac``: a :class:`~terramind_nyc.testing.FaultProxy` in front of ``stac_server``.
- ``local_settings`` / ``stac_settings``: Settings for the local provider / the STAC API
  behind ``faulty_stac``; signing off, short timeouts, caches off, NYC domain check on.
- ``real_chip``: one real TerraMind tile served as COGs + items (:class:`RealChip`).
- ``pgstac_server``: stac-fastapi-pgstac over the fixture items (skips when PostgreSQL,
  PostGIS or the Python packages are missing).

Tests never reach the network: connections to anything but loopback fail with
``NetworkBlockedError`` (pystac-client's ``--block-network`` in spirit; GDAL's own HTTP client is
outside Python and is kept on loopback by the items' URLs).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from terramind_nyc.settings import Settings
from terramind_nyc.testing import (
    CogServer,
    FaultProxy,
    FixtureCatalog,
    HarnessUnavailable,
    PgstacServer,
    RealChip,
    StacServer,
    build_fixture_catalog,
    build_real_chip,
)

#: Servers started in this session; their faults are cleared and logs reset around each test.
_STARTED: list[Any] = []

#: Settings used by the imagery tests: short timeouts so fault tests end quickly.
TEST_SETTINGS: dict[str, Any] = {
    "signer": "none",
    "http_timeout_s": 3.0,
    "http_retries": 2,
    "http_backoff_s": 0.05,
    "deadline_s": 10.0,
    "cache_enabled": False,
}


# ----------------------------------------------------------------------------------------
# No network
# ----------------------------------------------------------------------------------------
class NetworkBlockedError(ConnectionRefusedError):
    """A test tried to reach a host other than loopback."""


_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}


def _is_local(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    return host in _LOCAL_HOSTS or (isinstance(host, str) and host.startswith("127."))


@pytest.fixture(autouse=True, scope="session")
def _block_network() -> Iterator[None]:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            raise NetworkBlockedError(f"tests must not reach the network (tried {address[0]!r}); use loopback servers")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local(host):
            raise NetworkBlockedError(f"tests must not resolve {host!r}; use loopback servers")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _clean_servers() -> Iterator[None]:
    """Each test starts with no faults and empty request logs, and leaves no fault behind.

    GDAL's HTTP cache is process-wide: cleared too, so one test's cached ranges never answer
    another's requests (or hide its faults)."""
    from terramind_nyc.imagery.reader import clear_gdal_http_cache

    clear_gdal_http_cache()
    for s in _STARTED:
        s.faults.clear()
        s.reset()
    yield
    for s in _STARTED:
        s.faults.clear()


# ----------------------------------------------------------------------------------------
# Imagery and servers
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FixtureEnv:
    """The generated catalog and the server its COGs are served from."""

    catalog: FixtureCatalog
    cog_server: CogServer

    @property
    def root(self) -> Path:
        return self.catalog.root


@pytest.fixture(scope="session")
def _cog_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("imagery")


@pytest.fixture(scope="session")
def cog_server(_cog_root: Path) -> Iterator[CogServer]:
    """Range-capable HTTP server on 127.0.0.1 serving the session's imagery folder."""
    with CogServer(_cog_root) as server:
        _STARTED.append(server)
        try:
            yield server
        finally:
            _STARTED.remove(server)


@pytest.fixture(scope="session")
def fixture_catalog(cog_server: CogServer, _cog_root: Path) -> FixtureEnv:
    """The generated fixture catalog (built once per session) and its COG server."""
    cat = build_fixture_catalog(_cog_root / "fixture", f"{cog_server.url}/fixture")
    return FixtureEnv(catalog=cat, cog_server=cog_server)


@pytest.fixture(scope="session")
def real_chip(cog_server: CogServer, _cog_root: Path) -> RealChip:
    """Real TerraMind tile 433D_629L_3_1 served as COGs + STAC items (EPSG:32718 grid)."""
    return build_real_chip(_cog_root / "real", f"{cog_server.url}/real")


@pytest.fixture(scope="session")
def stac_server(fixture_catalog: FixtureEnv) -> Iterator[StacServer]:
    """``rustac serve`` over the fixture items and collections."""
    cat = fixture_catalog.catalog
    try:
        server = StacServer([cat.items_path, *cat.collection_paths]).start()
    except HarnessUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def faulty_stac(stac_server: StacServer) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of ``stac_server`` (faults cleared after each test)."""
    with FaultProxy(stac_server.url) as proxy:
        _STARTED.append(proxy)
        try:
            yield proxy
        finally:
            _STARTED.remove(proxy)


@pytest.fixture(scope="session")
def pgstac_server(fixture_catalog: FixtureEnv) -> Iterator[PgstacServer]:
    """stac-fastapi-pgstac on PostgreSQL + PostGIS over the fixture items (skips when unavailable)."""
    cat = fixture_catalog.catalog
    server = PgstacServer(cat.items_path, collections=cat.collection_paths)
    try:
        server.start()
    except HarnessUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------
@pytest.fixture
def local_settings(fixture_catalog: FixtureEnv) -> Settings:
    """Local provider over the fixture ItemCollection; no signing; NYC domain check on."""
    return Settings(catalog_provider="local", catalog_path=str(fixture_catalog.catalog.items_path), **TEST_SETTINGS)


@pytest.fixture
def stac_settings(faulty_stac: FaultProxy) -> Settings:
    """STAC API provider at the fault proxy in front of rustac; no signing."""
    return Settings(catalog_provider="stac-api", catalog_url=faulty_stac.url, **TEST_SETTINGS)
