import pytest

from terramind_nyc import InvalidInputError, Settings, SettingsError
from terramind_nyc.settings import settings_table


def test_defaults_are_valid():
    s = Settings()
    assert s.crs == "EPSG:32618"
    assert s.recency_days == 120
    assert s.backend == "auto"


def test_env_then_arguments_precedence():
    env = {
        "TERRAMIND_NYC_RECENCY_DAYS": "30",
        "TERRAMIND_NYC_MAX_CLOUD": "0.05",
        "TERRAMIND_NYC_DOMAIN_CHECK": "false",
        "TERRAMIND_NYC_DOMAIN_LAT": "40.0, 41.0",
        "TERRAMIND_NYC_THREADS": "2",
        "TERRAMIND_NYC_CHECKPOINT_REVISION": "none",
        "TERRAMIND_NYC_ONNX_PROVIDERS": "CPUExecutionProvider",
    }
    s = Settings.from_env(env)
    assert s.recency_days == 30 and s.max_cloud == 0.05 and s.domain_check is False
    assert s.domain_lat == (40.0, 41.0) and s.threads == 2 and s.checkpoint_revision is None
    assert s.onnx_providers == ("CPUExecutionProvider",)
    s2 = Settings.from_env(env, recency_days=60)
    assert s2.recency_days == 60


@pytest.mark.parametrize(
    "kw",
    [
        {"max_cloud": 1.5},
        {"max_nodata": -0.1},
        {"recency_days": 0},
        {"backend": "tensorflow"},
        {"device": "tpu"},
        {"threads": 0},
        {"domain_lat": (41.0, 40.0)},
        {"catalog_provider": "local"},
        {"deadline_s": float("nan")},
        {"checkpoint": ""},
    ],
)
def test_invalid_values_raise(kw):
    with pytest.raises(SettingsError):
        Settings(**kw)
    with pytest.raises(ValueError):  # also a ValueError
        Settings(**kw)


def test_bad_env_value_names_the_variable():
    with pytest.raises(SettingsError, match="TERRAMIND_NYC_RECENCY_DAYS"):
        Settings.from_env({"TERRAMIND_NYC_RECENCY_DAYS": "soon"})


def test_unknown_override_rejected():
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.from_env({}, recency=3)
    with pytest.raises(SettingsError):
        Settings().replace(nope=1)


def test_replace_validates_and_to_dict_is_plain():
    s = Settings().replace(max_cloud=0.3)
    assert s.max_cloud == 0.3
    with pytest.raises(SettingsError):
        s.replace(max_cloud=2)
    d = s.to_dict()
    assert isinstance(d["domain_lat"], list)


def test_docs_table_lists_every_setting():
    table = settings_table()
    for name in Settings.__dataclass_fields__:
        assert f"`{name}`" in table


def test_docs_settings_md_is_current():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "settings.md").read_text()
    stale = [line for line in settings_table().splitlines() if line.startswith("| `") and line not in doc]
    assert not stale, "docs/settings.md is out of date: regenerate it with `python -m terramind_nyc.settings`"


def test_resolve_is_the_one_default_path(monkeypatch):
    monkeypatch.setenv("TERRAMIND_NYC_RECENCY_DAYS", "33")
    assert Settings.resolve(None).recency_days == 33  # None -> from_env()
    s = Settings(recency_days=5)
    assert Settings.resolve(s) is s
    with pytest.raises(InvalidInputError, match="Settings"):
        Settings.resolve({"recency_days": 5})  # type: ignore[arg-type]


def test_every_field_declares_its_cache_key_scopes():
    import dataclasses

    from terramind_nyc.settings import KEY_SCOPES

    for f in dataclasses.fields(Settings):
        assert "scopes" in f.metadata and set(f.metadata["scopes"]) <= set(KEY_SCOPES), f.name


@pytest.mark.parametrize("scope", ["catalog", "chip", "caches", "model", "runtime"])
def test_key_changes_exactly_with_the_fields_of_its_scope(scope):
    import dataclasses

    base = Settings()
    key = base.key(scope)
    assert hash(key) == hash(Settings().key(scope))
    changes = {"catalog_url": "http://127.0.0.1:1/stac", "s2_collection": "s2-other", "max_cloud": 0.5,
               "crs": "EPSG:32617", "chip_cache_bytes": 1024, "cache_dir": "/tmp/x", "checkpoint": "a/b",
               "precision": "fp32", "tile_batch": 2, "recency_days": 7, "deadline_s": 5.0, "signer": "none"}
    for name, value in changes.items():
        field = next(f for f in dataclasses.fields(Settings) if f.name == name)
        changed = base.replace(**{name: value}).key(scope) != key
        assert changed == (scope in field.metadata["scopes"]), (scope, name)


def test_key_scopes_hold_exactly_the_fields_of_0_1_0():
    """The hand-written key lists of 0.1.0, pinned: a field leaving a scope serves stale answers."""
    s = Settings()
    assert [k for k, _ in s.key("chip")] == [
        "catalog_provider", "catalog_url", "catalog_path", "s2_collection", "s1_collection", "dem_collection",
        "scene_prefilter_cloud_pct", "max_cloud", "max_nodata", "min_valid_fraction", "scene_candidates",
        "s1_window_days", "resolution_m", "crs"]
    assert sorted(k for k, _ in s.key("model")) == sorted(
        ["checkpoint", "checkpoint_revision", "backend", "device", "precision", "threads", "onnx_providers"])
    assert sorted(k for k, _ in s.key("runtime")) == sorted(
        [k for k, _ in s.key("model")] + ["tile_overlap_px", "tile_batch"])
    assert sorted(k for k, _ in s.key("caches")) == sorted(
        ["stac_cache_ttl_s", "chip_cache_bytes", "result_cache_ttl_s", "result_cache_size", "cache_dir"])
    assert sorted(k for k, _ in s.key("catalog")) == sorted(
        ["catalog_provider", "catalog_url", "catalog_path", "signer", "http_timeout_s", "http_retries",
         "http_backoff_s", "cache_enabled", "stac_cache_ttl_s"])


def test_key_scopes_hold_what_they_promise():
    s = Settings()
    chip = dict(s.key("chip"))
    assert {"catalog_provider", "s2_collection", "max_cloud", "resolution_m", "crs"} <= set(chip)
    assert "deadline_s" not in chip and "checkpoint" not in chip
    assert set(dict(s.key("model"))) < set(dict(s.key("runtime")))
    with pytest.raises(SettingsError, match="scope"):
        s.key("imagery")
