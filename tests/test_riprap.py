"""The Riprap views (terramind_nyc.riprap) against their written contract and Riprap's own reading of them.

The contract is the JSON schema shipped in the package; the client's reading is re-implemented
from its code (msradam/riprap at 6a387fb): the UI's keyword buckets (``cardAdapter.ts:262-268``)
and the number check (``reconcile.py:322-382``: a quoted number must appear verbatim in a document).
Runs the real pipeline over the fake reader and runtime of ``tests/fakes.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time

import jsonschema
import numpy as np
import pytest
from fakes import ESB, FAKE_INFO, FakeReader, FakeRuntime, fakes  # noqa: F401 - fakes is a fixture

from terramind_nyc import Settings, fetch
from terramind_nyc import errors as errors_mod
from terramind_nyc.errors import OutsideDomainError, TerramindNYCError
from terramind_nyc.model.config import DEFAULT_HEADS
from terramind_nyc.pipeline import Pipeline, use_pipeline
from terramind_nyc.riprap import (
    VIEWS,
    buildings_view,
    chip_view,
    failure,
    fetch_riprap,
    fetch_views,
    lulc_view,
    schema,
    views,
    warm,
)

VALIDATOR = jsonschema.Draft202012Validator(schema())


def _valid(doc: dict) -> dict:
    """``doc`` (the three views), after checking it against the schema and that it is strict JSON."""
    json.dumps(doc, allow_nan=False)
    errors = sorted(VALIDATOR.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    return doc


def _one(name: str, view: dict) -> dict:
    """One view, checked against its part of the schema."""
    other = {k: {"ok": False, "err": "X: unused", "error_type": "X", "elapsed_s": 0.0} for k in VIEWS}
    return _valid({**other, name: view})[name]


# ----------------------------------------------------------------------------------------
# The client's reading, from its code
# ----------------------------------------------------------------------------------------
def ui_bucket(label: str) -> str:
    """Riprap's UI bucket for a land-cover label (web/sveltekit/src/lib/client/cardAdapter.ts:262-268)."""
    lk = label.lower()
    if "urban" in lk or "built" in lk or "impervious" in lk:
        return "urban"
    if "water" in lk:
        return "water"
    if any(k in lk for k in ("tree", "vegetation", "crop", "grass")):
        return "vegetation"
    if any(k in lk for k in ("bare", "barren", "soil")):
        return "barren"
    if "wet" in lk or "marsh" in lk:
        return "wetland"
    return "barren (catch-all)"


#: The bucket each model class belongs in, by meaning (ESA WorldCover-derived classes).
MEANT = {"water": "water", "developed": "urban", "forest": "vegetation", "herbaceous": "vegetation",
         "other": "barren"}


def _numbers(obj, skip=("polygons_geojson",)) -> list[str]:
    """Every number in a JSON document as Python prints it (how Riprap's documents quote it)."""
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in skip:
                out += _numbers(v, skip)
    elif isinstance(obj, list):
        for v in obj:
            out += _numbers(v, skip)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append(repr(obj))
    return out


# ----------------------------------------------------------------------------------------
# Success
# ----------------------------------------------------------------------------------------
def test_fetch_views_is_one_pass_and_matches_the_schema(fakes):
    reader, runtime = fakes
    v = _valid(fetch_views(*ESB))
    assert set(v) == set(VIEWS) and all(d["ok"] for d in v.values())
    assert runtime.calls == 1 and reader.calls == 1  # one fetch, one model pass for the three documents
    lulc, bld, chip = v["terramind_lulc"], v["terramind_buildings"], v["eo_chip"]
    assert lulc["adapter"].startswith("lulc head of fake-two-head") and bld["adapter"].startswith("buildings head of")
    assert lulc["repo"] == bld["repo"] == "fake"
    assert chip["s2_scene_id"] == chip["s2_meta"]["scene_id"] == lulc["s2_scene_id"] == "S2A_FAKE"
    assert chip["s2_meta"]["datetime"][:10] == "2026-11-01"  # what step_eo_chip traces as scene_date
    assert chip["s2_meta"]["cloud_cover"] == 1.0  # the chip-level cloud share, percent
    assert chip["has_s1"] and chip["has_dem"] and chip["modalities_missing"] == []
    assert chip["bounds_4326"][0] < ESB[1] < chip["bounds_4326"][2]
    assert chip["bounds_4326"][1] < ESB[0] < chip["bounds_4326"][3]


