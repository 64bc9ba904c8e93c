"""The behaviour at every public edge, as a table: each named input and what it gives.

Every row is one input to the Python API (``fetch``, ``fetch_riprap``, ``fetch_many``), to
:class:`~terramind_nyc.Settings` (arguments and ``TERRAMIND_NYC_*`` variables), to the CLI, or
one file (a checkpoint's ``config.json`` and ``model.safetensors``, a points file), with its
outcome: the exact error class and a piece of the advice its message gives, or ``ACCEPTED``
for inputs that are rightly taken (friendly forms the docs promise, such as numpy numbers, a
list for a tuple, an integral float for a count). The table is the documentation: a change in
behaviour is a change here. ``fetch`` runs over the fakes of ``tests/fakes.py`` (no network).

Arbitrary inputs (the same edges, with generated values) are in ``tests/test_properties.py``.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import ESB, fakes  # noqa: F401 - fakes is a fixture

from terramind_nyc import (
    CheckpointError,
    CheckpointNotFoundError,
    InvalidInputError,
    InvalidLocationError,
    OutsideDomainError,
    Result,
    Settings,
    SettingsError,
    fetch,
    fetch_many,
    fetch_riprap,
)
from terramind_nyc.batch import read_points
from terramind_nyc.cli import cli
from terramind_nyc.model.artifact import load_artifact
from terramind_nyc.testing.model import tiny_config

LAT, LON = ESB


# ----------------------------------------------------------------------------------------
# Outcomes
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Raises:
    """The call raises exactly ``error`` (not a subclass), its message holding ``advice``."""

    error: type[BaseException]
    advice: str


@dataclass(frozen=True)
class Accepted:
    """The call returns; ``check`` (if any) holds for what it returned."""

    check: Callable[[Any], bool] | None = None


@dataclass(frozen=True)
class Skipped:
    """``fetch_riprap`` returns ``{"ok": False, ...}`` naming ``error_type`` under ``key`` (never raises)."""

    error_type: str
    key: str = "err"


@dataclass(frozen=True)
class PerPoint:
    """``fetch_many`` returns one item per point; each has this error class (None: a result)."""

    errors: tuple[type[BaseException] | None, ...]


@dataclass(frozen=True)
class Exits:
    """The CLI ends with exit status ``code`` and ``text`` in its output."""

    code: int
    text: str


ACCEPTED = Accepted()


@dataclass
class Ctx:
    """What a row's call may use: a scratch folder and the environment."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch


def check(call: Callable[[Ctx], Any], outcome: Any, ctx: Ctx) -> None:
    if isinstance(outcome, Raises):
        with pytest.raises(outcome.error, match=re.escape(outcome.advice)) as info:
            call(ctx)
        assert type(info.value) is outcome.error, f"{type(info.value).__name__}: {info.value}"
        return
    value = call(ctx)
    if isinstance(outcome, Accepted):
        assert outcome.check is None or outcome.check(value), value
    elif isinstance(outcome, Skipped):
        assert value["ok"] is False and value["error_type"] == outcome.error_type and outcome.key in value, value
    elif isinstance(outcome, PerPoint):
        got = tuple(None if it.error is None else type(it.error) for it in value)
        assert got == outcome.errors, [str(it.error) for it in value]
    elif isinstance(outcome, Exits):
        assert value.exit_code == outcome.code, value.output
        assert outcome.text in value.output, value.output
    else:  # pragma: no cover - a typo in the table
        raise AssertionError(f"unknown outcome {outcome!r}")


def is_result(r: Any) -> bool:
    return isinstance(r, Result)


