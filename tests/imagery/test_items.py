"""imagery/items.py: item accessors."""

from __future__ import annotations

from terramind_nyc.imagery.items import item_crs


def test_proj_epsg_and_proj_code_are_both_read() -> None:
    a = {"properties": {"proj:epsg": 32618}, "assets": {"B04": {}}}
    b = {"properties": {"proj:code": "EPSG:32618"}, "assets": {"B04": {}}}
    c = {"properties": {"proj:epsg": 32618}, "assets": {"B04": {"proj:code": "EPSG:32619"}}}
    assert item_crs(a) == item_crs(b) == item_crs(a, "B04") == item_crs(b, "B04") == "EPSG:32618"
    assert item_crs(c, "B04") == "EPSG:32619" and item_crs({"properties": {}}) is None
