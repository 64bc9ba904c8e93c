import pytest

from terramind_nyc import InvalidInputError, Settings, SettingsError
from terramind_nyc.settings_doc import profiles_table, settings_table


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
    rows = (settings_table() + "\n" + profiles_table()).splitlines()
    stale = [line for line in rows if line.startswith("| `") and line not in doc]
    assert not stale, "docs/settings.md is out of date: regenerate it with `python -m terramind_nyc.settings_doc`"


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


# ----------------------------------------------------------------------------------------
# Every bad keyword, type and value is a SettingsError (never a TypeError or OverflowError)
# ----------------------------------------------------------------------------------------
def _numeric_fields():
    import dataclasses
    from typing import get_type_hints

    hints = get_type_hints(Settings)
    return [f.name for f in dataclasses.fields(Settings) if hints[f.name] in (int, float, int | None)]


def test_every_numeric_setting_has_a_documented_range():
    from terramind_nyc.settings import LIMITS, POSITIVE

    assert sorted(LIMITS) == sorted(_numeric_fields())
    assert POSITIVE <= set(LIMITS)
    s = Settings()
    for name, (lo, hi) in LIMITS.items():
        v = getattr(s, name)
        assert v is None or lo <= v <= hi, name  # the defaults lie inside


@pytest.mark.parametrize("name", _numeric_fields())
def test_numeric_settings_refuse_every_kind_of_bad_number(name):
    from terramind_nyc.settings import LIMITS, POSITIVE

    lo, hi = LIMITS[name]
    below = lo if name in POSITIVE else lo - 1
    for bad in (10**400, -(10**400), 10**5000, float("nan"), float("inf"), True, "1", [1], below, hi * 2 + 1):
        with pytest.raises(SettingsError, match=f"`{name}` must be a"):
            Settings(**{name: bad})
    if name not in ("size_m",):  # size_m may not be below one pixel (resolution_m)
        assert getattr(Settings(**{name: hi}), name) == hi
    assert Settings(**{name: getattr(Settings(), name)}) == Settings()


def test_values_are_normalised_to_the_declared_types():
    import numpy as np

    s = Settings(recency_days=np.int64(30), size_m=640, max_cloud=np.float32(0.5), domain_lat=[40.5, 40.9],
                 onnx_providers=["CPUExecutionProvider"], tile_batch=4.0)
    assert type(s.recency_days) is int and type(s.size_m) is float and type(s.max_cloud) is float
    assert s.domain_lat == (40.5, 40.9) and s.onnx_providers == ("CPUExecutionProvider",) and type(s.tile_batch) is int
    hash(s)
    assert Settings(**s.to_dict()) == s


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"foo": 1}, "unknown setting(s) `foo`; see docs/settings.md"),
        ({"recency": 3}, "did you mean `recency_days`?"),
        ({"domain_lat": None}, "`domain_lat` must be (min, max)"),
        ({"domain_lat": (40, 10**400)}, "`domain_lat` must be (min, max)"),
        ({"domain_lon": ("a", "b")}, "`domain_lon` must be (min, max)"),
        ({"catalog_provider": "stac-api", "catalog_url": None}, "`catalog_url` must be a non-empty string"),
        ({"catalog_provider": "stac-api", "catalog_url": "file:///x"}, "needs `catalog_url`, an http(s) URL"),
        ({"catalog_provider": "local", "catalog_path": ""}, "`catalog_path` must be a non-empty string or None"),
        ({"scene_prefilter_cloud_pct": "x"}, "`scene_prefilter_cloud_pct` must be a number (percent)"),
        ({"crs": 32618}, "`crs` must be a non-empty string"),
        ({"onnx_providers": ()}, "`onnx_providers` must be a non-empty list"),
        ({"onnx_providers": ["CPUExecutionProvider", 3]}, "`onnx_providers` must be a non-empty list"),
        ({"cache_enabled": 1}, "`cache_enabled` must be True or False"),
        ({"backend": ["torch"]}, "`backend` must be one of"),
        ({"checkpoint_revision": ""}, "`checkpoint_revision` must be a non-empty string or None"),
        ({"size_m": 5.0}, "smaller than one 10 m pixel"),
    ],
)
def test_bad_settings_say_what_the_setting_takes(kw, message):
    import re

    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings(**kw)