# ----------------------------------------------------------------------------------------
# fetch / fetch_riprap / fetch_many
# ----------------------------------------------------------------------------------------
EAST = timezone(timedelta(hours=5))
API = [
    # -- the point
    pytest.param(lambda c: fetch(10**400, LON), Raises(InvalidLocationError, "pass a latitude in decimal degrees"),
                 id="lat-huge-int"),
    pytest.param(lambda c: fetch(LAT, -(10**5000)), Raises(InvalidLocationError, "pass a longitude in decimal"),
                 id="lon-int-too-long-to-print"),
    pytest.param(lambda c: fetch(float("nan"), LON), Raises(InvalidLocationError, "is NaN; pass a finite number"),
                 id="lat-nan"),
    pytest.param(lambda c: fetch(LAT, float("-inf")), Raises(InvalidLocationError, "infinite; pass a finite"),
                 id="lon-inf"),
    pytest.param(lambda c: fetch("40.7484", LON), Raises(InvalidLocationError, "convert it with float() first"),
                 id="lat-string"),
    pytest.param(lambda c: fetch(None, LON), Raises(InvalidLocationError, "must be a number in decimal degrees"),
                 id="lat-none"),
    pytest.param(lambda c: fetch(True, LON), Raises(InvalidLocationError, "must be a number"), id="lat-bool"),
    pytest.param(lambda c: fetch([LAT], LON), Raises(InvalidLocationError, "must be a number"), id="lat-list"),
    pytest.param(lambda c: fetch(91.0, LON), Raises(InvalidLocationError, "did you swap lat and lon?"),
                 id="lat-above-90"),
    pytest.param(lambda c: fetch(LON, LAT), Raises(OutsideDomainError, "lat and lon look swapped"),
                 id="lat-lon-swapped"),
    pytest.param(lambda c: fetch(51.5, -0.12), Raises(OutsideDomainError, "Settings(domain_check=False)"),
                 id="point-outside-nyc"),
    pytest.param(lambda c: fetch(np.float32(LAT), np.float64(LON)), Accepted(is_result), id="lat-lon-numpy-floats"),
    # -- the window
    pytest.param(lambda c: fetch(*ESB, size_m=10**400), Raises(InvalidInputError, "size_m must be a finite number"),
                 id="size-huge-int"),
    pytest.param(lambda c: fetch(*ESB, size_m=0), Raises(InvalidInputError, "size_m"), id="size-zero"),
    pytest.param(lambda c: fetch(*ESB, size_m=-640), Raises(InvalidInputError, "size_m"), id="size-negative"),
    pytest.param(lambda c: fetch(*ESB, size_m=float("nan")), Raises(InvalidInputError, "size_m"), id="size-nan"),
    pytest.param(lambda c: fetch(*ESB, size_m="2240"), Raises(InvalidInputError, "size_m must be a"), id="size-string"),
    pytest.param(lambda c: fetch(*ESB, size_m=30_000), Raises(InvalidInputError, "use fetch_many for many points"),
                 id="size-above-20-km"),
    pytest.param(lambda c: fetch(*ESB, size_m=640), Accepted(lambda r: r.grid.shape == (64, 64)), id="size-int"),
    pytest.param(lambda c: fetch(*ESB, radius_m=2**1100), Raises(InvalidInputError, "radius_m must be a finite"),
                 id="radius-huge-int"),
    pytest.param(lambda c: fetch(*ESB, size_m=640, radius_m=500), Raises(InvalidInputError, "pass size_m >= 1000"),
                 id="radius-outside-window"),
    # -- the dates
    pytest.param(lambda c: fetch(*ESB, when=datetime(1, 1, 1)), Raises(InvalidInputError, "before Sentinel-2 data"),
                 id="when-year-1-datetime"),
    pytest.param(lambda c: fetch(*ESB, when="0001-01-01"), Raises(InvalidInputError, "pass a later date"),
                 id="when-year-1-string"),
    pytest.param(lambda c: fetch(*ESB, when=datetime(1, 1, 1, tzinfo=EAST)),
                 Raises(InvalidInputError, "pass a date between 2015-06-23 and now"), id="when-before-utc-begins"),
    pytest.param(lambda c: fetch(*ESB, when="9999-12-31"), Raises(InvalidInputError, "lies in the future"),
                 id="when-year-9999"),
    pytest.param(lambda c: fetch(*ESB, when=date.max), Raises(InvalidInputError, "pass a past date"), id="when-date-max"),
    pytest.param(lambda c: fetch(*ESB, when="yesterday"), Raises(InvalidInputError, "use e.g. '2024-07-01'"),
                 id="when-not-iso"),
    pytest.param(lambda c: fetch(*ESB, when=20240701), Raises(InvalidInputError, "must be a date, datetime or ISO"),
                 id="when-int"),
    pytest.param(lambda c: fetch(*ESB, when=("2024-03-01", "2024-01-01")), Raises(InvalidInputError, "swap start and"),
                 id="when-range-reversed"),
    pytest.param(lambda c: fetch(*ESB, when="2024-01-01/2024-02-01/2024-03-01"),
                 Raises(InvalidInputError, "must be 'start/end'"), id="when-range-three-parts"),
    pytest.param(lambda c: fetch(*ESB, when=("0001-01-01", "9999-12-31")), Accepted(is_result),
                 id="when-range-year-1-to-9999"),  # open-ended in effect: cut at now
    pytest.param(lambda c: fetch(*ESB, when=date(2024, 7, 1)), Accepted(is_result), id="when-date"),
    pytest.param(lambda c: fetch(*ESB, when="2024-01-01/2024-03-01"), Accepted(is_result), id="when-iso-range"),
    # -- settings=
    pytest.param(lambda c: fetch(*ESB, settings={"recency_days": 5}), Raises(InvalidInputError, "terramind_nyc.Settings"),
                 id="settings-a-dict"),
    # -- fetch_riprap never raises
    pytest.param(lambda c: fetch_riprap(51.5, -0.12), Skipped("OutsideDomainError", key="skipped"),
                 id="riprap-outside-nyc"),
    pytest.param(lambda c: fetch_riprap(10**400, LON), Skipped("InvalidLocationError"), id="riprap-lat-huge-int"),
    pytest.param(lambda c: fetch_riprap(*ESB, size_m=10**400), Skipped("InvalidInputError"), id="riprap-size-huge-int"),
    pytest.param(lambda c: fetch_riprap(*ESB, when="0001-01-01"), Skipped("InvalidInputError"), id="riprap-when-year-1"),
    # -- fetch_many
    pytest.param(lambda c: fetch_many([ESB], workers=0), Raises(InvalidInputError, "workers must be a positive integer"),
                 id="many-workers-zero"),
    pytest.param(lambda c: fetch_many([ESB], workers=-2), Raises(InvalidInputError, "workers"), id="many-workers-negative"),
    pytest.param(lambda c: fetch_many([ESB], workers=2.0), Raises(InvalidInputError, "workers"), id="many-workers-float"),
    pytest.param(lambda c: fetch_many([ESB], workers=True), Raises(InvalidInputError, "workers"), id="many-workers-bool"),
    pytest.param(lambda c: fetch_many([ESB], workers=np.int64(2), progress=False), PerPoint((None,)),
                 id="many-workers-numpy-int"),
    pytest.param(lambda c: fetch_many("40.75,-73.98"), Raises(InvalidInputError, "points must be a sequence"),
                 id="many-points-a-string"),
    pytest.param(lambda c: fetch_many(None), Raises(InvalidInputError, "points must be a sequence"),
                 id="many-points-none"),
    pytest.param(lambda c: fetch_many([ESB], max_window_m=10**400), Raises(InvalidInputError, "max_window_m"),
                 id="many-max-window-huge-int"),
    pytest.param(lambda c: fetch_many([ESB], size_m=10**400), Raises(InvalidInputError, "size_m"),
                 id="many-size-huge-int"),
    pytest.param(lambda c: fetch_many([ESB, "x", (10**400, LON), {"lat": LAT}, (51.5, -0.12)], progress=False),
                 PerPoint((None, InvalidLocationError, InvalidLocationError, InvalidLocationError, OutsideDomainError)),
                 id="many-junk-points-fail-alone"),
    pytest.param(lambda c: fetch_many([], progress=False), Accepted(lambda items: items == []), id="many-no-points"),
]