def test_each_view_has_its_own_labels_from_the_config(fakes):
    v = fetch_views(*ESB)
    lulc_head, bld_head = DEFAULT_HEADS
    assert v["terramind_buildings"]["class_labels"] == list(bld_head.labels)
    assert v["terramind_lulc"]["class_labels"] == list(lulc_head.labels)
    assert v["terramind_lulc"]["class_names"] == list(lulc_head.classes)
    assert v["terramind_buildings"]["class_labels"] == ["Background", "Building footprint"]
    assert v["terramind_buildings"]["class_labels"] != v["terramind_lulc"]["class_labels"]
    assert set(v["terramind_lulc"]["class_fractions"]) <= set(lulc_head.labels)
    assert v["terramind_lulc"]["dominant_class"] in lulc_head.labels


def _views_with_heads(heads: dict) -> dict:
    """The views from a runtime whose config has these ``heads`` (classes, labels, colours)."""
    info = dataclasses.replace(FAKE_INFO, heads=heads)

    class Relabelled(FakeRuntime):
        def model_info(self):
            return info

    with use_pipeline(Pipeline(reader=FakeReader(), runtimes=lambda s, deadline=None: Relabelled())):
        return _valid(fetch_views(*ESB, settings=Settings(cache_enabled=False)))


def test_labels_come_from_the_checkpoint_not_from_a_list_here():
    heads = {"lulc": {**FAKE_INFO.heads["lulc"], "labels": ("Eau", "Bâti", "Forêt", "Herbe", "Autre"),
                      "colors": ("#000001", "#000002", "#000003", "#000004", "#000005")},
             "buildings": {**FAKE_INFO.heads["buildings"], "labels": ("Fond", "Bâtiment"),
                           "colors": ("#000000", "#123456")}}
    v = _views_with_heads(heads)
    assert v["terramind_lulc"]["class_labels"] == ["Eau", "Bâti", "Forêt", "Herbe", "Autre"]
    assert set(v["terramind_lulc"]["class_fractions"]) <= {"Eau", "Bâti", "Forêt", "Herbe", "Autre"}
    assert v["terramind_buildings"]["class_labels"] == ["Fond", "Bâtiment"]
    assert v["terramind_buildings"]["fill_color"] == "#123456"
    colours = {f["properties"]["class_idx"]: f["properties"]["fill_color"]
               for f in v["terramind_lulc"]["polygons_geojson"]["features"]}
    assert colours and all(c == heads["lulc"]["colors"][i] for i, c in colours.items())


def test_a_config_without_labels_shows_the_class_names():
    v = _views_with_heads({k: {kk: vv for kk, vv in h.items() if kk != "labels"} for k, h in FAKE_INFO.heads.items()})
    assert v["terramind_lulc"]["class_labels"] == list(FAKE_INFO.heads["lulc"]["classes"])


def test_default_labels_carry_the_ui_keywords_of_their_meaning():
    lulc = DEFAULT_HEADS[0]
    for name, label in zip(lulc.classes, lulc.labels):
        assert ui_bucket(label) == MEANT[name], (name, label)
    # the class names alone miss them (the defect the labels fix: herbaceous showed as "barren 100")
    assert ui_bucket("herbaceous") == "barren (catch-all)" and ui_bucket("developed") == "barren (catch-all)"


