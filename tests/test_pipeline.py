"""The stages behind the public calls, with their seams (terramind_nyc.pipeline)."""

from __future__ import annotations

import warnings

import pytest
from fakes import ESB, FakeReader, FakeRuntime

from terramind_nyc import Settings, fetch
from terramind_nyc.cache import clear_caches
from terramind_nyc.errors import InvalidInputError, MissingModalityWarning
from terramind_nyc.pipeline import Pipeline, check_size, current_pipeline, use_pipeline


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()
    yield
    clear_caches()


def test_a_pipeline_runs_its_own_reader_and_runtime_without_installing_them():
    reader, runtime = FakeReader(), FakeRuntime()
    p = Pipeline(reader=reader, runtimes=lambda settings, deadline=None: runtime)
    r = p.fetch(*ESB, settings=Settings(cache_enabled=False))
    assert reader.calls == 1 and runtime.calls == 1
    assert r.provenance.backend == "fake" and r.provenance.catalog == "fake"
    assert abs(sum(r.lulc_fractions.values()) - 1.0) < 1e-6
    assert current_pipeline() is not p


def test_use_pipeline_installs_and_restores(tmp_path):
    default = current_pipeline()
    reader, runtime = FakeReader(), FakeRuntime()
    with use_pipeline(Pipeline(reader=reader, runtimes=lambda settings, deadline=None: runtime)) as p:
        assert current_pipeline() is p
        fetch(*ESB, settings=Settings(cache_enabled=False))
        assert reader.calls == 1
        with pytest.raises(RuntimeError), use_pipeline(Pipeline(reader=FakeReader(fail=RuntimeError("x")))):
            raise RuntimeError("inner")
        assert current_pipeline() is p
    assert current_pipeline() is default
    with pytest.raises(InvalidInputError, match="Pipeline"), use_pipeline(object()):  # type: ignore[arg-type]
        pass


def test_chip_cache_on_disk_serves_a_new_process_without_the_reader(tmp_path):
    s = Settings(cache_dir=str(tmp_path))
    reader, runtime = FakeReader(), FakeRuntime()
    first = Pipeline(reader=reader, runtimes=lambda settings, deadline=None: runtime).fetch(*ESB, settings=s)
    clear_caches()  # memory gone, disk stays: like a new process
    again = Pipeline(reader=FakeReader(fail=AssertionError("read again")),
                     runtimes=lambda settings, deadline=None: runtime).fetch(*ESB, settings=s)
    assert reader.calls == 1 and again.building_density == first.building_density
    assert again.provenance.imagery["S2L2A"]["item_ids"] == ["S2A_FAKE"]


@pytest.mark.parametrize("transient", [False, True])
def test_a_chip_missing_a_modality_by_failure_is_not_cached(tmp_path, transient):
    """S1 absent from the catalog is a fact (cached); S1 lost to a failed read may pass: neither the
    chip (memory or disk) nor the result is kept, so the next call reads again."""
    s = Settings(cache_dir=str(tmp_path))
    reader, runtime = FakeReader(missing=("S1RTC",), transient=transient), FakeRuntime()
    p = Pipeline(reader=reader, runtimes=lambda settings, deadline=None: runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingModalityWarning)
        first, again = p.fetch(*ESB, settings=s), p.fetch(*ESB, settings=s)
        assert first.provenance.modalities_missing == again.provenance.modalities_missing == ("S1RTC",)
        assert (reader.calls, again.cached) == ((2, False) if transient else (1, True))
        clear_caches()  # a new process: only the disk cache is left
        p.fetch(*ESB, settings=s)
    assert reader.calls == (3 if transient else 1)


def test_check_size_grows_the_window_to_fit_the_radius():
    s = Settings()
    assert check_size(None, None, s) == (2240.0, None)
    assert check_size(None, 1500, s) == (3000.0, 1500.0)
    with pytest.raises(InvalidInputError, match="does not fit"):
        check_size(1000, 600, s)
    with pytest.raises(InvalidInputError, match="20 km"):
        check_size(30_000, None, s)