@pytest.mark.parametrize(("call", "outcome"), API)
def test_python_api(fakes, tmp_path, monkeypatch, call, outcome):
    check(call, outcome, Ctx(tmp_path, monkeypatch))


# ----------------------------------------------------------------------------------------
# Settings: arguments, replace, the environment
# ----------------------------------------------------------------------------------------
def env(**variables: str) -> Callable[[Ctx], Settings]:
    """``Settings.from_env()`` with ``TERRAMIND_NYC_<NAME>`` set for each keyword."""
    def call(c: Ctx) -> Settings:
        for name, value in variables.items():
            c.monkeypatch.setenv(f"TERRAMIND_NYC_{name.upper()}", value)
        return Settings.from_env()
    return call


SETTINGS = [
    pytest.param(lambda c: Settings(foo=1), Raises(SettingsError, "unknown setting(s) `foo`"), id="unknown-keyword"),
    pytest.param(lambda c: Settings(recency=3), Raises(SettingsError, "did you mean `recency_days`?"), id="typo"),
    pytest.param(lambda c: Settings("planetary-computer", "https://x", None, "none", *["c"] * 60),
                 Raises(SettingsError, "pass settings as keywords"), id="too-many-positional"),
    pytest.param(lambda c: Settings(domain_lat=None), Raises(SettingsError, "`domain_lat` must be (min, max) degrees"),
                 id="domain-lat-none"),
    pytest.param(lambda c: Settings(domain_lon=(-73.0, -74.0)), Raises(SettingsError, "min < max"),
                 id="domain-lon-reversed"),
    pytest.param(lambda c: Settings(catalog_provider="stac-api", catalog_url=None),
                 Raises(SettingsError, "`catalog_url` must be a non-empty string"), id="stac-api-without-url"),
    pytest.param(lambda c: Settings(catalog_provider="stac-api", catalog_url="ftp://x"),
                 Raises(SettingsError, "an http(s) URL of a STAC API root"), id="stac-api-ftp-url"),
    pytest.param(lambda c: Settings(catalog_provider="local"), Raises(SettingsError, "needs `catalog_path`"),
                 id="local-without-path"),
    pytest.param(lambda c: Settings(recency_days=10**30), Raises(SettingsError, "from 1 to 36500"),
                 id="recency-days-huge-int"),
    pytest.param(lambda c: Settings(recency_days=1e300), Raises(SettingsError, "from 1 to 36500"),
                 id="recency-days-1e300"),
    pytest.param(lambda c: Settings(recency_days="30"), Raises(SettingsError, "a whole number of days"),
                 id="recency-days-string"),
    pytest.param(lambda c: Settings(recency_days=3.5), Raises(SettingsError, "a whole number"), id="recency-days-3.5"),
    pytest.param(lambda c: Settings(recency_days=30.0), Accepted(lambda s: type(s.recency_days) is int),
                 id="recency-days-integral-float"),
    pytest.param(lambda c: Settings(max_cloud=float("nan")), Raises(SettingsError, "from 0 to 1"), id="max-cloud-nan"),
    pytest.param(lambda c: Settings(max_cloud=1.5), Raises(SettingsError, "from 0 to 1"), id="max-cloud-above-1"),
    pytest.param(lambda c: Settings(deadline_s=1e300), Raises(SettingsError, "at most 86400"), id="deadline-1e300"),
    pytest.param(lambda c: Settings(deadline_s=0), Raises(SettingsError, "above 0"), id="deadline-zero"),
    pytest.param(lambda c: Settings(http_timeout_s=float("inf")), Raises(SettingsError, "http_timeout_s"),
                 id="http-timeout-inf"),
    pytest.param(lambda c: Settings(threads=True), Raises(SettingsError, "`threads` must be a whole number"),
                 id="threads-bool"),
    pytest.param(lambda c: Settings(io_threads=0), Raises(SettingsError, "from 1 to 1024"), id="io-threads-zero"),
    pytest.param(lambda c: Settings(size_m=5.0), Raises(SettingsError, "smaller than one 10 m pixel"),
                 id="size-below-one-pixel"),
    pytest.param(lambda c: Settings(backend="tensorflow"), Raises(SettingsError, "must be one of 'auto', 'torch'"),
                 id="backend-unknown"),
    pytest.param(lambda c: Settings(crs=""), Raises(SettingsError, "non-empty string"), id="crs-empty"),
    pytest.param(lambda c: Settings(onnx_providers="CPUExecutionProvider"),
                 Raises(SettingsError, "a non-empty list of names"), id="onnx-providers-a-string"),
    pytest.param(lambda c: Settings(onnx_providers=["CPUExecutionProvider"]),
                 Accepted(lambda s: s.onnx_providers == ("CPUExecutionProvider",)), id="onnx-providers-a-list"),
    pytest.param(lambda c: Settings(domain_check="no"), Raises(SettingsError, "must be True or False"),
                 id="domain-check-string"),
    pytest.param(lambda c: Settings(recency_days=np.int64(30), max_cloud=np.float32(0.25)),
                 Accepted(lambda s: s.recency_days == 30 and type(s.max_cloud) is float), id="numpy-numbers"),
    pytest.param(lambda c: Settings(cache_dir=c.tmp), Accepted(lambda s: s.cache_dir == str(s.cache_dir)),
                 id="cache-dir-a-path"),
    pytest.param(lambda c: Settings().replace(recency=3), Raises(SettingsError, "did you mean"), id="replace-typo"),
    pytest.param(lambda c: Settings().replace(max_nodata=-0.1), Raises(SettingsError, "max_nodata"),
                 id="replace-bad-value"),
    # -- TERRAMIND_NYC_* variables
    pytest.param(env(recency_days="soon"), Raises(SettingsError, "TERRAMIND_NYC_RECENCY_DAYS='soon'"),
                 id="env-recency-days-word"),
    pytest.param(env(recency_days="1" * 40), Raises(SettingsError, "from 1 to 36500"), id="env-recency-days-huge"),
    pytest.param(env(recency_days="9" * 5000), Raises(SettingsError, "expected a whole number"),
                 id="env-int-too-long-to-read"),
    pytest.param(env(deadline_s="inf"), Raises(SettingsError, "TERRAMIND_NYC_DEADLINE_S"), id="env-deadline-inf"),
    pytest.param(env(domain_lat="40.5"), Raises(SettingsError, "TERRAMIND_NYC_DOMAIN_LAT"), id="env-domain-one-number"),
    pytest.param(env(domain_check="maybe"), Raises(SettingsError, "expected true or false"), id="env-bool-maybe"),
    pytest.param(env(backend="Torch"), Raises(SettingsError, "must be one of"), id="env-backend-capitalised"),
    pytest.param(env(checkpoint_revision="none"), Accepted(lambda s: s.checkpoint_revision is None),
                 id="env-revision-none"),
    pytest.param(env(domain_lat=" 40.0 , 41.0 "), Accepted(lambda s: s.domain_lat == (40.0, 41.0)),
                 id="env-domain-with-spaces"),
    pytest.param(lambda c: (c.monkeypatch.setenv("TERRAMIND_NYC_RECENCY_DAYS", "soon"), Settings.from_env(recency_days=5))[1],
                 Accepted(lambda s: s.recency_days == 5), id="env-bad-but-overridden"),
    pytest.param(lambda c: Settings.from_env({"TERRAMIND_NYC_RECENCY_DAYS": 30}),  # type: ignore[dict-item]
                 Raises(SettingsError, "an environment value is a string"), id="env-mapping-non-string"),
]


