"""Tests of terramind_nyc.maps.render: quick-look colours, block-mode downsampling, the PNG, and
the self-contained HTML page (its text here; its rendering in headless Chromium when installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from terramind_nyc.errors import InvalidInputError
from terramind_nyc.jsonsafe import json_safe
from terramind_nyc.maps import render
from terramind_nyc.maps.render import quicklook_rgba, write_html, write_quicklook

RED, GREEN, BLUE = "#ff0000", "#00ff00", "#0000ff"
COLORS = [RED, GREEN, BLUE]
RGBA = {0: (255, 0, 0, 255), 1: (0, 255, 0, 255), 2: (0, 0, 255, 255), 255: (0, 0, 0, 0)}
BUILDING = (214, 39, 40, 255)  # the default building colour, #d62728
EVIL = "<script>alert(1)</script>"

LULC_4x4 = np.array(
    [
        [0, 0, 1, 1],
        [0, 255, 1, 2],
        [2, 2, 255, 2],
        [1, 0, 2, 255],
    ],
    np.uint8,
)


def _expected(lulc: np.ndarray) -> np.ndarray:
    return np.array([[RGBA[int(v)] for v in row] for row in lulc], np.uint8)


def _reference_downsample(lulc: np.ndarray, bld: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Block mode / building majority the slow, obvious way."""
    h, w = -(-lulc.shape[0] // f), -(-lulc.shape[1] // f)
    out_l, out_b = np.full((h, w), 255, np.uint8), np.full((h, w), 255, np.uint8)
    for r in range(h):
        for c in range(w):
            blk = lulc[r * f : (r + 1) * f, c * f : (c + 1) * f].ravel()
            valid = blk[blk != 255]
            if valid.size:
                counts = np.bincount(valid)
                out_l[r, c] = int(np.flatnonzero(counts == counts.max())[0])
            b = bld[r * f : (r + 1) * f, c * f : (c + 1) * f].ravel()
            seen = b[b != 255]
            if seen.size:
                out_b[r, c] = 1 if 2 * int((seen == 1).sum()) >= seen.size else 0
    return out_l, out_b


# -- quicklook_rgba ---------------------------------------------------------------------------


def test_colours_land_on_the_right_pixels():
    out = quicklook_rgba(LULC_4x4, None, colors=COLORS)
    assert out.dtype == np.uint8 and out.shape == (4, 4, 4)
    np.testing.assert_array_equal(out, _expected(LULC_4x4))


def test_nodata_is_transparent_and_the_rest_opaque():
    out = quicklook_rgba(LULC_4x4, None, colors=COLORS)
    np.testing.assert_array_equal(out[..., 3] == 0, LULC_4x4 == 255)
    assert (out[LULC_4x4 != 255][:, 3] == 255).all()


def test_buildings_are_painted_over_land_cover():
    bld = np.array(
        [
            [1, 0, 0, 0],
            [0, 1, 255, 0],  # a building over land-cover no data: opaque building colour
            [0, 0, 0, 1],
            [255, 0, 0, 0],  # building no data over valid land cover: the land-cover colour
        ],
        np.uint8,
    )
    out = quicklook_rgba(LULC_4x4, bld, colors=COLORS, building_color="#123456")
    want = _expected(LULC_4x4)
    want[bld == 1] = (0x12, 0x34, 0x56, 255)
    np.testing.assert_array_equal(out, want)
    assert tuple(out[1, 1]) == (0x12, 0x34, 0x56, 255)
    assert tuple(out[3, 0]) == RGBA[1]


def test_bool_buildings_and_default_colour():
    bld = np.zeros((4, 4), bool)
    bld[0, 3] = True
    out = quicklook_rgba(LULC_4x4, bld, colors=COLORS)
    assert tuple(out[0, 3]) == BUILDING
    assert tuple(out[0, 2]) == RGBA[1]


def test_buildings_alone_over_empty_land_cover():
    bld = np.array([[1, 0], [255, 1]], np.uint8)
    out = quicklook_rgba(np.full((2, 2), 255, np.uint8), bld, colors=[])
    assert [tuple(p) for p in out.reshape(-1, 4)] == [BUILDING, (0, 0, 0, 0), (0, 0, 0, 0), BUILDING]


def test_downsampling_takes_the_block_mode_8x8_to_2x2():
    lulc = np.full((8, 8), 255, np.uint8)
    bld = np.full((8, 8), 255, np.uint8)
    # top left: 10 x class 1, 6 x class 0 -> 1; exactly half buildings -> building
    lulc[:4, :4] = 0
    lulc[:4, :4].flat[:10] = 1
    bld[:4, :4] = 0
    bld[:4, :4].flat[:8] = 1
    # top right: 7 x class 2, 5 x class 0, 4 no data -> 2; 3 of 8 valid buildings -> not
    tr = lulc[:4, 4:].reshape(-1)
    tr[:7], tr[7:12] = 2, 0
    lulc[:4, 4:] = tr.reshape(4, 4)
    b = bld[:4, 4:].reshape(-1)
    b[:3], b[3:8] = 1, 0
    bld[:4, 4:] = b.reshape(4, 4)
    # bottom left stays all no data; bottom right: 8 x 0 and 8 x 1 (tie -> lowest, 0), 6 of 12
    lulc[4:, 4:] = 0
    lulc[4:, 4:].flat[:8] = 1
    br = bld[4:, 4:].reshape(-1)
    br[:6], br[6:12] = 1, 0
    bld[4:, 4:] = br.reshape(4, 4)

    out = quicklook_rgba(lulc, bld, colors=COLORS, max_side=2)
    assert out.shape == (2, 2, 4)
    assert tuple(out[0, 0]) == BUILDING
    assert tuple(out[0, 1]) == RGBA[2]
    assert tuple(out[1, 0]) == (0, 0, 0, 0)
    assert tuple(out[1, 1]) == BUILDING
    assert tuple(quicklook_rgba(lulc, None, colors=COLORS, max_side=2)[1, 1]) == RGBA[0]
    assert tuple(quicklook_rgba(lulc, None, colors=COLORS, max_side=2)[0, 0]) == RGBA[1]


def test_downsampling_pads_edge_blocks_with_nodata():
    # 1 x 5 with max_side 2: factor 3, 1 x 2 blocks; the padding (8 and 7 of the 9 pixels) counts
    # as no data, neither as class 0 nor as "not a building"
    lulc = np.array([[2, 2, 1, 1, 1]], np.uint8)
    bld = np.array([[0, 0, 0, 1, 1]], np.uint8)
    out = quicklook_rgba(lulc, None, colors=COLORS, max_side=2)
    assert [tuple(p) for p in out[0]] == [RGBA[2], RGBA[1]]
    out = quicklook_rgba(lulc, bld, colors=COLORS, max_side=2)
    assert [tuple(p) for p in out[0]] == [RGBA[2], BUILDING]
    tie = quicklook_rgba(np.array([[2, 2, 2, 1, 0]], np.uint8), None, colors=COLORS, max_side=2)
    assert tuple(tie[0, 1]) == RGBA[0]  # one 1 and one 0: the lowest index wins


@pytest.mark.parametrize("strip_pixels", [1, 50, 1 << 22])
def test_downsampling_matches_a_plain_loop(monkeypatch, strip_pixels):
    monkeypatch.setattr(render, "_STRIP_PIXELS", strip_pixels)  # several strips, one pixel each
    rng = np.random.default_rng(7)
    lulc = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(37, 23), p=[0.4, 0.3, 0.2, 0.1])
    bld = rng.choice(np.array([0, 1, 255], np.uint8), size=(37, 23))
    for max_side in (1, 5, 10, 19):
        f = -(-37 // max_side)
        want_l, want_b = _reference_downsample(lulc, bld, f)
        want = _expected(want_l)
        want[want_b == 1] = BUILDING
        np.testing.assert_array_equal(quicklook_rgba(lulc, bld, colors=COLORS, max_side=max_side), want)


def test_no_downsampling_at_max_side():
    lulc = np.zeros((3, 7), np.uint8)
    assert quicklook_rgba(lulc, None, colors=COLORS, max_side=7).shape == (3, 7, 4)
    assert quicklook_rgba(lulc, None, colors=COLORS, max_side=6).shape == (2, 4, 4)


@pytest.mark.parametrize(
    ("lulc", "buildings", "kwargs"),
    [
        (np.zeros((4, 4), np.uint8), np.zeros((4, 3), np.uint8), {}),  # shapes differ
        (np.zeros((2, 4, 4), np.uint8), None, {}),  # 3-D
        (np.zeros(4, np.uint8), None, {}),  # 1-D
        (np.zeros((0, 4), np.uint8), None, {}),  # empty
        ([[0, 1], [1, 0]], None, {}),  # not an array
        (np.zeros((4, 4), np.float32), None, {}),  # not integers
        (np.full((4, 4), 300, np.int32), None, {}),  # out of uint8 range
        (np.full((4, 4), 3, np.uint8), None, {}),  # class 3 with 3 colours
        (np.full((4, 4), 254, np.uint8), None, {}),
        (np.zeros((4, 4), np.uint8), np.full((4, 4), 2, np.uint8), {}),  # building value 2
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 1), np.uint8), {}),
        (np.zeros((4, 4), np.uint8), None, {"colors": ["red"]}),
        (np.zeros((4, 4), np.uint8), None, {"colors": ["#12345"]}),
        (np.zeros((4, 4), np.uint8), None, {"colors": ["#gggggg"]}),
        (np.zeros((4, 4), np.uint8), None, {"colors": [0xFF0000]}),
        (np.zeros((4, 4), np.uint8), None, {"colors": "#ff0000"}),
        (np.zeros((4, 4), np.uint8), None, {"colors": ["#ff0000"] * 256}),
        (np.zeros((4, 4), np.uint8), None, {"building_color": "crimson"}),
        (np.zeros((4, 4), np.uint8), None, {"max_side": 0}),
        (np.zeros((4, 4), np.uint8), None, {"max_side": 2.5}),
        (np.zeros((4, 4), np.uint8), None, {"max_side": True}),
    ],
)
def test_bad_inputs_are_refused(lulc, buildings, kwargs):
    kwargs = {"colors": COLORS, **kwargs}
    with pytest.raises(InvalidInputError):
        quicklook_rgba(lulc, buildings, **kwargs)
    with pytest.raises(ValueError):  # InvalidInputError is a ValueError too
        quicklook_rgba(lulc, buildings, **kwargs)


