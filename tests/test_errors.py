"""Structured errors: callers branch on types and fields, never on message text."""

from __future__ import annotations

import pickle

import pytest

from terramind_nyc import Settings
from terramind_nyc.errors import (
    CatalogError,
    ChipError,
    ChipNodataError,
    InvalidLocationError,
    NoSceneError,
    OutsideDomainError,
    TerramindNYCError,
)
from terramind_nyc.grid import chip_grid
from terramind_nyc.location import validate_location


def test_errors_keep_their_fields_through_pickling():
    for err in (NoSceneError("none", reason="cloud"), ChipError("gone", kind="missing", status=404),
                ChipNodataError("little data")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert getattr(back, "reason", None) == getattr(err, "reason", None)
        assert getattr(back, "kind", None) == getattr(err, "kind", None)
        assert getattr(back, "status", None) == getattr(err, "status", None)
    assert NoSceneError("x").reason == "empty" and ChipError("x").kind == "other" and ChipError("x").status is None
    for base in (CatalogError, LookupError, TerramindNYCError):
        assert isinstance(NoSceneError("x"), base)
    assert isinstance(ChipError("x"), OSError) and isinstance(ChipError("x"), TerramindNYCError)


def test_outside_domain_is_its_own_type():
    with pytest.raises(OutsideDomainError, match="outside the NYC domain"):
        validate_location(40.7128, -80.0, Settings())
    with pytest.raises(OutsideDomainError, match="area of use"):
        chip_grid(48.85, 2.35, settings=Settings(domain_check=False))
    with pytest.raises(InvalidLocationError) as bad:  # a bad value is not "outside"
        validate_location(float("nan"), -73.98, Settings())
    assert not isinstance(bad.value, OutsideDomainError)
    assert issubclass(OutsideDomainError, InvalidLocationError) and issubclass(OutsideDomainError, ValueError)
