"""Property tests of every public edge: arbitrary values in, only a library error (or a correct result) out.

Each test throws values of every kind (huge and small integers, NaN and infinities, text, bytes,
None, booleans, containers, dates from year 1 to 9999, numpy scalars) at one entry point and
asserts that it either returns what it promises or raises a
:class:`~terramind_nyc.errors.TerramindNYCError` (never a TypeError, OverflowError,
RecursionError, ...; never an :class:`~terramind_nyc.errors.InternalError`, which is the
library's word for a bug), and that every example ends within :data:`BOUND_S`.

``fetch`` and ``fetch_many`` run the real pipeline over the fake reader and runtime of
``tests/fakes.py`` (no network, no model). Runs are derandomized and keep no example database,
so CI sees the same examples on every run; the table of named cases is ``tests/test_bad_inputs.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from fakes import ESB, fakes  # noqa: F401 - fakes is a fixture
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from terramind_nyc import Result, Settings, fetch, fetch_many, fetch_riprap
from terramind_nyc import errors as errors_mod
from terramind_nyc.batch import read_points
from terramind_nyc.errors import InternalError, TerramindNYCError
from terramind_nyc.settings import ENV_PREFIX

#: Longest one example may take, seconds (generous: CI machines are shared).
BOUND_S = 10.0
#: Names of the library's exception classes (what ``fetch_riprap`` may report as ``error_type``).
LIBRARY_ERRORS = {n for n in errors_mod.__all__ if isinstance(getattr(errors_mod, n), type)
                  and issubclass(getattr(errors_mod, n), TerramindNYCError)}
FIELDS = [f.name for f in dataclasses.fields(Settings)]


def profile(n: int) -> Any:
    """Hypothesis settings: ``n`` examples, reproducible (derandomized, no database), no per-example deadline."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# ----------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------
#: Integers too large for a float (10**4200 is near the 4300 digits Python prints; larger ones are in the table).
HUGE = st.sampled_from([400, 1100, 4200]).flatmap(lambda e: st.sampled_from([10**e, -(10**e), 2**e]))  \
    | st.sampled_from([2**63, -(2**63) - 1, 2**64])
ZONES = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59),
                                          max_value=timedelta(hours=23, minutes=59)))
DATETIMES = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=ZONES),
    st.sampled_from([datetime.min, datetime.max, datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
                     datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))]),
)
DATES = st.one_of(st.dates(), st.sampled_from([date.min, date.max, date(2024, 7, 1)]))
NUMPY = st.sampled_from([np.float32(40.7), np.float64(-73.98), np.int64(5), np.float64("nan"), np.bool_(True),
                         np.float16(1e4), np.array(1.0), np.array([40.7, -73.9])])
SPECIAL = st.sampled_from(["40.7", "", "  ", "nan", "1e400", "2024-07-01", "0001-01-01", "9999-12-31",
                           "2024-01-01/2024-03-01", "../..", "/", float("nan"), float("inf"), -float("inf"), 0, -1, 0.0,
                           -0.0, 5e-324, 1.7976931348623157e308])
#: Every kind of scalar, each its own branch (so each is drawn often).
SCALAR_KINDS = (st.none(), st.booleans(), st.integers(), HUGE, st.floats(allow_nan=True, allow_infinity=True),
                st.text(max_size=30), st.binary(max_size=30), DATETIMES, DATES, NUMPY, SPECIAL)
SCALARS = st.one_of(*SCALAR_KINDS)
CONTAINERS = st.one_of(st.lists(SCALARS, max_size=3), st.tuples(SCALARS, SCALARS),
                       st.dictionaries(st.text(max_size=4), SCALARS, max_size=3), st.lists(st.lists(SCALARS, max_size=2),
                                                                                          max_size=2))
JUNK = st.one_of(*SCALAR_KINDS, CONTAINERS)
#: Numbers near the values that work, so the valid paths run too.
NYC_LAT = st.floats(min_value=40.5, max_value=40.9)
NYC_LON = st.floats(min_value=-74.2, max_value=-73.7)
SIZES = st.one_of(st.none(), st.floats(min_value=10.0, max_value=1500.0), st.integers(min_value=-10, max_value=1500))
WHEN = st.one_of(st.none(), JUNK, DATETIMES, DATES, st.tuples(st.none() | DATETIMES | DATES, st.none() | DATETIMES | DATES))