@pytest.mark.parametrize(("call", "outcome"), SETTINGS)
def test_settings(tmp_path, monkeypatch, call, outcome):
    check(call, outcome, Ctx(tmp_path, monkeypatch))


def test_a_bad_variable_fails_the_calls_that_read_the_environment(fakes, monkeypatch):
    monkeypatch.setenv("TERRAMIND_NYC_DEADLINE_S", "forever")
    with pytest.raises(SettingsError, match="TERRAMIND_NYC_DEADLINE_S='forever'"):
        fetch(*ESB)
    assert fetch(*ESB, settings=Settings()).grid.shape == (224, 224)  # explicit settings do not read it


# ----------------------------------------------------------------------------------------
# The CLI
# ----------------------------------------------------------------------------------------
def run_cli(*args: str, environ: dict[str, str] | None = None, points: str | None = None) -> Callable[[Ctx], Any]:
    """``terramind-nyc ARGS``; ``{points}`` in an argument is a points file holding ``points``."""
    def call(c: Ctx) -> Any:
        p = c.tmp / "points.csv"
        if points is not None:
            p.write_text(points)
        argv = [a.replace("{points}", str(p)).replace("{out}", str(c.tmp / "out.jsonl")) for a in args]
        return CliRunner().invoke(cli, argv, env=environ)
    return call


