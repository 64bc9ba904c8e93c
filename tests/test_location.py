"""The coordinate gate (terramind_nyc.location): every non-coordinate is an InvalidLocationError."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from terramind_nyc.errors import InvalidLocationError, OutsideDomainError, shown
from terramind_nyc.location import as_coordinate, validate_location
from terramind_nyc.settings import Settings


@pytest.mark.parametrize("value", [40.75, 40, np.float32(40.75), np.float64(40.75), np.int64(40), Fraction(163, 4)])
def test_any_real_number_is_a_coordinate(value):
    v = as_coordinate(value, "latitude")
    assert type(v) is float and v == pytest.approx(float(value))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (10**400, "far outside the range of decimal degrees"),
        (-(2**1100), "far outside the range of decimal degrees"),
        pytest.param(10**5000, "far outside", id="int-too-long-to-print"),
        (float("nan"), "is NaN"),
        (float("inf"), "is infinite"),
        ("40.7", "convert it with float() first"),
        (b"40.7", "convert it with float() first"),
        (None, "must be a number in decimal degrees, got NoneType"),
        (True, "got bool"),
        (np.bool_(True), "got bool"),
        ([40.7], "got list"),
        (np.array([40.7]), "got ndarray"),
        (complex(40, 1), "got complex"),
    ],
)
def test_everything_else_is_an_invalid_location(value, message):
    with pytest.raises(InvalidLocationError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        as_coordinate(value, "latitude")
    assert type(e.value) is InvalidLocationError and len(str(e.value)) < 300


def test_validate_location_checks_range_then_domain():
    assert validate_location(np.float32(40.75), -73.98) == (pytest.approx(40.75), -73.98)
    with pytest.raises(InvalidLocationError, match="did you swap"):
        validate_location(100, -73.98)
    with pytest.raises(InvalidLocationError, match="-180..180"):
        validate_location(40.75, 2**64)
    with pytest.raises(OutsideDomainError, match="domain_check=False"):
        validate_location(51.5, -0.12)
    assert validate_location(51.5, -0.12, Settings(domain_check=False)) == (51.5, -0.12)


def test_shown_is_short_and_never_fails():
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert shown(10**5000) == "<unprintable int>" and "Broken" in shown(Broken())
    assert len(shown("x" * 10_000)) < 50 and len(shown(list(range(10_000)))) < 60 and shown(1.5) == "1.5"
