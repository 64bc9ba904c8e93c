"""fetch end to end: real reader over a generated local catalog, a tiny random-weight TerraMind.

Covers what the fakes in test_api cannot: the model loads once under concurrency, threads get
the serial answers, a missing checkpoint is a typed error (and ok:false for Riprap), the CLI.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")  # the random-weight checkpoint needs the torch extra

import terramind_nyc.model.backends as runtime_mod  # noqa: E402
import terramind_nyc.model.precision as precision_mod  # noqa: E402
from terramind_nyc import CheckpointNotFoundError, fetch, fetch_many, fetch_riprap  # noqa: E402
from terramind_nyc.cache import clear_caches  # noqa: E402
from terramind_nyc.cli import cli  # noqa: E402
from terramind_nyc.errors import MissingModalityWarning  # noqa: E402
from terramind_nyc.testing import build_fixture_catalog  # noqa: E402
from terramind_nyc.testing.model import make_tiny_artifact  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    cat = build_fixture_catalog(root / "imagery", (root / "imagery").as_posix(), scenarios=["clear", "no_s1"])
    ck = make_tiny_artifact(root / "artifact")
    return cat, ck


@pytest.fixture(autouse=True)
def _fresh():
    clear_caches()
    runtime_mod.clear_runtimes()
    yield
    clear_caches()
    runtime_mod.clear_runtimes()


def _calls(cat):
    """20 mixed requests: two scenarios, radii, a duplicate, a point outside NYC."""
    (la, lo), (lb, lb_lon) = cat.points["clear"], cat.points["no_s1"]
    wa, wb = cat.when("clear"), cat.when("no_s1")
    base = [(la, lo, wa, None), (la, lo, wa, 150.0), (lb, lb_lon, wb, None), (lb, lb_lon, wb, 300.0),
            (la + 0.001, lo, wa, 200.0)]
    calls = [base[i % len(base)] for i in range(19)] + [(51.5, -0.12, wa, None)]
    return calls


def _one(cat, ck, call):
    lat, lon, when, radius = call
    try:
        r = fetch(lat, lon, when=when, radius_m=radius, settings=cat.settings(checkpoint=str(ck)))
    except Exception as exc:  # noqa: BLE001 - compared as the error's type
        return type(exc).__name__
    return (r.building_density, tuple(sorted(r.lulc_fractions.items())), r.n_building_components)


def test_eight_threads_load_the_model_once_and_match_serial(world, monkeypatch):
    cat, ck = world
    loads = []
    real = runtime_mod.load_runtime

    def counting(*a, **kw):
        loads.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(runtime_mod, "load_runtime", counting)
    calls = _calls(cat) * 8
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda c: _one(cat, ck, c), calls))
    assert len(loads) == 1
    clear_caches()
    runtime_mod.clear_runtimes()
    serial = [_one(cat, ck, c) for c in _calls(cat)]
    assert threaded == serial * 8
    assert serial[-1] == "OutsideDomainError"  # an InvalidLocationError: the point lies outside NYC


def test_missing_checkpoint_is_typed_and_riprap_says_so(world, tmp_path):
    cat, _ = world
    lat, lon = cat.points["clear"]
    s = cat.settings(checkpoint=str(tmp_path / "no-such-artifact"))
    with pytest.raises(CheckpointNotFoundError):
        fetch(lat, lon, when=cat.when("clear"), settings=s)
    out = fetch_riprap(lat, lon, when=cat.when("clear"), settings=s)
    assert out["ok"] is False and "CheckpointNotFoundError" in out["err"]


def test_cli_fetch_json_riprap_and_outputs(world, tmp_path):
    cat, ck = world
    lat, lon = cat.points["clear"]
    start, end = cat.when("clear")
    env = {"TERRAMIND_NYC_CATALOG_PROVIDER": "local", "TERRAMIND_NYC_CATALOG_PATH": str(cat.items_path),
           "TERRAMIND_NYC_SIGNER": "none", "TERRAMIND_NYC_CHECKPOINT": str(ck)}
    runner = CliRunner()
    args = ["fetch", str(lat), str(lon), "--when", f"{start}/{end}"]
    res = runner.invoke(cli, args + ["--json", "--geotiff", str(tmp_path / "r.tif"),
                                     "--geojson", str(tmp_path / "r.geojson"),
                                     "--quicklook", str(tmp_path / "q.png")], env=env)
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert abs(sum(d["lulc_fractions"].values()) - 1) < 1e-6
    assert all((tmp_path / f).stat().st_size > 0 for f in ("r.tif", "r.geojson", "q.png"))
    res = runner.invoke(cli, args + ["--riprap"], env=env)
    assert res.exit_code == 0 and json.loads(res.stdout)["ok"] is True
    res = runner.invoke(cli, args + ["--views"], env=env)
    assert res.exit_code == 0 and {k: v["ok"] for k, v in json.loads(res.stdout).items()} == {
        "eo_chip": True, "terramind_lulc": True, "terramind_buildings": True}
    res = runner.invoke(cli, args, env=env)
    assert res.exit_code == 0 and "buildings:" in res.output and "land cover:" in res.output
    res = runner.invoke(cli, ["fetch", "51.5", "-0.12"], env=env)
    assert res.exit_code != 0 and "outside" in res.output


def test_on_disk_chip_cache_survives_the_process_caches(world, tmp_path):
    cat, ck = world
    from terramind_nyc.pipeline import Pipeline, use_pipeline

    lat, lon = cat.points["no_s1"]
    s = cat.settings(checkpoint=str(ck), cache_dir=str(tmp_path / "chips"))
    first = fetch(lat, lon, when=cat.when("no_s1"), settings=s)
    assert list((tmp_path / "chips").glob("chip-*.npz"))
    clear_caches()  # in-memory caches gone; the disk entry must answer without any read

    def no_reads(*a, **kw):
        raise AssertionError("the reader ran although the chip was on disk")

    with use_pipeline(Pipeline(reader=no_reads)), pytest.warns(Warning) as caught:  # the missing S1 is still reported
        again = fetch(lat, lon, when=cat.when("no_s1"), settings=s)
    assert any("S1RTC" in str(w.message) for w in caught)
    assert again.building_density == first.building_density
    assert again.lulc_fractions == first.lulc_fractions
    assert again.provenance.imagery["S2L2A"]["item_ids"] == first.provenance.imagery["S2L2A"]["item_ids"]
    assert again.provenance.modalities_missing == ("S1RTC",)


def test_checkpoint_with_another_s2_offset_rule_is_refused(world, tmp_path):
    from terramind_nyc import CheckpointError
    from terramind_nyc.sensors import S2OffsetRule
    from terramind_nyc.testing.model import tiny_config

    cat, _ = world
    odd = make_tiny_artifact(tmp_path / "odd", config=tiny_config(s2_offset=S2OffsetRule(offset_dn=0)))
    lat, lon = cat.points["clear"]
    with pytest.raises(CheckpointError, match="offset rule"):
        fetch(lat, lon, when=cat.when("clear"), settings=cat.settings(checkpoint=str(odd)))


def test_cli_quiet_silences_warnings_and_conflicts_with_verbose(world):
    import warnings

    cat, ck = world
    lat, lon = cat.points["no_s1"]  # S1 missing: a MissingModalityWarning without -q
    start, end = cat.when("no_s1")
    env = {"TERRAMIND_NYC_CATALOG_PROVIDER": "local", "TERRAMIND_NYC_CATALOG_PATH": str(cat.items_path),
           "TERRAMIND_NYC_SIGNER": "none", "TERRAMIND_NYC_CHECKPOINT": str(ck)}
    args = ["fetch", str(lat), str(lon), "--when", f"{start}/{end}", "--json"]
    runner = CliRunner()
    with warnings.catch_warnings(record=True) as loud_w:
        warnings.simplefilter("always")
        loud = runner.invoke(cli, args, env=env)
    clear_caches()
    with warnings.catch_warnings(record=True) as quiet_w:  # the CLI changes the filters; keep it in here
        warnings.simplefilter("always")
        quiet = runner.invoke(cli, ["-q", *args], env=env)
    assert loud.exit_code == 0 and quiet.exit_code == 0, quiet.output
    assert any(issubclass(w.category, MissingModalityWarning) for w in loud_w)
    assert not any(issubclass(w.category, MissingModalityWarning) for w in quiet_w)
    assert quiet.stderr.strip() == ""
    assert json.loads(quiet.stdout)["provenance"]["modalities_missing"] == ["S1RTC"]
    res = runner.invoke(cli, ["-q", "-v", "info"])
    assert res.exit_code == 2 and "contradict" in res.output


def test_fetch_many_without_sharing_is_exactly_fetch(world):
    """With the real reader and model: max_window_m equal to the window size gives each point its
    own window, so the answers are fetch's to the last digit."""
    cat, ck = world
    lat, lon = cat.points["clear"]
    when = cat.when("clear")
    s = cat.settings(checkpoint=str(ck), cache_enabled=False)
    pts = [(lat, lon), (lat + 0.002, lon - 0.002), (lat, lon)]
    items = fetch_many(pts, when=when, settings=s, progress=False, max_window_m=2240)
    for it, p in zip(items, pts):
        single = fetch(*p, when=when, settings=s)
        assert it.ok and it.result.grid == single.grid
        assert it.result.building_density == single.building_density
        assert it.result.lulc_fractions == single.lulc_fractions