def test_wrong_calls_are_settings_errors_not_type_errors():
    with pytest.raises(SettingsError, match="pass settings as keywords"):
        Settings(*["x"] * 60)
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings().replace(foo=1)
    assert Settings.__init__.__name__ == "__init__"  # the dataclass signature is kept for help() and mypy
    import inspect

    assert "recency_days" in inspect.signature(Settings).parameters


def test_paths_may_be_path_objects(tmp_path):
    s = Settings(catalog_provider="local", catalog_path=tmp_path / "items.json", cache_dir=tmp_path,
                 checkpoint=tmp_path)
    assert s.catalog_path == str(tmp_path / "items.json") and s.cache_dir == str(tmp_path)
    assert s.checkpoint == str(tmp_path)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RECENCY_DAYS", "1e5", "expected a whole number"),
        ("RECENCY_DAYS", "9" * 5000, "expected a whole number"),
        ("RECENCY_DAYS", "99999999", "from 1 to 36500"),
        ("MAX_CLOUD", "lots", "expected a number"),
        ("DEADLINE_S", "nan", "above 0 and at most 86400"),
        ("DOMAIN_LAT", "40,b", "comma-separated numbers"),
        ("DOMAIN_LON", "-73", "`domain_lon` must be (min, max)"),
        ("CACHE_ENABLED", "sometimes", "expected true or false"),
        ("PRECISION", "half", "must be one of"),
        ("CATALOG_URL", "", "non-empty string"),
    ],
)
def test_bad_env_values_name_the_variable_and_what_it_takes(variable, value, message):
    import re

    with pytest.raises(SettingsError, match=re.escape(f"TERRAMIND_NYC_{variable}=")) as e:
        Settings.from_env({f"TERRAMIND_NYC_{variable}": value})
    assert message in str(e.value) and len(str(e.value)) < 600


def test_from_env_takes_only_a_mapping_of_strings(monkeypatch):
    with pytest.raises(SettingsError, match="env must be a mapping"):
        Settings.from_env(["TERRAMIND_NYC_RECENCY_DAYS=3"])  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="is a string"):
        Settings.from_env({"TERRAMIND_NYC_RECENCY_DAYS": 3})  # type: ignore[dict-item]
    monkeypatch.setenv("TERRAMIND_NYC_RECENCY_DAYS", "soon")
    assert Settings.from_env(recency_days=9).recency_days == 9  # an override wins over a bad variable
    with pytest.raises(SettingsError, match="TERRAMIND_NYC_RECENCY_DAYS='soon'"):
        Settings.resolve(None)


def test_profile_sits_under_the_environment_and_the_arguments():
    from terramind_nyc.settings import PROFILES

    assert Settings.from_env({}, profile="riprap").deadline_s == PROFILES["riprap"]["deadline_s"] == 60.0
    assert Settings.from_env({}).deadline_s == 120.0  # no profile: the library defaults
    assert Settings.from_env({"TERRAMIND_NYC_PROFILE": "riprap"}).deadline_s == 60.0
    assert Settings.from_env({"TERRAMIND_NYC_PROFILE": " "}).deadline_s == 120.0
    env = {"TERRAMIND_NYC_PROFILE": "riprap", "TERRAMIND_NYC_DEADLINE_S": "45"}
    assert Settings.from_env(env).deadline_s == 45.0
    assert Settings.from_env(env, deadline_s=30).deadline_s == 30.0
    assert Settings.from_env(env, profile="riprap").http_timeout_s == 15.0


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_unknown_profile_is_a_settings_error_naming_the_profiles(how):
    with pytest.raises(SettingsError, match="unknown settings profile 'ripraps'; profiles: riprap"):
        if how == "argument":
            Settings.from_env({}, profile="ripraps")
        else:
            Settings.from_env({"TERRAMIND_NYC_PROFILE": "ripraps"})


def test_every_profile_is_a_valid_settings_object():
    from terramind_nyc.settings import PROFILES

    for name, values in PROFILES.items():
        s = Settings.from_env({}, profile=name)
        assert all(getattr(s, k) == v for k, v in values.items()), name
    assert [ln.split("`")[1] for ln in profiles_table().splitlines()[2:]] == list(PROFILES)
