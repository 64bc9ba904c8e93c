"""Reliability under concurrency and faults: one request's failure never breaks another.

The real reader over the generated catalog, its COGs served on 127.0.0.1 (``fixture_catalog``),
and a tiny random-weight checkpoint. Covers issue K's delivery 1: the mixed 8-thread case,
``fetch_many`` over 10,000 points, a bounded soak (``TERRAMIND_NYC_SOAK_S`` seconds, default
20; 120 for the full soak) with random valid and invalid points and injected faults, and a
table of injected faults with the outcome each must end in.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")  # the random-weight checkpoint needs the torch extra

from terramind_nyc import fetch, fetch_many  # noqa: E402
from terramind_nyc.cache import clear_caches  # noqa: E402
from terramind_nyc.errors import (  # noqa: E402
    ChipError,
    DeadlineExceededError,
    InvalidInputError,
    InvalidLocationError,
    MissingModalityWarning,
    NoSceneError,
    TerramindNYCError,
)
from terramind_nyc.imagery._tasks import PoolSlot  # noqa: E402
from terramind_nyc.imagery.reader import clear_gdal_http_cache  # noqa: E402
from terramind_nyc.model import backends  # noqa: E402
from terramind_nyc.testing.model import make_tiny_artifact  # noqa: E402

#: A window with no scenes at all: the S2 search fails fast while S1 / DEM work is in flight.
EMPTY_WHEN = ("2016-01-01", "2016-01-20")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_tiny_artifact(tmp_path_factory.mktemp("rel") / "tiny", seed=3))


@pytest.fixture(autouse=True)
def _fresh():
    clear_caches()
    backends.clear_runtimes()
    yield
    clear_caches()
    backends.clear_runtimes()


@pytest.fixture
def world(fixture_catalog, local_settings, checkpoint):
    """(catalog, settings): the served fixture catalog, the tiny checkpoint, caches off."""
    return fixture_catalog.catalog, local_settings.replace(checkpoint=checkpoint, deadline_s=30.0)


def _figures(r: Any) -> tuple[Any, ...]:
    return (round(r.building_density, 9), tuple((k, round(v, 9)) for k, v in sorted(r.lulc_fractions.items())),
            r.provenance.imagery["S2L2A"]["item_ids"], tuple(r.provenance.modalities_missing))


def _outcome(fn: Any) -> Any:
    """The figures of a call, or the name of the library error it raised (anything else fails the test)."""
    try:
        with _quiet():
            return _figures(fn())
    except TerramindNYCError as exc:
        return type(exc).__name__


class _quiet:
    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", MissingModalityWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


def test_failing_requests_never_break_concurrent_ones(world):
    """8 threads x 6 fetches, half of them at a date window with no imagery (NoSceneError while
    their S1 / DEM reads still run): every valid fetch succeeds and equals the serial answer."""
    cat, s = world
    ok_point, ok_when = cat.points["clear"], cat.when("clear")
    calls = [(ok_point, ok_when if (t + k) % 2 == 0 else EMPTY_WHEN) for t in range(8) for k in range(6)]
    expected = _outcome(lambda: fetch(*ok_point, when=ok_when, settings=s))
    assert isinstance(expected, tuple)
    with pytest.raises(NoSceneError):
        fetch(*ok_point, when=EMPTY_WHEN, settings=s)

    def one(call: Any) -> Any:
        (lat, lon), when = call
        return _outcome(lambda: fetch(lat, lon, when=when, settings=s))

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, calls))
    want = [expected if when == ok_when else "NoSceneError" for _, when in calls]
    assert Counter(map(str, got)) == Counter(map(str, want))
    assert got == want


def test_a_retired_io_pool_serves_its_holders_and_is_shut_down_by_the_last():
    """Retiring a pool only stops handing it out: a request holding it keeps submitting, and the
    pool is shut down (its threads end) when its last holder gives it back."""
    first, second = PoolSlot.acquire(3), PoolSlot.acquire(3)
    assert first is second
    PoolSlot.release(3, first, retire=True)  # a request that ran out of time with hung reads
    fresh = PoolSlot.acquire(3)
    assert fresh is not second
    assert second.submit(lambda: 7).result(timeout=5) == 7  # the other holder is unaffected
    PoolSlot.release(3, second)
    with pytest.raises(RuntimeError):  # the last holder gone: the retired pool is shut down
        second.submit(lambda: 7)
    PoolSlot.release(3, fresh)
    assert PoolSlot.acquire(3) is fresh  # a pool that was not retired stays warm
    PoolSlot.release(3, fresh)


def test_requests_leave_no_threads_behind(world):
    """Many requests that fail fast while their other reads still run do not pile up threads."""
    cat, s = world
    fetch(*cat.points["clear"], when=cat.when("clear"), settings=s)
    before = threading.active_count()
    for _ in range(30):
        with pytest.raises(NoSceneError):
            fetch(*cat.points["clear"], when=EMPTY_WHEN, settings=s)
    assert threading.active_count() <= before + s.io_threads + 2


@pytest.mark.slow
def test_fetch_many_over_ten_thousand_random_nyc_points(world):
    """10,000 random points across the city (most without imagery in the fixture catalog, some in
    it): the batch ends, every point has a result or a library error, none is lost."""
    cat, s = world
    rng = random.Random(10_000)
    pts = [(rng.uniform(40.50, 40.91), rng.uniform(-74.25, -73.70)) for _ in range(9_990)]
    pts += [cat.points["clear"]] * 5 + [cat.points["no_s1"]] * 5
    t0 = time.monotonic()
    with _quiet():
        items = fetch_many(pts, when=cat.when("clear"), settings=s, workers=4, progress=False)
    assert len(items) == len(pts) and [it.index for it in items] == list(range(len(pts)))
    errors = Counter(type(it.error).__name__ for it in items if not it.ok)
    assert set(errors) <= {"NoSceneError", "OutsideDomainError", "ChipNodataError"}, errors
    assert sum(it.ok for it in items[-10:-5]) == 5
    assert time.monotonic() - t0 < 600
    assert threading.active_count() < 64, f"{threading.active_count()} threads left after the batch"


# ----------------------------------------------------------------------------------------
# Soak
# ----------------------------------------------------------------------------------------
def _soak_calls(cat: Any, rng: random.Random) -> tuple[str, Any, Any]:
    """One random request: (label, (lat, lon), when)."""
    clear, no_s1 = cat.points["clear"], cat.points["no_s1"]
    kind = rng.choice(["clear", "no_s1", "empty", "outside", "nan", "text", "far", "clear"])
    return {
        "clear": ("clear", clear, cat.when("clear")),
        "no_s1": ("no_s1", no_s1, cat.when("no_s1")),
        "empty": ("empty", clear, EMPTY_WHEN),
        "outside": ("outside", (51.5, -0.12), None),
        "nan": ("nan", (float("nan"), -73.98), None),
        "text": ("text", ("forty", "-73.98"), None),
        "far": ("far", (40.60, -73.80), cat.when("clear")),  # in NYC, no imagery in the fixture
    }[kind]


#: What each soak request may end in: its figures, or these library errors (a fault may hit it).
_SOAK_ALLOWED = {
    "clear": {"ChipError", "DeadlineExceededError", "CatalogError"},
    "no_s1": {"ChipError", "DeadlineExceededError", "CatalogError"},
    "empty": {"NoSceneError"},
    "outside": {"OutsideDomainError"},
    "nan": {"InvalidLocationError"},
    "text": {"InvalidLocationError"},
    "far": {"NoSceneError"},
}


#: Server paths whose files a 404 takes away, to lose one optional modality on purpose.
_LOSE = {"S1RTC": "*/sentinel-1-rtc/*", "DEM": "*/cop-dem-glo-30/*"}


def _soak_baselines(cat: Any, cog_server: Any, s: Any) -> dict[tuple[str, tuple[str, ...]], Any]:
    """The fault-free figures of each soak request that succeeds, per set of modalities missing
    (the reader runs without S1 or the DEM when their read fails): ``(label, missing) -> figures``."""
    out = {}
    for label in ("clear", "no_s1"):
        for lost in ((), ("S1RTC",), ("DEM",), ("S1RTC", "DEM")):
            cog_server.faults.clear()
            clear_gdal_http_cache()
            for m in lost:
                cog_server.faults.fail(404, _LOSE[m], times=None)
            got = _outcome(lambda label=label: fetch(*cat.points[label], when=cat.when(label), settings=s))
            assert isinstance(got, tuple), f"{label} without {lost}: {got}"
            out[(label, got[-1])] = got
    cog_server.faults.clear()
    clear_gdal_http_cache()
    assert {k for k in out if not k[1]} == {("clear", ())}, sorted(out)
    return out


@pytest.mark.slow
def test_soak_threads_random_points_and_faults(world, cog_server):
    """For ``TERRAMIND_NYC_SOAK_S`` seconds: 8 threads of random valid and invalid requests while
    faults (503s, truncated transfers, latency) come and go on the COG server. Zero unexpected
    exceptions; every success equals the fault-free answer for the same input and the same
    modalities (a fault may cost S1 or the DEM: the reader then runs without them)."""
    cat, s = world
    s = s.replace(http_retries=1, deadline_s=15.0)
    duration = float(os.environ.get("TERRAMIND_NYC_SOAK_S", "20"))
    baseline = _soak_baselines(cat, cog_server, s)
    stop = threading.Event()
    seen: Counter[str] = Counter()
    bad: list[str] = []
    lock = threading.Lock()

    def faults() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            cog_server.faults.clear()
            clear_gdal_http_cache()  # so the faults meet real reads, not GDAL's cached blocks
            choice = rng.choice(["none", "fail", "truncate", "delay"])
            if choice == "fail":
                cog_server.faults.fail(503, "*B0*.tif", times=rng.randint(1, 4))
            elif choice == "truncate":
                cog_server.faults.truncate("*.tif", nbytes=rng.choice([0, 512, 4096]), times=rng.randint(1, 3))
            elif choice == "delay":
                cog_server.faults.delay(0.05, "*.tif", times=20)
            stop.wait(0.5)
        cog_server.faults.clear()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            label, (lat, lon), when = _soak_calls(cat, rng)
            try:
                got = _outcome(lambda: fetch(lat, lon, when=when, settings=s))
            except Exception as exc:  # noqa: BLE001 - the soak's one failure mode
                with lock:
                    bad.append(f"{label}: unexpected {type(exc).__name__}: {exc}")
                continue
            with lock:
                ok = "ok" + "".join(f"-no-{m}" for m in got[-1]) if isinstance(got, tuple) else got
                seen[f"{label}:{ok}"] += 1
                if isinstance(got, tuple):
                    ref = baseline.get((label, got[-1]))  # a fault may cost S1 / the DEM, not change the rest
                    if got != ref:
                        bad.append(f"{label}: {got} differs from the fault-free {ref}")
                elif got not in _SOAK_ALLOWED[label]:
                    bad.append(f"{label}: ended in {got}")

    threads = [threading.Thread(target=faults)] + [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a soak thread hung"
    print(f"soak {duration:g} s: {sum(seen.values())} requests, outcomes {dict(sorted(seen.items()))}")
    assert bad == [], bad[:10]
    assert sum(seen.values()) >= 8 and sum(v for k, v in seen.items() if k.startswith("clear:ok")) >= 1, seen


# ----------------------------------------------------------------------------------------
# Injected faults, each with the outcome it must end in
# ----------------------------------------------------------------------------------------
def _inject(server: Any, fault: tuple[Any, ...]) -> None:
    """Put ``fault`` in place on ``server``, then empty GDAL's process-wide cache.

    The previous row's failed fetch may still have sibling band reads running (a chip fails
    fast; its other reads finish in the background) that fill the cache after the fixture
    emptied it, and a cached range never meets the fault. Once the fault is in place they cannot
    cache the faulted files any more, so the cache is emptied after injecting, not before."""
    kind, *args = fault
    getattr(server.faults, kind)(*args[:-1], **args[-1])
    clear_gdal_http_cache()


#: (id, server, fault, settings overrides, expected: "ok", "ok-missing:<modality>" or an error class).
FAULTS = [
    ("s2-503-once-retried", "cog", ("fail", 503, "*B04*.tif", {"times": 1}), {}, "ok"),
    ("s2-500-twice-retried", "cog", ("fail", 500, "*B08*.tif", {"times": 2}), {}, "ok"),
    ("s2-429-retry-after", "cog", ("fail", 429, "*B02*.tif", {"times": 1, "retry_after": 0.1}), {}, "ok"),
    ("s2-503-always", "cog", ("fail", 503, "*B04*.tif", {"times": None}), {}, ChipError),
    ("s2-404", "cog", ("fail", 404, "*B04*.tif", {"times": None}), {}, ChipError),
    ("s2-403-denied", "cog", ("fail", 403, "*B04*.tif", {"times": None}), {}, ChipError),
    ("s2-truncated-transfers", "cog", ("truncate", "*B03*.tif", {"nbytes": 300, "times": None}), {}, ChipError),
    ("s2-short-file", "cog", ("truncate", "*B03*.tif", {"nbytes": 2000, "short_file": True}), {}, ChipError),
    ("s2-hang", "cog", ("hang", "*B04*.tif", {"times": None}), {"deadline_s": 4.0}, DeadlineExceededError),
    ("s2-stall-mid-body", "cog", ("truncate", "*B04*.tif", {"nbytes": 600, "stall": True}), {"deadline_s": 4.0},
     (ChipError, DeadlineExceededError, "ok-same")),  # GDAL's read timeout or the deadline; a result only if right
    ("s2-latency", "cog", ("delay", 0.05, "*.tif", {"times": 40}), {}, "ok"),
    ("s1-503-always", "cog", ("fail", 503, "*vv*.tif", {"times": None}), {}, "ok-missing:S1RTC"),
    ("s1-hang", "cog", ("hang", "*vv*.tif", {"times": None}), {"deadline_s": 6.0}, "ok-missing:S1RTC"),
    ("dem-404", "cog", ("fail", 404, "*cop-dem*", {"times": None}), {}, "ok-missing:DEM"),
    ("dem-truncated-transfers", "cog", ("truncate", "*cop-dem*", {"nbytes": 300, "times": None}), {}, "ok-missing:DEM"),
    ("scl-503-always", "cog", ("fail", 503, "*SCL*.tif", {"times": None}), {}, ChipError),
    ("scl-truncated-once", "cog", ("truncate", "*SCL*.tif", {"nbytes": 100, "times": 1}), {}, "ok"),
]


@pytest.mark.parametrize("fault_id,server,fault,overrides,expected", FAULTS, ids=[f[0] for f in FAULTS])
def test_injected_fault_ends_as_it_should(world, cog_server, fault_id, server, fault, overrides, expected):
    cat, s = world
    s = s.replace(**{"deadline_s": 20.0, **overrides})
    backends.get_runtime(s)  # loaded before the fault: the deadline here is the imagery's
    _inject(cog_server, fault)
    bound = s.deadline_s + 3.0
    t0 = time.monotonic()
    try:
        with _quiet():
            r = fetch(*cat.points["clear"], when=cat.when("clear"), settings=s)
    except TerramindNYCError as exc:
        elapsed = time.monotonic() - t0
        assert not isinstance(expected, str), f"{fault_id}: expected {expected}, got {type(exc).__name__}: {exc}"
        expected = tuple(e for e in (expected if isinstance(expected, tuple) else (expected,)) if isinstance(e, type))
        assert isinstance(exc, expected), f"{fault_id}: {type(exc).__name__}: {exc}"
        assert "?" not in str(exc)  # no query string (where tokens live) in the message
        if fault_id == "s2-403-denied":
            assert exc.kind == "denied" and "signer" in str(exc)
        if fault_id == "s2-404":
            assert exc.kind == "missing"
    else:
        elapsed = time.monotonic() - t0
        if isinstance(expected, tuple) and "ok-same" in expected:
            expected = "ok-same"
        assert isinstance(expected, str), f"{fault_id}: expected {expected}, got a result"
        if expected == "ok-same":
            cog_server.faults.clear()
            clear_gdal_http_cache()
            with _quiet():
                again = fetch(*cat.points["clear"], when=cat.when("clear"), settings=s)
            assert _figures(r) == _figures(again), f"{fault_id}: a result that differs from the fault-free one"
        elif expected.startswith("ok-missing:"):
            assert expected.split(":")[1] in r.provenance.modalities_missing
        else:
            assert r.provenance.modalities_missing == ()
        assert np.isfinite(r.building_density)
    assert elapsed < bound, f"{fault_id} took {elapsed:.1f} s (deadline {s.deadline_s} s)"


def test_fault_table_is_big_enough():
    assert len(FAULTS) >= 15 and len({f[0] for f in FAULTS}) == len(FAULTS)


def test_bad_points_in_fetch_many_fail_alone(world):
    """Junk points (text, NaN, None, a huge int, a dict without keys) each get their own library
    error; the good point beside them still gets its result."""
    cat, s = world
    junk: list[Any] = [("forty", "-73.9"), (float("nan"), -73.9), None, (10**400, -73.9), {"x": 1}, (40.7,)]
    with _quiet():
        items = fetch_many([*junk, cat.points["clear"]], when=cat.when("clear"), settings=s, progress=False)
    assert [it.ok for it in items] == [False] * len(junk) + [True]
    assert all(isinstance(it.error, (InvalidLocationError, InvalidInputError)) for it in items[:-1]), \
        [repr(it.error) for it in items]