def settings_kwargs(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for Settings: real and made-up names, junk values or the default's type."""
    names = st.sampled_from([*fields, "foo", "recency", "Recency_Days", ""])
    return st.dictionaries(names, JUNK, max_size=3)


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, BaseException | None]:
    """``fn(...)``'s value or library error; anything else fails the test. Checks the time bound."""
    t0 = time.perf_counter()
    try:
        out, err = fn(*args, **kwargs), None
    except TerramindNYCError as exc:
        out, err = None, exc
    took = time.perf_counter() - t0
    event(f"{getattr(fn, '__name__', fn)}: {'returned' if err is None else type(err).__name__}")  # --hypothesis-show-statistics
    assert took < BOUND_S, f"{getattr(fn, '__name__', fn)} took {took:.1f} s"
    assert not isinstance(err, InternalError), f"an InternalError is a bug: {err}"
    if err is not None:
        assert str(err), "a library error must say what happened"
    return out, err


# ----------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------
@profile(500)
@given(kwargs=settings_kwargs(FIELDS))
def test_settings_constructor_takes_any_keywords(kwargs):
    s, err = _timed(Settings, **kwargs)
    if err is None:
        assert isinstance(s, Settings)
        hash(s)  # normalised: lists became tuples
        assert Settings(**s.to_dict()) == s  # and round-trips through its plain dict


@profile(200)
@given(base=settings_kwargs(FIELDS), changes=settings_kwargs(FIELDS))
def test_settings_replace_takes_any_keywords(base, changes):
    s, err = _timed(Settings, **base)
    if err is None:
        _timed(s.replace, **changes)


ENV_NAMES = st.sampled_from([ENV_PREFIX + n.upper() for n in FIELDS] + [ENV_PREFIX + "FOO", ENV_PREFIX])
ENV_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
ENV_VALUES = st.one_of(ENV_TEXT, st.sampled_from(["1e400", "nan", "inf", "-1", "0", "true", "none", "", " 5 ",
                                                  "40.0,41.0", "41,40", "a,b", "9" * 4000, "CPUExecutionProvider"]))


@profile(400)
@given(env=st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=4), overrides=settings_kwargs(FIELDS))
def test_settings_from_env_takes_any_environment(env, overrides):
    s, err = _timed(Settings.from_env, env, **overrides)
    assert err is None or isinstance(err, errors_mod.SettingsError)
    if err is None:
        assert isinstance(s, Settings)


@profile(60)
@given(env=st.dictionaries(ENV_NAMES, ENV_VALUES, min_size=1, max_size=3))
def test_settings_from_the_process_environment(env, monkeypatch):
    with monkeypatch.context() as m:
        for k, v in env.items():
            m.setenv(k, v)
        _timed(Settings.from_env)
        _timed(Settings.resolve, None)


# ----------------------------------------------------------------------------------------
# fetch, fetch_riprap, fetch_many
# ----------------------------------------------------------------------------------------
#: Settings kwargs safe to run the (fake) pipeline with: nothing that writes files or reaches out.
RUN_FIELDS = [n for n in FIELDS if n not in ("cache_dir", "catalog_path", "catalog_provider", "checkpoint")]


ARGUMENTS = ("lat", "lon", "when", "size_m", "radius_m")


@st.composite
def fetch_arguments(draw: Any) -> dict[str, Any]:
    """Arguments of ``fetch`` near the valid ones, with up to two of them replaced by anything."""
    recent = st.dates(min_value=date(2016, 1, 1), max_value=date(2025, 12, 31))
    args = {"lat": draw(NYC_LAT), "lon": draw(NYC_LON), "when": draw(st.none() | recent | DATES | DATETIMES),
            "size_m": draw(SIZES), "radius_m": draw(st.none() | st.floats(1, 500))}
    for name in draw(st.lists(st.sampled_from(ARGUMENTS), max_size=2, unique=True)):
        args[name] = draw(WHEN if name == "when" else JUNK)
    return args


