"""Raw inputs checked against the config and standardised (numpy only, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import raw

from terramind_nyc.errors import InvalidInputError
from terramind_nyc.model.inputs import standardise, validate_inputs
from terramind_nyc.testing.model import tiny_config


def test_nodata_becomes_zero_after_standardising():
    cfg = tiny_config()
    x = raw(8, 8)
    x["S1RTC"][1, 2, 3] = np.nan
    mask = np.ones((8, 8), bool)
    mask[0, 0] = False
    arrays, valid, size = validate_inputs(cfg, x, {"S2L2A": mask})
    out = standardise(cfg, arrays, valid)
    assert size == (8, 8)
    assert (out["S2L2A"][:, 0, 0] == 0).all() and (out["S1RTC"][:, 2, 3] == 0).all()
    s2 = cfg.modality("S2L2A")
    np.testing.assert_allclose(out["S2L2A"][:, 5, 5], (x["S2L2A"][:, 5, 5] - np.array(s2.mean)) / np.array(s2.std),
                               rtol=1e-5)
    assert out["DEM"].dtype == np.float32 and np.isfinite(out["S1RTC"]).all()


@pytest.mark.parametrize(
    ("arrays", "masks", "message"),
    [
        ({}, None, "at least one modality"),
        ({"S2L1C": np.zeros((13, 8, 8))}, None, "unknown modality"),
        ({"S2L2A": np.zeros((10, 8, 8), np.uint16)}, None, "10 bands, the checkpoint takes 12 in this order: B01"),
        ({"S1RTC": np.zeros((2, 8, 8), np.complex64)}, None, "dtype complex64 is not a real number type"),
        ({"S1RTC": np.zeros((2, 8, 8), bool)}, None, "dtype bool"),
        ({"S1RTC": np.array([["a"] * 8] * 8)}, None, "dtype <U1"),
        ({"S1RTC": np.zeros((1, 2, 8, 8))}, None, "3-D array"),
        ({"S1RTC": np.zeros((2, 8, 8)), "DEM": np.zeros((1, 8, 9))}, None, "differ in size"),
        ({"S1RTC": np.zeros((2, 0, 8))}, None, "at least 1x1"),
        ({"S1RTC": np.zeros((2, 8, 8))}, {"DEM": np.ones((8, 8), bool)}, "without arrays"),
        ({"S1RTC": np.zeros((2, 8, 8))}, {"S1RTC": np.ones((8, 9), bool)}, "mask: shape"),
        ({"S1RTC": np.zeros((2, 8, 8))}, {"S1RTC": np.ones((8, 8), np.float32)}, "bool array"),
    ],
)
def test_bad_inputs_raise_clear_errors(arrays, masks, message):
    with pytest.raises(InvalidInputError, match=message) as e:
        validate_inputs(tiny_config(), arrays, masks)
    assert isinstance(e.value, ValueError)


def test_a_db_to_linear_transform_runs_before_standardising():
    import dataclasses

    cfg = tiny_config()
    s1 = dataclasses.replace(cfg.modality("S1RTC"), transform="db_to_linear", mean=(0.1, 0.02), std=(0.05, 0.01))
    cfg = cfg.replace(modalities=tuple(s1 if m.name == "S1RTC" else m for m in cfg.modalities))
    x = raw(4, 4)
    x["S1RTC"][:] = -10.0  # dB -> 0.1 linear power
    x["S1RTC"][1, 0, 0] = np.nan
    arrays, valid, _ = validate_inputs(cfg, x)
    out = standardise(cfg, arrays, valid)
    np.testing.assert_allclose(out["S1RTC"][0], 0.0, atol=1e-6)          # (0.1 - 0.1) / 0.05
    np.testing.assert_allclose(out["S1RTC"][1, 1:, 1:], 8.0, rtol=1e-5)  # (0.1 - 0.02) / 0.01
    assert out["S1RTC"][1, 0, 0] == 0 and out["S1RTC"][0, 0, 0] == 0      # nodata is still the mean