def test_other_integer_dtypes_in_range_are_accepted():
    out = quicklook_rgba(LULC_4x4.astype(np.int64), LULC_4x4.astype(np.int16) == 2, colors=COLORS)
    assert out.shape == (4, 4, 4)


# -- write_quicklook --------------------------------------------------------------------------


def test_write_quicklook_writes_the_rgba_as_png(tmp_path):
    from PIL import Image

    bld = (LULC_4x4 == 2).astype(np.uint8)
    path = write_quicklook(tmp_path / "sub" / "map.png", LULC_4x4, bld, colors=COLORS)
    assert path == tmp_path / "sub" / "map.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), quicklook_rgba(LULC_4x4, bld, colors=COLORS))
    assert sorted(p.name for p in path.parent.iterdir()) == ["map.png"]  # no temporary left


def test_write_quicklook_leaves_nothing_on_bad_input(tmp_path):
    with pytest.raises(InvalidInputError):
        write_quicklook(tmp_path / "map.png", LULC_4x4, None, colors=[RED])
    assert list(tmp_path.iterdir()) == []


# -- write_html -------------------------------------------------------------------------------

LEGEND = [("Water", "#419bdf"), ("Trees", "#397d49"), ("Built-up / developed", "#c4281b"), (EVIL, "#a59b8f")]
CELL = {
    "lat": 40.71,
    "lon": -74.0,
    "dominant": "Built-up / developed",
    "lulc_pct": {"Water": 3.1, "Trees": 12.0, EVIL: 1.5},
    "buildings_pct": np.float32(41.25),
    "s2_date": "2024-07-08",
    "s2_scene": "S2B_MSIL2A_20240708T153819_R011_T18TWL",
    "window": "r0c1",
}
CELLS: dict[str, Any] = {"rows": 2, "cols": 2, "data": [None, CELL, {"note": float("nan")}, {"window": "r1c1"}]}
BOUNDS = (-74.05, 40.60, -73.90, 40.80)