@profile(500)
@given(args=fetch_arguments())
def test_fetch_takes_any_arguments(fakes, args):
    lat, lon = args.pop("lat"), args.pop("lon")
    r, err = _timed(fetch, lat, lon, **args)
    if err is None:
        assert isinstance(r, Result)
        # NaN figures are the documented answer for a summary area without one valid pixel
        assert 0.0 <= r.building_density <= 1.0 or (math.isnan(r.building_density) and r.nodata_fraction == 1.0)


@profile(150)
@given(kwargs=settings_kwargs(RUN_FIELDS), junk_settings=st.one_of(st.none(), JUNK))
def test_fetch_takes_any_settings(fakes, kwargs, junk_settings):
    s, err = _timed(Settings, **kwargs)
    if err is None:
        r, _ = _timed(fetch, *ESB, settings=s)
        assert r is None or isinstance(r, Result)
    _timed(fetch, *ESB, settings=junk_settings)


@profile(150)
@given(args=fetch_arguments())
def test_fetch_riprap_never_raises_and_names_a_library_error(fakes, args):
    t0 = time.perf_counter()
    d = fetch_riprap(args.pop("lat"), args.pop("lon"), **args)
    assert time.perf_counter() - t0 < BOUND_S
    json.dumps(d, allow_nan=False)
    assert d["ok"] is True or d["error_type"] in LIBRARY_ERRORS - {"InternalError"}, d


@profile(100)
@given(args=fetch_arguments(), polygons=st.booleans())
def test_fetch_views_never_raise_and_match_their_schema(fakes, args, polygons):
    import jsonschema

    from terramind_nyc.riprap import fetch_views, schema

    t0 = time.perf_counter()
    v = fetch_views(args.pop("lat"), args.pop("lon"), polygons=polygons, **args)
    assert time.perf_counter() - t0 < BOUND_S
    json.dumps(v, allow_nan=False)
    jsonschema.validate(v, schema())
    for d in v.values():
        assert d["ok"] is True or d["error_type"] in LIBRARY_ERRORS - {"InternalError"}, d


POINTS = st.lists(st.one_of(JUNK, st.tuples(st.one_of(JUNK, NYC_LAT), st.one_of(JUNK, NYC_LON)),
                            st.fixed_dictionaries({"lat": st.one_of(JUNK, NYC_LAT), "lon": st.one_of(JUNK, NYC_LON)}),
                            st.tuples(NYC_LAT, NYC_LON)), max_size=5)


@st.composite
def fetch_many_arguments(draw: Any) -> dict[str, Any]:
    """Points lists of anything, with options near the valid ones (up to one replaced by anything)."""
    args = {"points": draw(POINTS), "workers": draw(st.none() | st.integers(1, 4)),
            "size_m": draw(st.none() | st.floats(100, 1200)), "max_window_m": draw(st.none() | st.floats(500, 9000))}
    for name in draw(st.lists(st.sampled_from(sorted(args)), max_size=1)):
        args[name] = draw(JUNK | st.integers(-2, 8) if name == "workers" else JUNK)
    return args


@profile(300)
@given(args=fetch_many_arguments())
def test_fetch_many_takes_any_points_and_options(fakes, args):
    items, err = _timed(fetch_many, args.pop("points"), progress=False, **args)
    if err is None:
        assert [it.index for it in items] == list(range(len(items)))
        for it in items:
            assert (it.result is None) != (it.error is None)
            assert it.error is None or (isinstance(it.error, TerramindNYCError)
                                        and not isinstance(it.error, InternalError)), it.error


# ----------------------------------------------------------------------------------------
# Files: points files, checkpoint artifacts
# ----------------------------------------------------------------------------------------
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8),
              st.sampled_from([10**300, -(10**300), 40.7, -73.98])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)
GEOJSON = st.builds(
    lambda feats: {"type": "FeatureCollection", "features": feats},
    st.lists(st.one_of(JSONISH, st.fixed_dictionaries({
        "type": st.just("Feature"), "properties": st.one_of(st.none(), JSONISH, st.fixed_dictionaries({"id": JSONISH})),
        "geometry": st.one_of(JSONISH, st.fixed_dictionaries({"type": st.just("Point"), "coordinates": JSONISH}))})),
        max_size=4),
)
DEEP = st.integers(min_value=50, max_value=200_000).map(lambda n: "[" * n + "]" * n)
DEEP_ID = st.integers(min_value=500, max_value=990).map(
    lambda n: '{"type": "FeatureCollection", "features": [{"type": "Feature", "id": ' + "[" * n + "]" * n
    + ', "geometry": {"type": "Point", "coordinates": [-73.98, 40.75]}}]}')
