"""The terramind_nyc.testing package itself: what it exports, and that it imports without torch."""

from __future__ import annotations

import subprocess
import sys

from terramind_nyc import sensors, testing


def test_testing_package_imports_without_torch() -> None:
    code = ("import sys, terramind_nyc.testing, terramind_nyc.grid; "
            "print(','.join(m for m in ('torch', 'terratorch', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_testing_package_exports() -> None:
    assert sorted(testing.__all__) == sorted([
        "S1_NODATA", "S2_BANDS", "S2_OFFSET", "S2_RESOLUTION", "SCENARIOS", "SCL_CLOUD", "SCL_NODATA", "CogServer",
        "FaultProxy", "Faults", "FixtureCatalog", "HarnessError", "HarnessUnavailable", "HubServer", "PgstacServer",
        "RealChip", "RequestRecord", "StacServer", "baseline_has_offset", "build_fixture_catalog", "build_real_chip",
        "chip_fractions", "data_dir", "fixture_elevation", "free_port",
    ])
    for name in testing.__all__:
        assert getattr(testing, name) is not None, name
    # the sensor facts are the library's, not copies
    assert testing.S2_BANDS is sensors.S2_BANDS and testing.SCL_CLOUD is sensors.SCL_CLOUD
    assert testing.SCL_NODATA is sensors.SCL_NODATA and testing.S1_NODATA == sensors.S1_NODATA
    assert testing.S2_OFFSET == sensors.S2_OFFSET_DN
    assert set(testing.S2_RESOLUTION) == {*sensors.S2_BANDS, "SCL"}


def test_servers_package_exports_and_loads_on_first_use() -> None:
    from terramind_nyc.testing import servers

    for name in ("CogServer", "FaultProxy", "Faults", "HarnessError", "HarnessUnavailable", "HubServer",
                 "PgstacServer", "RequestRecord", "StacServer", "free_port"):
        assert name in servers.__all__ and getattr(testing, name) is getattr(servers, name), name
    code = ("import sys, terramind_nyc.testing as t; "
            "before = 'terramind_nyc.testing.servers' in sys.modules; t.CogServer; "
            "print(before, 'terramind_nyc.testing.servers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