CLI = [
    pytest.param(run_cli("fetch", "abc", "-73.98"), Exits(2, "'abc' is not a valid float"), id="cli-lat-not-a-number"),
    pytest.param(run_cli("fetch", "1e400", "-73.98"), Exits(1, "InvalidLocationError: latitude is infinite"),
                 id="cli-lat-1e400"),
    pytest.param(run_cli("fetch", "51.5", "-0.12"), Exits(1, "OutsideDomainError"), id="cli-outside-nyc"),
    pytest.param(run_cli("fetch", "40.7484", "-73.9857", "--size-m", "-5"), Exits(1, "InvalidInputError: size_m"),
                 id="cli-size-negative"),
    pytest.param(run_cli("fetch", "40.7484", "-73.9857", "--when", "yesterday"), Exits(1, "use e.g. '2024-07-01'"),
                 id="cli-when-not-iso"),
    pytest.param(run_cli("info", environ={"TERRAMIND_NYC_DEADLINE_S": "forever"}),
                 Exits(1, "SettingsError: TERRAMIND_NYC_DEADLINE_S='forever'"), id="cli-env-bad"),
    pytest.param(run_cli("batch", "{points}", "{out}", "--workers", "0", points="lat,lon\n40.7484,-73.9857\n"),
                 Exits(1, "workers"), id="cli-batch-workers-zero"),
    pytest.param(run_cli("batch", "/nonexistent/points.csv", "{out}"), Exits(2, "does not exist"),
                 id="cli-batch-missing-file"),
    pytest.param(run_cli("fetch", "40.7484", "-73.9857", "--json"), Exits(0, '"building_density"'), id="cli-fetch-ok"),
]