def _layer() -> np.ndarray:
    """A 60 x 80 land-cover layer in three legend colours, with a building block and a no-data corner."""
    lulc = np.zeros((60, 80), np.uint8)
    lulc[:, 30:55], lulc[:, 55:] = 1, 2
    lulc[:8, :8] = 255
    bld = np.zeros_like(lulc)
    bld[40:55, 5:20] = 1
    return quicklook_rgba(lulc, bld, colors=[c for _, c in LEGEND[:3]], building_color=LEGEND[3][1])


def _page(tmp_path: Path, **kwargs: Any) -> Path:
    args: dict[str, Any] = {
        "title": f"NYC map {EVIL}",
        "bounds_4326": BOUNDS,
        "layers": [("Land cover", _layer()), (f"Buildings {EVIL}", np.zeros((60, 80, 4), np.uint8))],
        "legend": LEGEND,
        "cells": CELLS,
    }
    return write_html(tmp_path / "map.html", **{**args, **kwargs})


def _embedded(text: str) -> Any:
    match = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', text, re.DOTALL)
    assert match, "no embedded data"
    return json.loads(match.group(1))


def test_html_has_the_legend(tmp_path):
    text = _page(tmp_path).read_text(encoding="utf-8")
    assert text.count('class="legend-item"') == len(LEGEND)
    assert 'id="legend"' in text
    for label, colour in LEGEND[:3]:
        assert label in text
        assert f"background:{colour}" in text