CSV_TEXT = st.lists(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(["lat", "lon", "40.7", "-73.9", "nan",
                                                                             "1e400", '"', "id"])), max_size=4),
                    max_size=5).map(lambda rows: "\n".join(",".join(r) for r in rows))
POINTS_FILE = st.one_of(st.binary(max_size=200), CSV_TEXT, JSONISH.map(json.dumps), GEOJSON.map(json.dumps), DEEP,
                        DEEP_ID, st.text(max_size=200))


@profile(500)
@given(content=POINTS_FILE, suffix=st.sampled_from([".csv", ".geojson", ".json", ".txt", ""]))
def test_read_points_takes_any_file(tmp_path, content, suffix):
    p = tmp_path / f"points{suffix}"
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    pts, err = _timed(read_points, p)
    if err is None:
        assert isinstance(pts, list)


def _safetensors(header: bytes, data: bytes = b"", declared: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if declared is None else declared) + header + data


TENSOR = st.fixed_dictionaries({"dtype": st.one_of(st.sampled_from(["F32", "F16", "BF16", "I64", "Q7"]), JSONISH),
                                "shape": st.one_of(st.lists(st.integers(-2, 2**40), max_size=3), JSONISH),
                                "data_offsets": st.one_of(st.lists(st.integers(-2, 2**65), max_size=3), JSONISH)})
WEIGHTS = st.one_of(
    st.binary(max_size=64),
    st.builds(_safetensors, st.dictionaries(st.text(max_size=6), st.one_of(TENSOR, JSONISH), max_size=3)
              .map(lambda d: json.dumps(d).encode()), st.binary(max_size=32)),
    st.builds(_safetensors, DEEP.map(str.encode)),
    st.builds(_safetensors, st.binary(max_size=32), st.binary(max_size=16),
              st.sampled_from([0, 7, 2**40, 2**63, 2**64 - 1, (100 << 20) + 1])),
)


def _config_texts() -> st.SearchStrategy[str]:
    from terramind_nyc.testing.model import tiny_config

    base = tiny_config().to_dict()
    mutated = st.dictionaries(st.sampled_from([*base, "surprise"]), JSONISH, max_size=3).map(lambda ch: {**base, **ch})
    return st.one_of(mutated.map(json.dumps), JSONISH.map(json.dumps), DEEP, st.text(max_size=40),
                     st.integers(min_value=40, max_value=990).map(
                         lambda n: json.dumps({**base, "training": None})[:-1] + ', "metrics": '
                         + '{"a": ' * n + "1" + "}" * n + "}"))


@profile(300)
@given(config=st.one_of(_config_texts(), st.binary(max_size=64)), weights=WEIGHTS)
def test_load_artifact_takes_any_files(tmp_path, config, weights):
    from terramind_nyc.model.artifact import load_artifact
    from terramind_nyc.model.safetensors_io import read_header

    d = tmp_path / "artifact"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_bytes(config if isinstance(config, bytes) else config.encode("utf-8", "surrogatepass"))
    (d / "model.safetensors").write_bytes(weights)
    try:  # a well-formed header would build the network (torch): tests/test_bad_inputs.py has those cases
        read_header(d / "model.safetensors")
        assume(False)
    except errors_mod.CheckpointError:
        pass
    _, err = _timed(load_artifact, d)
    assert isinstance(err, errors_mod.CheckpointError), "random weights never make a loadable artifact"
    assert str(d) in str(err) or "checkpoint" in str(err)


@profile(300)
@given(weights=WEIGHTS)
def test_read_header_takes_any_file(tmp_path, weights):
    from terramind_nyc.model.safetensors_io import read_header

    p = tmp_path / "model.safetensors"
    p.write_bytes(weights)
    header, err = _timed(read_header, p)
    assert err is None or ("model.safetensors" in str(err) and "re-" in str(err))
    if err is None:  # a header the library accepts describes tensors that fit the file
        assert header.data_start <= Path(p).stat().st_size

