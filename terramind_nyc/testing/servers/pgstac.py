"""The stack Planetary Computer runs, started from scratch: PostgreSQL + PostGIS + pgstac + stac-fastapi-pgstac.

:class:`PgstacServer` raises :class:`~.loopback.HarnessUnavailable` when the PostgreSQL
binaries or the Python packages are missing, so tests can skip.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ._process import stop_process, tail, wait_http
from .loopback import LOOPBACK, HarnessError, HarnessUnavailable, free_port

__all__ = ["PgstacServer"]

log = logging.getLogger(__name__)


def _pg_bindir() -> Path | None:
    """Directory of PostgreSQL server binaries (initdb, postgres, pg_ctl), or None."""
    env = os.environ.get("TERRAMIND_NYC_PG_BINDIR")
    cands: list[Path] = [Path(env)] if env else []
    found = shutil.which("initdb")
    if found:
        cands.append(Path(found).resolve().parent)  # /usr/local/bin/initdb -> /usr/lib/postgresql/N/bin
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        cands += sorted((p / "bin" for p in base.iterdir()), reverse=True)
    for c in cands:
        c = c.resolve()
        if all((c / exe).exists() for exe in ("initdb", "postgres", "pg_ctl", "pg_isready", "createdb")):
            return c
    return None


def _has_postgis(bindir: Path) -> bool:
    try:
        out = subprocess.run([str(bindir / "pg_config"), "--sharedir"], check=False, capture_output=True, text=True, timeout=10)
        share = Path(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        share = bindir.parent / "share"
    cands = [share / "extension", Path("/usr/share/postgresql") / bindir.parent.name / "extension"]
    return any((c / "postgis.control").exists() for c in cands)


class PgstacServer:
    """stac-fastapi-pgstac on PostgreSQL + PostGIS, started from scratch in a temp directory.

    Steps: ``initdb`` (as a non-root user when run as root), ``postgres`` on a free loopback
    port with a Unix socket in the temp directory, ``pypgstac migrate``, load the collections
    and items, register ``eo:cloud_cover`` (and other numeric properties) as numeric
    queryables so pgstac sorts and compares them as numbers, then ``uvicorn
    stac_fastapi.pgstac.app:create_app --factory``. Everything is removed on :meth:`stop`.

    Raises :class:`HarnessUnavailable` when PostgreSQL/PostGIS binaries or the Python
    packages (``stac-fastapi-pgstac``, ``pypgstac[psycopg]``, ``uvicorn``) are missing.

    Args:
        items: ItemCollection / item JSON files to load.
        collections: collection JSON files; collections referenced by items but not given
            are created from the items' extents.
        numeric_queryables: properties registered as numeric queryables.
        startup_timeout: seconds allowed for each start-up step.
    """

    def __init__(self, items: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                 collections: Iterable[str | os.PathLike[str]] = (),
                 numeric_queryables: Sequence[str] = ("eo:cloud_cover", "s2:nodata_pixel_percentage"),
                 startup_timeout: float = 60.0) -> None:
        if isinstance(items, (str, os.PathLike)):
            items = [items]
        self.item_files = [Path(p) for p in items]
        self.collection_files = [Path(p) for p in collections]
        self.numeric_queryables = tuple(numeric_queryables)
        self.startup_timeout = startup_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._pg: subprocess.Popen[bytes] | None = None
        self._api: subprocess.Popen[bytes] | None = None
        self._api_port: int | None = None
        self._pg_port: int | None = None
        self._user: str | None = None
        self.timings: dict[str, float] = {}
        """Seconds per start-up step (initdb, postgres, migrate, load, api)."""
        self.n_items = 0
        """Items loaded into pgstac."""

    # --- availability --------------------------------------------------------------------
    @staticmethod
    def missing() -> list[str]:
        """What is missing to run the stack here (empty when it can run)."""
        import importlib.util

        out = []
        bindir = _pg_bindir()
        if bindir is None:
            out.append("PostgreSQL server binaries (Debian: apt-get install postgresql-15-postgis-3)")
        elif not _has_postgis(bindir):
            out.append("PostGIS for PostgreSQL (Debian: apt-get install postgresql-15-postgis-3)")
        for mod, pkg in (("stac_fastapi.pgstac", "stac-fastapi-pgstac"), ("pypgstac", "pypgstac[psycopg]"),
                         ("psycopg", "pypgstac[psycopg]"), ("uvicorn", "uvicorn")):
            try:
                found = importlib.util.find_spec(mod) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                out.append(f"Python package {pkg}")
        if os.geteuid() == 0 and _nonroot_user() is None:
            out.append("a non-root user to run PostgreSQL as (e.g. `postgres` or `nobody`)")
        return sorted(set(out))

    @classmethod
    def available(cls) -> bool:
        return not cls.missing()

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """libpq connection string of the database (``postgresql://...``)."""
        if self._pg_port is None or self._user is None:
            raise HarnessError("PgstacServer is not running")
        return f"postgresql://{self._user}@{LOOPBACK}:{self._pg_port}/postgis"

    @property
    def url(self) -> str:
        """API root, ``http://127.0.0.1:<port>`` (no trailing slash)."""
        if self._api_port is None:
            raise HarnessError("PgstacServer is not running; call start() or use it as a context manager")
        return f"http://{LOOPBACK}:{self._api_port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Self:
        if self._api is not None:
            return self
        missing = self.missing()
        if missing:
            raise HarnessUnavailable("PgstacServer needs: " + "; ".join(missing))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        bindir = _pg_bindir()
        assert bindir is not None
        self._tmp = tempfile.TemporaryDirectory(prefix="tmnyc-pgstac-")
        tmp = Path(self._tmp.name)
        data, sock = tmp / "pgdata", tmp / "sock"
        sock.mkdir()
        run_as = _nonroot_user() if os.geteuid() == 0 else None
        if run_as is not None:
            uid, gid = run_as[1], run_as[2]
            os.chown(tmp, uid, gid)
            os.chown(sock, uid, gid)
        self._user = run_as[0] if run_as else _current_user()
        user = self._user

        t = time.perf_counter()
        self._run_pg([str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync"], run_as, tmp / "initdb.log")
        self.timings["initdb"] = time.perf_counter() - t

        t = time.perf_counter()
        self._pg_port = free_port()
        pg_log = tmp / "postgres.log"
        cmd = [str(bindir / "postgres"), "-D", str(data), "-p", str(self._pg_port), "-h", LOOPBACK,
               "-k", str(sock), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(pg_log, "wb") as lf:
            self._pg = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        **_demote(run_as))
        self._wait_pg(bindir, run_as, pg_log)
        self._run_pg([str(bindir / "createdb"), "-h", LOOPBACK, "-p", str(self._pg_port), "-U", user, "postgis"],
                     run_as, tmp / "createdb.log")
        self.timings["postgres"] = time.perf_counter() - t

        t = time.perf_counter()
        env = self._pg_env()
        self._run([sys.executable, "-m", "pypgstac.pypgstac", "migrate", "--dsn", self.dsn], env, tmp / "migrate.log")
        self.timings["migrate"] = time.perf_counter() - t

        t = time.perf_counter()
        self._load(tmp)
        self.timings["load"] = time.perf_counter() - t

        t = time.perf_counter()
        self._api_port = free_port()
        api_log = tmp / "api.log"
        api_env = dict(env, PGUSER=user, PGPASSWORD="", PGHOST=LOOPBACK, PGPORT=str(self._pg_port),
                       PGDATABASE="postgis", ENABLE_TRANSACTIONS_EXTENSIONS="false",
                       DB_MIN_CONN_SIZE="1", DB_MAX_CONN_SIZE="4", WEB_CONCURRENCY="1")
        cmd = [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
               "--host", LOOPBACK, "--port", str(self._api_port), "--log-level", "warning"]
        with open(api_log, "wb") as lf:
            self._api = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=api_env, cwd=tmp)
        wait_http(self.url + "/", self._api, self.startup_timeout, "stac-fastapi-pgstac", api_log)
        self.timings["api"] = time.perf_counter() - t
        log.debug("pgstac serving at %s (%s)", self.url, self.timings)

    def _pg_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGUSER=self._user or "", PGHOST=LOOPBACK, PGPORT=str(self._pg_port), PGDATABASE="postgis")
        return env

    def _wait_pg(self, bindir: Path, run_as: tuple[str, int, int] | None, pg_log: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._pg is not None and self._pg.poll() is not None:
                raise HarnessError(f"postgres exited with status {self._pg.returncode}:\n{tail(pg_log)}")
            r = subprocess.run([str(bindir / "pg_isready"), "-h", LOOPBACK, "-p", str(self._pg_port), "-q"], check=False,
                               capture_output=True, timeout=10)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise HarnessError(f"postgres did not accept connections within {self.startup_timeout:g} s:\n{tail(pg_log)}")

    def _run_pg(self, cmd: list[str], run_as: tuple[str, int, int] | None, logp: Path) -> None:
        with open(logp, "wb") as lf:
            r = subprocess.run(cmd, check=False, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               timeout=self.startup_timeout, cwd=logp.parent, **_demote(run_as))
        if r.returncode != 0:
            raise HarnessError(f"{Path(cmd[0]).name} failed with status {r.returncode}:\n{tail(logp)}")

    def _run(self, cmd: list[str], env: dict[str, str], logp: Path) -> None:
        with open(logp, "wb") as lf:
            r = subprocess.run(cmd, check=False, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               timeout=self.startup_timeout, env=env)
        if r.returncode != 0:
            raise HarnessError(f"{' '.join(cmd[2:4])} failed with status {r.returncode}:\n{tail(logp)}")

    def _load(self, tmp: Path) -> None:
        """Load collections and items with pypgstac, then register numeric queryables."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        items: list[dict[str, Any]] = []
        for p in self.item_files:
            doc = json.loads(p.read_text())
            items += doc["features"] if doc.get("type") == "FeatureCollection" else [doc]
        collections = {}
        for p in self.collection_files:
            c = json.loads(p.read_text())
            for one in (c if isinstance(c, list) else c.get("collections", [c])):
                collections[one["id"]] = one
        for cid in sorted({it["collection"] for it in items} - set(collections)):
            collections[cid] = _collection_from_items(cid, [it for it in items if it["collection"] == cid])
        with PgstacDB(dsn=self.dsn) as db:
            loader = Loader(db=db)
            loader.load_collections(iter(collections.values()), insert_mode=Methods.upsert)
            loader.load_items(iter(items), insert_mode=Methods.upsert)
            for name in self.numeric_queryables:
                db.query_one(
                    "INSERT INTO queryables (name, collection_ids, definition, property_wrapper) "
                    "VALUES (%s, NULL, %s, 'to_float') "
                    "ON CONFLICT DO NOTHING RETURNING name",
                    (name, json.dumps({"type": "number"})),
                )
        self.n_items = len(items)

    def stop(self) -> None:
        stop_process(self._api)
        self._api = None
        self._api_port = None
        if self._pg is not None and self._pg.poll() is None:
            self._pg.terminate()  # SIGTERM: postgres "smart" shutdown; pass to fast below
            try:
                self._pg.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._pg.kill()
                self._pg.wait(timeout=5)
        self._pg = None
        self._pg_port = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _collection_from_items(cid: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A minimal valid STAC Collection whose extent covers ``items``."""
    bboxes = [it["bbox"] for it in items if it.get("bbox")]
    dts = sorted(it["properties"].get("datetime") or it["properties"].get("start_datetime") for it in items)
    bbox = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)]
    return {
        "type": "Collection", "stac_version": "1.0.0", "id": cid, "description": f"{cid} (test fixture)",
        "license": "proprietary", "links": [],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[dts[0], dts[-1]]]}},
    }


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _nonroot_user() -> tuple[str, int, int] | None:
    """A non-root account to run PostgreSQL as (postgres preferred), or None."""
    import pwd

    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        if pw.pw_uid != 0:
            return name, pw.pw_uid, pw.pw_gid
    return None


def _demote(run_as: tuple[str, int, int] | None) -> dict[str, Any]:
    """subprocess kwargs that run the child as ``run_as`` (only when we are root)."""
    if run_as is None:
        return {}
    _, uid, gid = run_as
    return {"user": uid, "group": gid, "extra_groups": []}