def test_html_references_nothing_outside_the_file(tmp_path):
    text = _page(tmp_path).read_text(encoding="utf-8").lower()
    for bad in ("http://", "https://", "//cdn", "@import", "url(", 'src="//', "<link"):
        assert bad not in text, bad
    assert re.findall(r'src="([^"]{0,22})', text) == ["data:image/png;base64,"] * 2


def test_html_embeds_the_cells_as_json(tmp_path):
    data = _embedded(_page(tmp_path).read_text(encoding="utf-8"))
    assert data["rows"] == 2 and data["cols"] == 2
    assert data["bounds"] == list(BOUNDS)
    assert (data["width"], data["height"]) == (80, 60)
    assert data["data"] == json_safe(CELLS["data"])
    assert data["data"][1]["buildings_pct"] == pytest.approx(41.25)  # numpy scalars become numbers
    assert data["data"][2]["note"] is None  # NaN: JSON has none


def test_html_escapes_text(tmp_path):
    text = _page(tmp_path).read_text(encoding="utf-8")
    assert EVIL not in text
    assert text.count("<script>") == 1  # the page's own script; the data one has a type
    assert text.count("<script") == 2  # the data and the page's own script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # legend, title, layer name as text
    assert _embedded(text)["data"][1]["lulc_pct"][EVIL] == 1.5  # the data keeps the string itself


