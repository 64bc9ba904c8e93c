"""``terramind-nyc sniff``: the expectation rules, the offline harness run, preprocessing variants, bad input.

One run goes through the real tiny random-weight network (the CLI test); the others swap in a
runtime whose ``predict`` answers at once (:class:`_Quick`), since they check what sniff does
around the model: which config and checkpoint ran, how rows are judged, how failures become rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from terramind_nyc.cli import cli
from terramind_nyc.errors import CatalogError, CheckpointError, ChipError, InvalidInputError
from terramind_nyc.pipeline import Pipeline, default_reader, default_runtime, use_pipeline
from terramind_nyc.settings import Settings
from terramind_nyc.sniff import AREAS, BUILDING_BANDS_PX, CHIP_PX, buildings_hold, lulc_holds, sniff

WHEN = ("2024-05-01", "2024-07-31")  # the harness scenes


# ----------------------------------------------------------------------------------------
# The expectation rules, as a table
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("expected", "px", "holds"), [
    ("many", 5001, True), ("many", 5000, False), ("many", 40000, True), ("many", 0, False),
    ("few", 100, True), ("few", 99, False), ("few", 30000, True), ("few", 30001, False), ("few", 5000, True),
    ("none", 0, True), ("none", 999, True), ("none", 1000, False), ("none", 20000, False),
])
def test_building_bands_are_shares_of_the_224_chip(expected: str, px: int, holds: bool) -> None:
    assert CHIP_PX == 50176
    assert buildings_hold(expected, px / CHIP_PX) is holds


def test_building_bands_edge_cases() -> None:
    assert BUILDING_BANDS_PX == {"many": (5000, None), "few": (100, 30000), "none": (None, 1000)}
    for expected in BUILDING_BANDS_PX:
        assert not buildings_hold(expected, math.nan)
        assert not buildings_hold(expected, None)
    with pytest.raises(InvalidInputError, match="many"):
        buildings_hold("lots", 0.5)


@pytest.mark.parametrize(("expected", "dominant", "holds"), [
    (("developed",), "developed", True), (("forest", "developed"), "forest", True),
    (("forest", "developed"), "water", False), (("water",), "other", False), (("water",), None, False),
])
def test_land_cover_is_matched_by_name(expected: tuple[str, ...], dominant: str | None, holds: bool) -> None:
    assert lulc_holds(expected, dominant) is holds


def test_the_ten_areas_of_design_section_9() -> None:
    assert len(AREAS) == 10 and len({a.name for a in AREAS}) == 10
    by_name = {a.name: a for a in AREAS}
    assert (by_name["Jamaica Bay"].lon, by_name["Jamaica Bay"].lat) == (-73.840, 40.610)
    assert by_name["Jamaica Bay"].buildings == "none" and by_name["Jamaica Bay"].lulc == ("water",)
    assert by_name["Coney Island"].lulc == ("water", "developed")
    assert [a.buildings for a in AREAS].count("many") == 5 and [a.buildings for a in AREAS].count("few") == 4


# ----------------------------------------------------------------------------------------
# Fixtures: a tiny artifact, a runtime that answers at once, a spy on the runtimes that ran
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight two-head artifact with a small decoder (fast on CPU)."""
    pytest.importorskip("torch")
    from terramind_nyc.testing.model import make_tiny_artifact, tiny_config

    return make_tiny_artifact(tmp_path_factory.mktemp("sniff") / "tiny",
                              config=tiny_config(decoder_channels=(32, 16, 16, 16)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the offline harness is generated once and reused by every offline run of this module."""
    return tmp_path_factory.mktemp("sniff-work")


class _Quick:
    """A loaded runtime whose ``predict`` answers at once: one land-cover class (by name) everywhere,
    buildings on the top ``share`` of the rows."""

    def __init__(self, rt: Any, lulc: str, share: float) -> None:
        self.rt, self.lulc, self.share = rt, lulc, share

    def model_info(self) -> Any:
        return self.rt.model_info()

    def predict(self, arrays: Any, masks: Any = None) -> Any:
        h, w = next(iter(arrays.values())).shape[-2:]
        classes = self.rt.config.head("lulc").classes
        lulc = np.zeros((len(classes), h, w), np.float32)
        lulc[classes.index(self.lulc)] = 1.0
        bld = np.zeros((2, h, w), np.float32)
        rows = round(self.share * h)
        bld[1, :rows], bld[0, rows:] = 1.0, 1.0
        return SimpleNamespace(probabilities={"lulc": lulc, "buildings": bld})


def _pipeline(seen: list[tuple[Settings, Any]], *, quick: tuple[str, float] | None = ("developed", 0.2),
              reader: Any = default_reader) -> Pipeline:
    """The default pipeline, recording each runtime's settings and config (and answering at once)."""
    def runtimes(settings: Settings, deadline: Any = None) -> Any:
        rt = default_runtime(settings, deadline)
        seen.append((settings, rt.config))
        return rt if quick is None else _Quick(rt, *quick)
    return Pipeline(reader=reader, runtimes=runtimes)


def _digest(path: Path) -> tuple[str, str]:
    return (hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest(),
            (path / "config.json").read_text())


# ----------------------------------------------------------------------------------------
# The offline harness: one real run through the tiny network, by the CLI
# ----------------------------------------------------------------------------------------
def test_offline_cli_run_is_not_judged_and_runs_the_variant(tiny: Path, workdir: Path) -> None:
    from terramind_nyc.model.adapters import FLOOD_STATS

    before = _digest(tiny)
    seen: list[tuple[Settings, Any]] = []
    with use_pipeline(_pipeline(seen, quick=None)):
        res = CliRunner().invoke(cli, ["sniff", "--offline", "--checkpoint", str(tiny), "--workdir", str(workdir),
                                       "--chip", "256", "--s1", "linear", "--stats", "flood", "--json"])
    assert res.exit_code == 0, res.output
    assert "NOT JUDGED" in res.output and "Manhattan midtown" in res.output
    data = json.loads(res.output.strip().splitlines()[-1])
    assert data["judged"] is False and data["exit_code"] == 0 and len(data["rows"]) == 10
    assert data["errors"] == 0 and all(r["dominant"] and r["s2_item_ids"] for r in data["rows"])
    assert all(0 <= r["building_share"] <= 1 and r["building_px_224"] >= 0 for r in data["rows"])
    prep = data["preprocessing"]
    assert (prep["stats"], prep["s1"], prep["chip"], prep["variant"], prep["backend"]) == ("flood", "linear", 256, True,
                                                                                          "torch")
    assert prep["sha256"] == before[0]
    # the network that ran read the rewritten config, from a temporary artifact that is gone now
    assert len(seen) == 10
    settings, config = seen[0]
    assert config.tile_size == 256 and config.modality("S1RTC").transform == "db_to_linear"
    assert config.modality("S2L2A").mean == FLOOD_STATS["S2L2A"][0]
    assert settings.checkpoint != str(tiny) and not Path(settings.checkpoint).exists()
    assert _digest(tiny) == before and os.stat(tiny / "model.safetensors").st_nlink == 1
    assert (workdir / "harness" / "items.json").is_file()


# ----------------------------------------------------------------------------------------
# Preprocessing variants, with a runtime that answers at once
# ----------------------------------------------------------------------------------------
def test_variants_change_the_config_that_runs(tiny: Path, workdir: Path) -> None:
    before = _digest(tiny)
    runs: dict[str, Any] = {}
    for label, kw in {"as is": {}, "224/db/pretraining": {"chip": 224, "s1": "db", "stats": "pretraining"},
                      "256": {"chip": 256}}.items():
        seen: list[tuple[Settings, Any]] = []
        linked: list[bool] = []

        def runtimes(settings: Settings, deadline: Any = None, seen: Any = seen, linked: Any = linked) -> Any:
            weights = Path(settings.checkpoint) / "model.safetensors"
            linked.append(weights.exists() and os.path.samefile(weights, tiny / "model.safetensors"))
            rt = default_runtime(settings, deadline)
            seen.append((settings, rt.config))
            return _Quick(rt, "developed", 0.2)

        with use_pipeline(Pipeline(runtimes=runtimes)):
            rep = sniff(offline=True, checkpoint=tiny, workdir=workdir, progress=False, **kw)
        assert len(rep.rows) == 10 and not rep.judged and rep.exit_code == 0 and all(linked)
        runs[label] = (rep, seen[0])
    from terramind_nyc.model.config import DEFAULT_MODALITIES

    rep, (settings, config) = runs["as is"]
    assert settings.checkpoint == str(tiny) and not rep.preprocessing["variant"]
    assert (config.tile_size, config.modality("S1RTC").transform) == (224, "")
    rep, (settings, config) = runs["224/db/pretraining"]
    assert settings.checkpoint != str(tiny) and settings.backend == "torch" and rep.preprocessing["variant"]
    assert (config.tile_size, config.modality("S1RTC").transform) == (224, "")
    assert config.modality("S2L2A").mean == DEFAULT_MODALITIES[0].mean and rep.preprocessing["stats"] == "pretraining"
    rep, (settings, config) = runs["256"]
    assert config.tile_size == 256 and rep.preprocessing["chip"] == 256
    assert _digest(tiny) == before


def test_a_judged_run_checks_each_area(tiny: Path, workdir: Path) -> None:
    """Everything "developed" with a fifth of the rows buildings: every area holds but Jamaica Bay."""
    local = Settings(catalog_provider="local", catalog_path=str(workdir / "harness" / "items.json"), signer="none")
    if not (workdir / "harness" / "items.json").is_file():
        sniff(offline=True, checkpoint=tiny, workdir=workdir, progress=False)
    seen: list[tuple[Settings, Any]] = []
    with use_pipeline(_pipeline(seen, quick=("developed", 0.2))):
        rep = sniff(local, offline=False, checkpoint=tiny, when=WHEN, progress=False)
        assert not sniff(local, checkpoint=tiny, when=WHEN, progress=False).judged  # a local catalog
    assert rep.judged and rep.exit_code == 1 and (rep.passed, rep.failed) == (9, 1)
    bay = next(r for r in rep.rows if r.area == "Jamaica Bay")
    assert not bay.ok and not bay.lulc_ok and not bay.buildings_ok and bay.dominant == "developed"
    assert all(r.building_px_224 == round(45 / 224 * CHIP_PX) for r in rep.rows)
    assert rep.to_dict()["rows"][2]["area"] == "Jamaica Bay"
    json.dumps(rep.to_dict(), allow_nan=False)


# ----------------------------------------------------------------------------------------
# Failures and bad input
# ----------------------------------------------------------------------------------------
def _failing_reader(exc: Exception, only: str | None) -> Any:
    area = next((a for a in AREAS if a.name == only), None)

    def reader(grid: Any, start: Any, end: Any, settings: Settings, deadline: Any) -> Any:
        if area is None or (abs(grid.center_lat - area.lat) < 1e-3 and abs(grid.center_lon - area.lon) < 1e-3):
            raise exc
        return default_reader(grid, start, end, settings, deadline)
    return reader


def test_an_area_error_is_a_row(tiny: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[Settings, Any]] = []
    with use_pipeline(_pipeline(seen, reader=_failing_reader(ChipError("read broke", kind="server"), "Jamaica Bay"))):
        # caches off: the chips of earlier runs (same grids, same catalog settings) would answer from memory
        rep = sniff(Settings(cache_enabled=False), offline=True, checkpoint=tiny, workdir=workdir, progress=True)
    assert "sniff" in capsys.readouterr().err  # the progress bar
    bay = next(r for r in rep.rows if r.area == "Jamaica Bay")
    assert bay.error == "ChipError: read broke" and bay.error_type == "ChipError" and not bay.ok
    assert sum(r.error is not None for r in rep.rows) == 1 and rep.to_dict()["errors"] == 1
    assert rep.exit_code == 0  # offline: not judged


def test_unreachable_catalog_is_not_judged_unless_online(tiny: Path) -> None:
    remote = Settings(catalog_provider="stac-api", catalog_url="http://127.0.0.1:9/stac", signer="none")
    with use_pipeline(_pipeline([], reader=_failing_reader(CatalogError("connection refused"), None))):
        rep = sniff(remote, checkpoint=tiny, progress=False)
        online = sniff(remote, checkpoint=tiny, offline=False, progress=False)
    assert not rep.judged and "reach the catalog" in rep.note and rep.exit_code == 0 and rep.failed == 10
    assert online.judged and online.exit_code == 1


def test_a_checkpoint_error_ends_the_run(tiny: Path, tmp_path: Path) -> None:
    config = json.loads((tiny / "config.json").read_text())
    lulc = next(h for h in config["heads"] if h["name"] == "lulc")
    lulc["classes"] = [c.replace("forest", "trees") for c in lulc["classes"]]
    (tmp_path / "config.json").write_text(json.dumps(config))  # classes by name: no "forest"
    with pytest.raises(CheckpointError, match="forest"):
        sniff(Settings(catalog_provider="local", catalog_path=str(tmp_path), signer="none"), checkpoint=tmp_path,
              progress=False)
    res = CliRunner().invoke(cli, ["sniff", "--online", "--checkpoint", str(tmp_path / "missing")])
    assert res.exit_code == 1 and res.output.startswith("error: CheckpointNotFoundError")


def test_bad_input() -> None:
    res = CliRunner().invoke(cli, ["sniff", "--stats", "imagenet"])
    assert res.exit_code == 2 and "imagenet" in res.output
    assert CliRunner().invoke(cli, ["sniff", "--chip", "512"]).exit_code == 2
    for kw in ({"stats": "imagenet"}, {"s1": "power"}, {"chip": 512}, {"chip": True}, {"offline": "yes"}):
        with pytest.raises(InvalidInputError):
            sniff(**kw)  # type: ignore[arg-type]


def test_cli_choices_are_the_library_choices() -> None:
    from terramind_nyc.model.adapters import CHIP_CHOICES, S1_CHOICES, STATS_CHOICES

    params = {p.name: p for p in cli.commands["sniff"].params}
    assert tuple(params["stats"].type.choices) == STATS_CHOICES  # type: ignore[attr-defined]
    assert tuple(params["s1"].type.choices) == S1_CHOICES  # type: ignore[attr-defined]
    assert tuple(int(c) for c in params["chip"].type.choices) == CHIP_CHOICES  # type: ignore[attr-defined]