class OneClass(FakeRuntime):
    """Land cover all class ``k`` with certainty (a chip of one cover)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def predict(self, arrays, masks=None):
        out = super().predict(arrays, masks)
        p = np.zeros_like(out.probabilities["lulc"])
        p[self.k] = 1.0
        out.probabilities["lulc"] = p
        return out


def test_zero_classes_are_dropped_and_a_grass_chip_reads_as_vegetation():
    with use_pipeline(Pipeline(reader=FakeReader(), runtimes=lambda s, deadline=None: OneClass(3))):
        v = _valid(fetch_views(*ESB, settings=Settings(cache_enabled=False)))["terramind_lulc"]
    assert v["class_fractions"] == {"Grass / crop": 100.0}
    assert v["dominant_class"] == "Grass / crop" and v["dominant_pct"] == 100.0
    assert len(v["class_labels"]) == 5  # all labels still listed, in model order
    assert {ui_bucket(k) for k in v["class_fractions"]} == {"vegetation"}
    assert {f["properties"]["class_idx"] for f in v["polygons_geojson"]["features"]} == {3}


def test_polygons_are_per_layer_with_the_config_colours(fakes):
    v = _valid(fetch_views(*ESB))
    lulc_head, bld_head = DEFAULT_HEADS
    lf = v["terramind_lulc"]["polygons_geojson"]["features"]
    bf = v["terramind_buildings"]["polygons_geojson"]["features"]
    assert lf and bf
    assert {f["properties"]["layer"] for f in lf} == {"lulc"}
    assert {f["properties"]["layer"] for f in bf} == {"buildings"}
    for f in lf:
        i = f["properties"]["class_idx"]
        assert f["properties"]["fill_color"] == lulc_head.colors[i]
        assert f["properties"]["class_label"] == lulc_head.labels[i]
    assert {f["properties"]["fill_color"] for f in bf} == {bld_head.colors[1]} == {v["terramind_buildings"]["fill_color"]}
    assert {f["properties"]["class_label"] for f in bf} == {"Building footprint"}
    # only classes present in the fractions have polygons
    present = {lulc_head.labels.index(k) for k in v["terramind_lulc"]["class_fractions"]}
    assert {f["properties"]["class_idx"] for f in lf} <= present
    no_polys = _valid(fetch_views(*ESB, polygons=False))
    assert "polygons_geojson" not in no_polys["terramind_lulc"] and "polygons_geojson" not in no_polys["eo_chip"]


@pytest.mark.parametrize("point", [ESB, (40.7851, -73.9683), (40.6100, -73.8400), (40.5750, -73.9700)])
@pytest.mark.parametrize("radius_m", [None, 137.0])
def test_every_number_in_the_views_is_a_decimal_of_to_dict(fakes, point, radius_m):
    """Riprap keeps a sentence only when each number it quotes appears verbatim in a document; a
    figure quoted from ``to_dict()`` (or a report built on it) must therefore be the views' string."""
    s = Settings(cache_enabled=False)
    r = fetch(*point, radius_m=radius_m, settings=s)
    v = _valid(views(r))
    pool = set(_numbers(r.to_dict()))
    for name, doc in v.items():
        missing = [n for n in _numbers(doc) if n not in pool]
        assert not missing, f"{name}: {missing} are not in to_dict()"
    lulc = v["terramind_lulc"]
    for pct in lulc["class_fractions"].values():  # 2 decimals, as printed by reconcile.py
        assert round(pct, 2) == pct and f"{pct}" in json.dumps(r.to_dict())
        assert 0 < pct <= 100
    assert math.isclose(sum(lulc["class_fractions"].values()), 100.0, abs_tol=0.05)
    assert v["terramind_buildings"]["pct_buildings"] == r.to_dict()["percent"]["buildings"]


def test_missing_modalities_are_reported_and_not_warned(fakes, recwarn):
    fakes.swap_reader(FakeReader(missing=("S1RTC",)))
    v = _valid(fetch_views(*ESB, settings=Settings(cache_enabled=False)))
    assert v["eo_chip"]["has_s1"] is False and v["eo_chip"]["has_dem"] is True
    assert v["eo_chip"]["modalities_missing"] == ["S1RTC"] == v["terramind_lulc"]["modalities_missing"]
    assert not [w for w in recwarn if issubclass(w.category, errors_mod.MissingModalityWarning)]


