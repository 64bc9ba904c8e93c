"""cache.py: stable keys, hit/miss counting, single flight, byte-bounded LRU, TTL, disk chips."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from terramind_nyc.cache import Caches, clear_caches, get_caches, stable_key
from terramind_nyc.settings import Settings


def test_stable_key_depends_on_content_not_dict_order() -> None:
    assert stable_key("a", {"x": 1, "y": 2}) == stable_key("a", {"y": 2, "x": 1})
    assert stable_key("a", 1) != stable_key("a", 2)
    assert len(stable_key("a")) == 32 and all(c in "0123456789abcdef" for c in stable_key("a"))


def test_hits_and_misses_are_counted_once_per_lookup() -> None:
    c = Caches(Settings())
    assert c.stac.get("k") is None  # a plain get that misses is a miss
    c.stac.put("k", ["item"])
    assert c.stac.get("k") == ["item"]
    assert c.results.get_or_compute("r", lambda: "v") == "v"  # peek + compute: one miss
    assert c.results.get_or_compute("r", lambda: "other") == "v"
    assert c.stats() == {"stac": {"entries": 1, "hits": 1, "misses": 1},
                         "chips": {"entries": 0, "hits": 0, "misses": 0},
                         "results": {"entries": 1, "hits": 1, "misses": 1}}
    c.clear()
    assert c.stats()["stac"] == {"entries": 0, "hits": 0, "misses": 0}


def test_concurrent_callers_of_one_key_compute_once() -> None:
    c = Caches(Settings())
    calls = []
    gate = threading.Event()

    def compute() -> str:
        calls.append(1)
        gate.wait(5)
        return "value"

    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.append(c.results.get_or_compute("k", compute)))
               for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(10)
    assert out == ["value"] * 8 and len(calls) == 1


def test_chip_cache_is_bounded_by_bytes() -> None:
    c = Caches(Settings(chip_cache_bytes=3000))
    for i in range(5):
        c.chips.put(i, np.zeros(1000, np.uint8))
    assert len(c.chips) == 3 and c.chips.get(0) is None and c.chips.get(4) is not None
    c.chips.put("huge", np.zeros(10_000, np.uint8))  # larger than the cache: not kept, no error
    assert c.chips.get("huge") is None


def test_results_expire_after_their_ttl() -> None:
    c = Caches(Settings(result_cache_ttl_s=0.2))
    c.results.put("k", "v")
    assert c.results.get("k") == "v"
    time.sleep(0.35)
    assert c.results.get("k") is None


def test_disabled_caching_gives_no_caches_and_clear_empties_all() -> None:
    assert get_caches(Settings(cache_enabled=False)) is None
    s = Settings()
    caches = get_caches(s)
    assert caches is not None and get_caches(s) is caches
    caches.results.put("k", "v")
    clear_caches()
    assert caches.results.get("k") is None


def test_disk_chips_round_trip_without_pickle(tmp_path: Path) -> None:
    c = Caches(Settings(cache_dir=str(tmp_path)))
    arrays = {"S2L2A": np.arange(12, dtype=np.float32).reshape(3, 2, 2), "mask": np.ones((2, 2), bool)}
    c.write_disk("abc", arrays, {"provider": "local"})
    got = c.read_disk("abc")
    assert got is not None
    np.testing.assert_array_equal(got[0]["S2L2A"], arrays["S2L2A"])
    assert got[1] == {"provider": "local"}
    assert c.read_disk("missing") is None
    (tmp_path / "chip-abc.npz").write_bytes(b"not an npz")
    assert c.read_disk("abc") is None  # unreadable entry: ignored with a log line, never raised
    assert Caches(Settings()).read_disk("abc") is None  # no cache_dir: nothing on disk



def test_disk_chip_write_failing_mid_way_keeps_the_old_entry(tmp_path: Path, monkeypatch) -> None:
    c = Caches(Settings(cache_dir=str(tmp_path)))
    c.write_disk("k", {"a": np.zeros(3)}, {"v": 1})
    old = (tmp_path / "chip-k.npz").read_bytes()

    def broken(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(KeyboardInterrupt):
        c.write_disk("k", {"a": np.ones(3)}, {"v": 2})
    assert (tmp_path / "chip-k.npz").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chip-k.json", "chip-k.npz"]  # no temp file left


def test_disk_chip_entries_get_the_normal_file_mode(tmp_path: Path) -> None:
    from terramind_nyc.atomic import new_file_mode

    Caches(Settings(cache_dir=str(tmp_path))).write_disk("k", {"a": np.zeros(3)}, {})
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == new_file_mode()


def test_unusable_disk_entries_are_misses_and_a_file_as_cache_dir_only_warns(tmp_path: Path, caplog) -> None:
    c = Caches(Settings(cache_dir=str(tmp_path)))
    c.write_disk("k", {"a": np.zeros(3)}, {})
    good = (tmp_path / "chip-k.npz").read_bytes()
    (tmp_path / "chip-k.npz").write_bytes(good[: len(good) // 2])  # a truncated zip
    assert c.read_disk("k") is None
    (tmp_path / "chip-k.npz").write_bytes(good)
    (tmp_path / "chip-k.json").write_text("[1, 2]")  # metadata that is not an object
    assert c.read_disk("k") is None
    (tmp_path / "chip-k.json").write_text("[" * 100_000 + "]" * 100_000)
    assert c.read_disk("k") is None
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    Caches(Settings(cache_dir=str(blocker))).write_disk("k", {"a": np.zeros(3)}, {})  # logged, not raised
    assert "not writing the on-disk chip cache" in caplog.text