@pytest.mark.parametrize(("call", "outcome"), CLI)
def test_cli(fakes, tmp_path, monkeypatch, call, outcome):
    check(call, outcome, Ctx(tmp_path, monkeypatch))


# ----------------------------------------------------------------------------------------
# Files: config.json, model.safetensors, points files
# ----------------------------------------------------------------------------------------
VALID_CONFIG = tiny_config().to_json()


def _safetensors(header: bytes | str, data: bytes = b"", declared: int | None = None) -> bytes:
    header = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(header) if declared is None else declared) + header + data


def artifact(config: str | bytes | None = VALID_CONFIG, weights: bytes = _safetensors("{}")) -> Callable[[Ctx], Any]:
    """``load_artifact`` on a folder holding ``config`` (None: no config.json) and ``weights``."""
    def call(c: Ctx) -> Any:
        d = c.tmp / "artifact"
        d.mkdir()
        if config is not None:
            (d / "config.json").write_bytes(config.encode() if isinstance(config, str) else config)
        (d / "model.safetensors").write_bytes(weights)
        return load_artifact(d)
    return call


def config_with(**changes: Any) -> str:
    return json.dumps({**json.loads(VALID_CONFIG), **changes})


def tensor(dtype: str = "F32", shape: list[int] | None = None, offsets: list[int] | None = None) -> str:
    return json.dumps({"w": {"dtype": dtype, "shape": [1] if shape is None else shape,
                             "data_offsets": [0, 4] if offsets is None else offsets}})


def points_file(content: str | bytes, name: str = "points.csv") -> Callable[[Ctx], Any]:
    def call(c: Ctx) -> Any:
        p = c.tmp / name
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        return read_points(p)
    return call