def test_html_images_are_the_layers(tmp_path):
    import base64
    import io

    from PIL import Image

    text = _page(tmp_path).read_text(encoding="utf-8")
    first = re.search(r'src="data:image/png;base64,([^"]+)"', text)
    assert first
    with Image.open(io.BytesIO(base64.b64decode(first.group(1)))) as im:
        np.testing.assert_array_equal(np.asarray(im), _layer())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"layers": []},
        {"layers": [("a", np.zeros((4, 4, 4), np.uint8)), ("b", np.zeros((4, 5, 4), np.uint8))]},
        {"layers": [("a", np.zeros((4, 4, 3), np.uint8))]},
        {"layers": [("a", np.zeros((4, 4, 4), np.float32))]},
        {"layers": [("a", np.zeros((0, 4, 4), np.uint8))]},
        {"layers": [np.zeros((4, 4, 4), np.uint8)]},
        {"layers": [(1, np.zeros((4, 4, 4), np.uint8))]},
        {"cells": {"rows": 2, "cols": 2, "data": [None] * 3}},
        {"cells": {"rows": 1, "cols": 1, "data": ["r0c0"]}},
        {"cells": {"rows": -1, "cols": -1, "data": [None]}},
        {"cells": {"rows": 1.0, "cols": 1, "data": [None]}},
        {"cells": {"rows": 1, "cols": 1}},
        {"cells": [None]},
        {"legend": [("Water", "blue")]},
        {"legend": [("Water",)]},
        {"bounds_4326": (-73.9, 40.6, -74.05, 40.8)},  # west > east
        {"bounds_4326": (-74.05, 40.6, -73.9, float("nan"))},
        {"bounds_4326": (-74.05, 40.6, -73.9)},
        {"bounds_4326": "NYC"},
        {"title": None},
    ],
)
def test_html_bad_inputs_are_refused(tmp_path, kwargs):
    with pytest.raises(InvalidInputError):
        _page(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_html_accepts_an_empty_cell_grid(tmp_path):
    page = _page(tmp_path, cells={"rows": 0, "cols": 0, "data": []}, legend=[])
    assert _embedded(page.read_text(encoding="utf-8"))["data"] == []


# -- the page in a real browser ---------------------------------------------------------------


def _chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH (tests/setup_system.sh installs it where it can)")
    return browser


def _run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    command += [f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


def _colour_count(pixels: np.ndarray, hex_colour: str) -> int:
    rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return int((pixels == rgb).all(axis=1).sum())


@pytest.mark.slow
def test_page_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    page, png = _page(tmp_path), tmp_path / "shot.png"
    size = "--window-size=1000,800"
    done = _run_chromium(tmp_path, "--hide-scrollbars", size, f"--screenshot={png}", page.as_uri())
    assert png.exists(), f"no screenshot (rc {done.returncode}): {done.stderr[-2000:]}"
    with Image.open(png) as im:
        assert im.size == (1000, 800)
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 20, "the page looks blank"
    for _, colour in LEGEND[:3]:  # land-cover colours of the layer, drawn large
        assert _colour_count(pixels, colour) > 5000, colour
    assert _colour_count(pixels, LEGEND[3][1]) > 500  # the building block
    # legend swatches (16 px with a 1 px border): the building colour appears in the layer too,
    # so check the swatch of a colour only the legend uses
    swatch_only = _page(tmp_path, legend=[*LEGEND, ("Swatch only", "#7b2ff7")])
    png.unlink()
    _run_chromium(tmp_path, "--hide-scrollbars", size, f"--screenshot={png}", swatch_only.as_uri())
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert 100 <= _colour_count(pixels, "#7b2ff7") <= 400


@pytest.mark.slow
def test_page_shows_a_cell_as_text_in_headless_chromium(tmp_path):
    page = _page(tmp_path)
    done = _run_chromium(tmp_path, "--dump-dom", page.as_uri() + "#cell=0,1")
    info = re.search(r'<div id="info">(.*?)</div></aside>', done.stdout, re.DOTALL)
    assert info, f"no #info in the DOM (rc {done.returncode}): {done.stderr[-2000:]}"
    shown = info.group(1)
    for text in ("<th>dominant</th><td>Built-up / developed</td>", "<th>window</th><td>r0c1</td>", "41.25"):
        assert text in shown
    assert "<th>lulc_pct</th><td><table>" in shown  # a nested dict is a nested table
    assert "<th>&lt;script&gt;alert(1)&lt;/script&gt;</th>" in shown  # text, not markup
    assert "<script" not in shown
    empty = _run_chromium(tmp_path, "--dump-dom", page.as_uri() + "#cell=0,0").stdout
    assert "no figures for cell r0c0" in empty