def test_provenance_names_the_precision_that_ran(world, monkeypatch):
    from terramind_nyc.errors import PrecisionFallbackWarning

    cat, ck = world
    lat, lon = cat.points["clear"]
    precision_mod.reset_warnings()
    monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: ())  # a CPU without bf16 units
    with pytest.warns(PrecisionFallbackWarning, match="no bf16 support"):
        r = fetch(lat, lon, when=cat.when("clear"), settings=cat.settings(checkpoint=str(ck), precision="bf16"))
    assert r.provenance.precision == "fp32" and r.to_dict()["provenance"]["precision"] == "fp32"
    monkeypatch.setattr(precision_mod, "cpu_bf16_flags", lambda: ("amx_bf16",))  # one with them
    runtime_mod.clear_runtimes()
    r2 = fetch(lat, lon, when=cat.when("clear"), settings=cat.settings(checkpoint=str(ck), precision="bf16"))
    assert r2.provenance.precision == "bf16" and not r2.cached  # results of each precision are cached apart
    assert r2.provenance.backend == "torch"
    precision_mod.reset_warnings()


def test_riprap_views_through_the_real_reader_and_model(world):
    """The three documents from one real pass: schema, the tiny checkpoint's labels, a missing S1."""
    jsonschema = pytest.importorskip("jsonschema")
    from terramind_nyc.model.config import DEFAULT_HEADS
    from terramind_nyc.riprap import fetch_views, schema, warm

    cat, ck = world
    lat, lon = cat.points["no_s1"]
    s = cat.settings(checkpoint=str(ck))
    assert warm(s)["ok"]
    v = fetch_views(lat, lon, when=cat.when("no_s1"), settings=s)
    jsonschema.validate(v, schema())
    assert all(d["ok"] for d in v.values()), v
    assert v["eo_chip"]["has_s1"] is False and v["eo_chip"]["modalities_missing"] == ["S1RTC"]
    assert v["terramind_lulc"]["class_labels"] == list(DEFAULT_HEADS[0].labels)
    assert v["terramind_lulc"]["polygons_geojson"]["features"]
    assert v["eo_chip"]["s2_scene_id"] and v["terramind_buildings"]["s2_scene_id"] == v["eo_chip"]["s2_scene_id"]
