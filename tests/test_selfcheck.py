"""``terramind-nyc selfcheck``: the whole fetch path offline, with a tiny random-weight model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from terramind_nyc.cli import cli
from terramind_nyc.selfcheck import run_selfcheck

pytest.importorskip("torch")  # the random-weight checkpoint needs the torch extra


def test_selfcheck_passes_and_writes_outputs(tmp_path):
    rep = run_selfcheck(workdir=tmp_path / "work", outdir=tmp_path / "out")
    assert rep.ok, [f"{c.name}: {c.detail}" for c in rep.failed]
    assert rep.random_weights and rep.result is not None
    assert set(rep.outputs) == {"json", "geotiff", "geojson", "quicklook"}
    for f in rep.outputs.values():
        assert (tmp_path / "out").joinpath(f.rsplit("/", 1)[-1]).stat().st_size > 0
    d = json.loads((tmp_path / "out" / "result.json").read_text())
    assert abs(sum(d["lulc_fractions"].values()) - 1) < 1e-6


def test_selfcheck_cli_reports_failure_with_bad_checkpoint(tmp_path):
    res = CliRunner().invoke(cli, ["selfcheck", "--checkpoint", str(tmp_path / "nope")])
    assert res.exit_code == 1
    assert "[FAIL]" in res.output and "selfcheck:" in res.output