FIX_CONFIG = "re-export the checkpoint"
FIX_WEIGHTS = "re-download or re-export the artifact"
FILES = [
    # -- config.json
    pytest.param(artifact("[" * 100_000 + "]" * 100_000), Raises(CheckpointError, "nests JSON too deeply"),
                 id="config-nested-100000-deep"),
    pytest.param(artifact(config_with(metrics=json.loads('{"a": ' * 60 + "1" + "}" * 60))),
                 Raises(CheckpointError, "nests lists and objects deeper than 32 levels"), id="config-nested-60-deep"),
    pytest.param(artifact("[1, 2, 3]"), Raises(CheckpointError, "expected a JSON object, got list"), id="config-a-list"),
    pytest.param(artifact("42"), Raises(CheckpointError, FIX_CONFIG), id="config-a-number"),
    pytest.param(artifact('"config"'), Raises(CheckpointError, "expected a JSON object, got str"), id="config-a-string"),
    pytest.param(artifact("{'name': 1}"), Raises(CheckpointError, "is not valid JSON"), id="config-not-json"),
    pytest.param(artifact(b"\xff\xfe{}"), Raises(CheckpointError, "cannot be read"), id="config-not-utf8"),
    pytest.param(artifact(None), Raises(CheckpointNotFoundError, "has no config.json"), id="config-missing"),
    pytest.param(artifact(config_with(schema_version=None)), Raises(CheckpointError, "has no schema_version"),
                 id="config-no-schema-version"),
    pytest.param(artifact(config_with(schema_version=True)), Raises(CheckpointError, "reads schema versions [1, 2]"),
                 id="config-schema-version-true"),
    pytest.param(artifact(config_with(tile_size="224")), Raises(CheckpointError, "`tile_size` must be int"),
                 id="config-tile-size-string"),
    pytest.param(artifact(config_with(decoder_channels=[10**9] * 4)), Raises(CheckpointError, "integers in 1..4096"),
                 id="config-decoder-huge"),
    pytest.param(artifact(VALID_CONFIG.replace("1390.458", "1" + "0" * 400)), Raises(CheckpointError, FIX_CONFIG),
                 id="config-mean-huge-int"),
    pytest.param(artifact(config_with(heads=[])), Raises(CheckpointError, "at least one head"), id="config-no-heads"),
    pytest.param(artifact(config_with(encoder=["terramind_v1_tiny"])), Raises(CheckpointError, "`encoder` must be str"),
                 id="config-encoder-a-list"),
    # -- model.safetensors (the config is valid)
    pytest.param(artifact(weights=_safetensors("hello world!")), Raises(CheckpointError, FIX_WEIGHTS),
                 id="weights-header-not-json"),
    pytest.param(artifact(weights=_safetensors("{}", declared=(100 << 20) + 1)),
                 Raises(CheckpointError, "truncated or not a safetensors file"), id="weights-header-length-huge"),
    pytest.param(artifact(weights=_safetensors(tensor(offsets=[-4, 0]), b"\0" * 4)), Raises(CheckpointError, "corrupt"),
                 id="weights-negative-offsets"),
    pytest.param(artifact(weights=_safetensors(tensor(offsets=[0, 400]), b"\0" * 4)), Raises(CheckpointError, FIX_WEIGHTS),
                 id="weights-offsets-past-end"),
    pytest.param(artifact(weights=_safetensors(tensor(dtype="Q7"), b"\0" * 4)), Raises(CheckpointError, "unknown variant"),
                 id="weights-unknown-dtype"),
    pytest.param(artifact(weights=_safetensors("[" * 5000 + "]" * 5000)), Raises(CheckpointError, "corrupt header"),
                 id="weights-header-nested-5000-deep"),
    pytest.param(artifact(weights=b""), Raises(CheckpointError, "truncated (0 bytes)"), id="weights-empty"),
    # -- points files (read_points)
    pytest.param(points_file(""), Raises(InvalidInputError, "is empty"), id="points-empty"),
    pytest.param(points_file("lat,lon\n40.7,-73.9\nS\xe3o Paulo,1\n".encode("latin-1")),
                 Raises(InvalidInputError, "save it again as UTF-8"), id="points-latin-1"),
    pytest.param(points_file("name,city\na,b\n"), Raises(InvalidInputError, "needs 'lat' and 'lon' columns"),
                 id="points-no-lat-column"),
    pytest.param(points_file("lat,lon\nnan,-73.9\n"), Raises(InvalidInputError, "points.csv"), id="points-nan"),
    pytest.param(points_file("[" * 100_000 + "]" * 100_000, "points.geojson"), Raises(InvalidInputError, "too deeply"),
                 id="points-nested-100000-deep"),
    pytest.param(points_file('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
                             '{"type": "Polygon", "coordinates": []}}]}', "points.geojson"),
                 Raises(InvalidInputError, "not a Point"), id="points-polygon"),
    pytest.param(points_file("lat,lon\n40.7484,-73.9857\n"), Accepted(lambda pts: len(pts) == 1), id="points-csv"),
    pytest.param(points_file("40.7484,-73.9857\n40.75,-73.98\n"), Accepted(lambda pts: len(pts) == 2),
                 id="points-headerless"),
]


@pytest.mark.parametrize(("call", "outcome"), FILES)
def test_files(tmp_path, monkeypatch, call, outcome):
    check(call, outcome, Ctx(tmp_path, monkeypatch))


def test_the_table_is_long_and_every_name_is_unique():
    ids = [p.id for table in (API, SETTINGS, CLI, FILES) for p in table]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