def test_the_view_functions_take_a_result_and_never_raise(fakes):
    r = fetch(*ESB)
    assert _one("eo_chip", chip_view(r))["ok"] and _one("terramind_lulc", lulc_view(r))["ok"]
    assert _one("terramind_buildings", buildings_view(r, polygons=False))["ok"]
    for bad in (None, {"ok": True}, r.to_dict(), "result"):
        for name, fn in zip(VIEWS, (chip_view, lulc_view, buildings_view)):
            d = _one(name, fn(bad))
            assert d["ok"] is False and d["error_type"] == "InvalidInputError" and "Result" in d["err"]
    bare = dataclasses.replace(r, probabilities={})  # no rasters: the document goes on without its polygons
    assert _one("terramind_lulc", lulc_view(bare))["polygons_geojson"] is None


# ----------------------------------------------------------------------------------------
# Failure: every error class the library has, and the bugs it does not expect
# ----------------------------------------------------------------------------------------
LIBRARY_ERRORS = [getattr(errors_mod, n) for n in errors_mod.__all__ if isinstance(getattr(errors_mod, n), type)
                  and issubclass(getattr(errors_mod, n), TerramindNYCError)]
UNEXPECTED = [KeyError("boom"), RuntimeError("torch says no"), ZeroDivisionError(), MemoryError(), OSError(5, "EIO")]


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


