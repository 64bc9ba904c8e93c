"""imagery/local_catalog.py: an ItemCollection file or a folder of items, searched in-process."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pystac
import pytest
from imagery.helpers import window

from terramind_nyc.deadline import Deadline
from terramind_nyc.errors import CatalogError, InvalidInputError
from terramind_nyc.grid import chip_grid
from terramind_nyc.imagery.catalog import get_catalog
from terramind_nyc.settings import Settings


def test_local_search_filters_and_sorts(fixture_catalog: Any, local_settings: Settings) -> None:
    cat = fixture_catalog.catalog
    c = get_catalog(local_settings)
    g = cat.grid("all_cloudy")
    start, end = window(cat, "all_cloudy")
    exp = cat.expected["all_cloudy"]
    items = c.search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=start, end=end, deadline=Deadline(5))
    assert [i.id for i in items] == exp["s2_candidates"]  # newest first, this chip's items only
    assert all(isinstance(i, pystac.Item) for i in items)
    kept = c.search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=start, end=end, deadline=Deadline(5),
                    cloud_lt=80)
    assert [i.id for i in kept] == [i for i in exp["s2_candidates"] if i not in exp["prefiltered_ids"]]
    narrow = c.search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=datetime(2024, 6, 1, tzinfo=UTC),
                      end=datetime(2024, 6, 30, 23, 59, tzinfo=UTC), deadline=Deadline(5))
    assert [i.id for i in narrow] == [i for i in exp["s2_candidates"] if "202406" in i]
    assert c.search("sentinel-2-l2a", bbox_4326=(0.0, 0.0, 1.0, 1.0), start=start, end=end, deadline=Deadline(5)) == []
    dem = c.search("cop-dem-glo-30", bbox_4326=g.bounds_4326, start=None, end=None, deadline=Deadline(5))
    assert [i.id for i in dem] == exp["dem_ids"]
    with pytest.raises(InvalidInputError):
        c.search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=start, end=None, deadline=Deadline(5))


def test_local_folder_of_items_and_relative_hrefs(fixture_catalog: Any, tmp_path: Path) -> None:
    cat = fixture_catalog.catalog
    folder = tmp_path / "items"
    for it in cat.items():
        sub = folder / it["collection"]
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{it['id']}.json").write_text(json.dumps(it))
    (folder / "notes.json").write_text(json.dumps({"type": "Collection", "id": "x"}))  # not an item: ignored
    s = Settings(catalog_provider="local", catalog_path=str(folder), signer="none", cache_enabled=False)
    g = cat.grid("clear")
    start, end = window(cat, "clear")
    got = get_catalog(s).search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=start, end=end,
                                deadline=Deadline(5))
    assert [i.id for i in got] == [i for i in cat.expected["clear"]["s2_candidates"]
                                   if cat.item_facts[i]["datetime"] >= "2024-05"]
    # an item file with relative hrefs resolves them against its own folder
    it = dict(cat.item(cat.expected["clear"]["s2_ids"][0]))
    it["assets"] = {"B04": {**it["assets"]["B04"], "href": "./B04.tif"}}
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "item.json").write_text(json.dumps(it))
    s1 = s.replace(catalog_path=str(tmp_path / "one" / "item.json"))
    (one,) = get_catalog(s1).search("sentinel-2-l2a", bbox_4326=g.bounds_4326, start=start, end=end,
                                    deadline=Deadline(5))
    assert Path(one.assets["B04"].href) == (tmp_path / "one" / "B04.tif").resolve()


def test_local_catalog_errors(tmp_path: Path) -> None:
    g = chip_grid(40.7484, -73.9857)
    with pytest.raises(CatalogError, match="does not exist"):
        get_catalog(Settings(catalog_provider="local", catalog_path=str(tmp_path / "nope.json"))).search(
            "sentinel-2-l2a", bbox_4326=g.bounds_4326, start=None, end=None, deadline=Deadline(5))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CatalogError, match="not readable JSON"):
        get_catalog(Settings(catalog_provider="local", catalog_path=str(tmp_path / "bad.json"))).search(
            "sentinel-2-l2a", bbox_4326=g.bounds_4326, start=None, end=None, deadline=Deadline(5))
