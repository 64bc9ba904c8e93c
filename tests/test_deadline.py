"""The request time budget (terramind_nyc.deadline)."""

from __future__ import annotations

import time

import pytest

from terramind_nyc.deadline import Deadline, call_with_deadline
from terramind_nyc.errors import DeadlineExceededError, InvalidInputError


def test_deadline() -> None:
    d = Deadline(0.2)
    assert 0.0 < d.remaining() <= 0.2 and not d.expired
    d.check("step", "svc")
    time.sleep(0.25)
    assert d.expired and d.remaining() == 0.0
    with pytest.raises(DeadlineExceededError, match=r"reading X at host:1 did not finish within the 0.2 s deadline"):
        d.check("reading X", "host:1")
    assert isinstance(d.error("a", "b"), TimeoutError)
    forever = Deadline(None)
    assert forever.remaining() == float("inf") and forever.timeout() is None and forever.timeout(3) == 3
    for bad in (0, -1, float("nan"), True, "10"):
        with pytest.raises(InvalidInputError):
            Deadline(bad)  # type: ignore[arg-type]


def test_call_with_deadline_returns_raises_or_stops_waiting():
    assert call_with_deadline(lambda: 42, Deadline(5), "step", "svc") == 42
    with pytest.raises(KeyError):
        call_with_deadline(lambda: {}["x"], Deadline(5), "step", "svc")
    t = time.perf_counter()
    with pytest.raises(DeadlineExceededError, match="hang at slow:1"):
        call_with_deadline(lambda: time.sleep(2), Deadline(0.2), "hang", "slow:1")
    assert time.perf_counter() - t < 1.5  # stopped waiting at the deadline, not at the call's end


def test_a_huge_deadline_waits_as_long_as_the_standard_library_allows():
    import threading
    from concurrent.futures import Future, wait

    d = Deadline(1e300)
    assert d.timeout() == threading.TIMEOUT_MAX and d.timeout(2.0) == 2.0
    wait([Future()], timeout=d.timeout(0.01))  # what _tasks.py and backends.py do: no OverflowError
    assert threading.Event().wait(timeout=Deadline(1e300).timeout(0.01)) is False
    assert call_with_deadline(lambda: 7, Deadline(1e300), "step", "svc") == 7
    assert Deadline(10**300).seconds == 1e300  # any finite real, an int too


@pytest.mark.parametrize("bad", [pytest.param(10**400, id="huge-int"), pytest.param(10**5000, id="int-too-long"),
                                 float("inf"), -float("inf"), None.__class__, [1], b"1"])
def test_a_deadline_is_a_finite_positive_number(bad):
    with pytest.raises(InvalidInputError, match=r"a deadline must be a finite number of seconds > 0 or None") as e:
        Deadline(bad)
    assert "pass e.g. 120" in str(e.value) and len(str(e.value)) < 300