@pytest.mark.parametrize("exc", [cls(f"{cls.__name__} from the test") for cls in LIBRARY_ERRORS] + UNEXPECTED
                         + [Unprintable()], ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("where", ["reader", "load", "predict"])
def test_no_error_escapes_and_each_is_a_failure_dict(exc, where):
    reader, runtime = FakeReader(), FakeRuntime()
    if where == "reader":
        reader.fail = exc

    def runtimes(settings, deadline=None):
        if where == "load":
            raise exc
        return runtime

    if where == "predict":
        def predict(arrays, masks=None):
            raise exc
        runtime.predict = predict  # type: ignore[method-assign]
    with use_pipeline(Pipeline(reader=reader, runtimes=runtimes)):
        v = _valid(fetch_views(*ESB, settings=Settings(cache_enabled=False)))
        one = fetch_riprap(*ESB, settings=Settings(cache_enabled=False))
        w = warm(Settings(cache_enabled=False))
    key = "skipped" if isinstance(exc, OutsideDomainError) else "err"
    for d in (*v.values(), one):
        assert d["ok"] is False and d["error_type"] == type(exc).__name__ and key in d
        assert d == v["eo_chip"] or d is one
        if key == "err":
            assert d["err"].startswith(f"{type(exc).__name__}: ")
    assert v["eo_chip"] is not v["terramind_lulc"]  # separate dicts: a client may edit one
    assert w["ok"] is (where != "load")


@pytest.mark.parametrize("lat,lon,kw,key,kind", [
    (51.5, -0.12, {}, "skipped", "OutsideDomainError"),
    (float("nan"), -73.98, {}, "err", "InvalidLocationError"),
    ("forty", -73.98, {}, "err", "InvalidLocationError"),
    (*ESB, {"size_m": -5}, "err", "InvalidInputError"),
    (*ESB, {"when": "soon"}, "err", "InvalidInputError"),
    (*ESB, {"settings": {"deadline_s": 5}}, "err", "InvalidInputError"),
    (*ESB, {"colour": "red"}, "err", "TypeError"),
])
def test_bad_arguments_are_failure_dicts(fakes, lat, lon, kw, key, kind):
    v = _valid(fetch_views(lat, lon, **kw))
    assert {d["error_type"] for d in v.values()} == {kind} and all(key in d for d in v.values())
    assert v["eo_chip"][key] and v["eo_chip"]["elapsed_s"] < 5


def test_failure_dict_shape():
    d = failure(OutsideDomainError("outside"), 0.12345)
    assert d == {"ok": False, "skipped": "outside", "error_type": "OutsideDomainError", "elapsed_s": 0.123}
    d = failure(errors_mod.CatalogError("503"), 1)
    assert d == {"ok": False, "err": "CatalogError: 503", "error_type": "CatalogError", "elapsed_s": 1.0}


# ----------------------------------------------------------------------------------------
# The budget: the riprap profile, warm()
# ----------------------------------------------------------------------------------------
class RecordingSource:
    """A runtime source that records the deadline each call gets."""

    def __init__(self, runtime, delay_s: float = 0.0) -> None:
        self.runtime, self.delay_s, self.deadlines, self.loaded = runtime, delay_s, [], threading.Event()

    def __call__(self, settings, deadline=None):
        self.deadlines.append(None if deadline is None else deadline.seconds)
        if not self.loaded.is_set():
            if deadline is not None and self.delay_s > deadline.remaining():
                time.sleep(deadline.remaining())
                raise deadline.error("loading the model", "the test")
            time.sleep(self.delay_s)
            self.loaded.set()
        return self.runtime


def test_the_riprap_profile_is_the_default_and_the_environment_still_wins(monkeypatch):
    src = RecordingSource(FakeRuntime())
    with use_pipeline(Pipeline(reader=FakeReader(), runtimes=src)):
        assert fetch_views(*ESB)["eo_chip"]["ok"]
        monkeypatch.setenv("TERRAMIND_NYC_DEADLINE_S", "42")
        fetch_views(*ESB, settings=None)
        fetch_views(*ESB, settings=Settings(deadline_s=7, cache_enabled=False))
        fetch(*ESB)  # fetch itself keeps the library defaults (and the environment)
    assert src.deadlines == [60.0, 42.0, 7.0, 42.0]


def test_the_deadline_covers_a_first_load_and_warm_moves_it_to_start_up():
    src = RecordingSource(FakeRuntime(), delay_s=1.5)
    s = Settings(deadline_s=0.5, cache_enabled=False)
    with use_pipeline(Pipeline(reader=FakeReader(), runtimes=src)):
        t0 = time.perf_counter()
        v = _valid(fetch_views(*ESB, settings=s))
        assert time.perf_counter() - t0 < 1.2
        assert v["eo_chip"]["error_type"] == "DeadlineExceededError"
        w = warm(s)  # no deadline: waits for the load
        assert w["ok"] and w["elapsed_s"] >= 1.0 and w["model"] == "fake-two-head@0 (abababababab)"
        t0 = time.perf_counter()
        assert fetch_views(*ESB, settings=s)["terramind_lulc"]["ok"]
        assert time.perf_counter() - t0 < 0.5
    assert src.deadlines[1] is None  # warm() waited without a deadline


def test_warm_with_a_timeout_returns_and_the_load_goes_on():
    src = RecordingSource(FakeRuntime(), delay_s=0.8)
    with use_pipeline(Pipeline(reader=FakeReader(), runtimes=src)):
        t0 = time.perf_counter()
        w = warm(Settings(cache_enabled=False), timeout_s=0.2)
        assert time.perf_counter() - t0 < 0.6
        assert w["ok"] is False and w["error_type"] == "DeadlineExceededError" and src.deadlines == [0.2]
        for bad in (0, -1, float("nan"), "soon"):
            assert warm(timeout_s=bad)["error_type"] == "InvalidInputError"


class HoleReader(FakeReader):
    """A chip whose centre (the point and 100 m around it) has no valid S2 pixel."""

    def __call__(self, grid, start, end, settings, deadline):
        chip = super().__call__(grid, start, end, settings, deadline)
        r0, c0 = grid.height // 2, grid.width // 2
        for m in chip.masks.values():
            m[r0 - 12:r0 + 12, c0 - 12:c0 + 12] = False
        return chip


def test_a_summary_area_without_valid_pixels_has_no_figures_to_quote():
    with use_pipeline(Pipeline(reader=HoleReader(), runtimes=lambda s, deadline=None: FakeRuntime())):
        v = _valid(fetch_views(*ESB, radius_m=50.0, settings=Settings(cache_enabled=False)))
        whole = _valid(fetch_views(*ESB, settings=Settings(cache_enabled=False)))
    assert v["eo_chip"]["ok"] is True  # the chip was read
    for k in ("terramind_lulc", "terramind_buildings"):
        assert v[k]["ok"] is False and v[k]["error_type"] == "ChipNodataError" and "radius_m" in v[k]["err"]
        assert whole[k]["ok"] is True and whole[k]["nodata_pct"] > 0
