"""grid.py: point -> chip grid, the NYC domain check, sub-grids and the summary mask."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from terramind_nyc.errors import InvalidInputError, InvalidLocationError
from terramind_nyc.grid import ChipGrid, as_metres, chip_grid, summary_mask, union_grid
from terramind_nyc.location import validate_location
from terramind_nyc.settings import Settings

ESB = (40.7484, -73.9857)  # Empire State Building
# EPSG:32618 coordinates of ESB from the NGS/USGS UTM conversion (E 585 628 m, N 4 511 322 m)
ESB_UTM = (585628.4, 4511322.4)

NYC_POINTS = [ESB, (40.6892, -74.0445), (40.8296, -73.9262), (40.5795, -74.1502), (40.7769, -73.8740),
              (40.4961, -74.2551), (40.9154, -73.7004), (40.7128, -74.0060)]


# ----------------------------------------------------------------------------------------
# chip_grid
# ----------------------------------------------------------------------------------------
def test_default_grid_is_224_px_utm18n_10m() -> None:
    g = chip_grid(*ESB)
    assert g.crs == "EPSG:32618"
    assert g.resolution == 10.0
    assert (g.width, g.height) == (224, 224)
    assert g.shape == (224, 224)
    assert g.size_m == (2240.0, 2240.0)
    t = g.transform
    assert (t.a, t.b, t.d, t.e) == (10.0, 0.0, 0.0, -10.0)
    assert (t.c, t.f) == (g.bounds[0], g.bounds[3])
    assert g.bounds[2] - g.bounds[0] == pytest.approx(2240.0)
    assert g.bounds[3] - g.bounds[1] == pytest.approx(2240.0)
    assert (g.center_lat, g.center_lon) == ESB


def test_grid_is_centred_on_the_known_utm_position() -> None:
    g = chip_grid(*ESB)
    cx = (g.bounds[0] + g.bounds[2]) / 2
    cy = (g.bounds[1] + g.bounds[3]) / 2
    assert abs(cx - ESB_UTM[0]) <= 5.0 + 0.5  # half a pixel + slack for the reference's rounding
    assert abs(cy - ESB_UTM[1]) <= 5.0 + 0.5
    assert g.bounds == (584510.0, 4510200.0, 586750.0, 4512440.0)


@pytest.mark.parametrize("lat,lon", NYC_POINTS)
@pytest.mark.parametrize("size_m", [2240.0, 1000.0, 990.0, 4480.0, 10.0])
def test_grid_snaps_to_the_10m_lattice_within_half_a_pixel(lat: float, lon: float, size_m: float) -> None:
    g = chip_grid(lat, lon, size_m=size_m)
    for v in g.bounds:
        assert v == pytest.approx(round(v / 10.0) * 10.0, abs=1e-6)
    x, y = g.xy(lat, lon)
    assert abs((g.bounds[0] + g.bounds[2]) / 2 - x) <= 5.0 + 1e-6
    assert abs((g.bounds[1] + g.bounds[3]) / 2 - y) <= 5.0 + 1e-6
    w, s, e, n = g.bounds_4326
    assert w < lon < e and s < lat < n


@pytest.mark.parametrize("size_m,px", [(2240, 224), (1000, 100), (1004, 100), (1005, 101), (3, 1), (0.1, 1),
                                       (4480.0, 448), (np.float32(500), 50)])
def test_size_in_pixels_is_rounded_and_at_least_one(size_m: float, px: int) -> None:
    g = chip_grid(*ESB, size_m=size_m)
    assert g.shape == (px, px)


def test_size_defaults_to_settings_and_follows_resolution() -> None:
    assert chip_grid(*ESB, settings=Settings(size_m=640.0)).shape == (64, 64)
    g = chip_grid(*ESB, settings=Settings(resolution_m=20.0))
    assert g.shape == (112, 112) and g.resolution == 20.0
    assert all(v % 20.0 == 0 for v in g.bounds)


@pytest.mark.parametrize("bad", [0, -10, float("nan"), float("inf"), "2240", True])
def test_bad_size_is_an_input_error(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="size_m"):
        chip_grid(*ESB, size_m=bad)  # type: ignore[arg-type]


def test_neighbouring_points_share_the_lattice() -> None:
    a = chip_grid(40.7484, -73.9857)
    b = chip_grid(40.7490, -73.9850)
    dx = (b.bounds[0] - a.bounds[0]) / 10.0
    dy = (b.bounds[3] - a.bounds[3]) / 10.0
    assert dx == int(dx) and dy == int(dy)


# ----------------------------------------------------------------------------------------
# validate_location
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lat,lon", [
    (float("nan"), -73.98), (40.7, float("nan")), (float("inf"), -73.98), (40.7, float("-inf")),
    ("40.7", -73.98), (40.7, "-73.98"), (None, -73.98), (40.7, None), (True, -73.98), ([40.7], -73.98),
    (complex(40.7, 0), -73.98), (91.0, -73.98), (-90.5, 0.0), (40.7, 180.5), (40.7, -181.0),
])
def test_invalid_coordinates_raise_invalid_location(lat: object, lon: object) -> None:
    with pytest.raises(InvalidLocationError) as exc:
        validate_location(lat, lon, Settings(domain_check=False))
    assert "outside" not in str(exc.value)  # only a domain miss reads as "outside" (Riprap: skipped)
    with pytest.raises(InvalidLocationError):
        chip_grid(lat, lon)


def test_invalid_location_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_location(float("nan"), 0.0)


@pytest.mark.parametrize("lat,lon", [(42.3601, -71.0589), (40.48, -74.0), (40.93, -73.9), (40.7, -74.28),
                                     (40.7, -73.68), (-73.98, 40.75)])
def test_points_outside_nyc_are_rejected_unless_opted_out(lat: float, lon: float) -> None:
    with pytest.raises(InvalidLocationError, match="outside the NYC domain") as exc:
        validate_location(lat, lon)
    assert "domain_check=False" in str(exc.value)
    assert validate_location(lat, lon, Settings(domain_check=False)) == (lat, lon)


def test_swapped_coordinates_get_a_hint() -> None:
    with pytest.raises(InvalidLocationError, match="swapped"):
        validate_location(-73.9857, 40.7484)


def test_valid_points_come_back_as_floats() -> None:
    la, lo = validate_location(np.float64(40.75), np.int64(-74))
    assert (la, lo) == (40.75, -74.0)
    assert type(la) is float and type(lo) is float
    assert validate_location(40.49, -74.27) == (40.49, -74.27)  # domain edges are inside
    assert validate_location(40.92, -73.69) == (40.92, -73.69)


def test_domain_is_configurable() -> None:
    s = Settings(domain_lat=(42.0, 43.0), domain_lon=(-72.0, -70.0))
    assert validate_location(42.36, -71.06, s) == (42.36, -71.06)
    with pytest.raises(InvalidLocationError, match="outside"):
        validate_location(*ESB, s)


def test_opt_out_keeps_the_crs_area_check() -> None:
    s = Settings(domain_check=False)
    g = chip_grid(42.3601, -71.0589, settings=s)  # Boston: zone 19, within 1 degree of zone 18
    assert g.shape == (224, 224)
    with pytest.raises(InvalidLocationError, match="EPSG:32631"):
        chip_grid(48.8584, 2.2945, settings=s)  # Paris: suggests its own UTM zone
    g = chip_grid(48.8584, 2.2945, settings=s.replace(crs="EPSG:32631"))
    assert g.crs == "EPSG:32631" and g.shape == (224, 224)


def test_geographic_crs_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="projected"):
        chip_grid(*ESB, settings=Settings(crs="EPSG:4326"))


# ----------------------------------------------------------------------------------------
# summary_mask
# ----------------------------------------------------------------------------------------
def test_summary_mask_whole_grid_by_default() -> None:
    g = chip_grid(*ESB)
    m = summary_mask(g, *ESB)
    assert m.dtype == bool and m.shape == g.shape and m.all()


@pytest.mark.parametrize("radius", [100.0, 500.0, 1000.0])
def test_summary_mask_is_a_disc_of_pixel_centres(radius: float) -> None:
    g = chip_grid(*ESB)
    m = summary_mask(g, *ESB, radius_m=radius)
    assert m.shape == g.shape
    assert m.sum() == pytest.approx(math.pi * radius**2 / 100.0, rel=0.03)
    x, y = g.xy(*ESB)
    rows, cols = np.nonzero(m)
    px = g.bounds[0] + (cols + 0.5) * 10.0
    py = g.bounds[3] - (rows + 0.5) * 10.0
    assert np.all((px - x) ** 2 + (py - y) ** 2 <= radius**2 + 1e-6)
    # every pixel centre inside the circle is selected
    rr, cc = np.mgrid[0:g.height, 0:g.width]
    d2 = (g.bounds[0] + (cc + 0.5) * 10 - x) ** 2 + (g.bounds[3] - (rr + 0.5) * 10 - y) ** 2
    assert np.array_equal(m, d2 <= radius**2)


def test_tiny_radius_keeps_the_pixel_under_the_point() -> None:
    g = chip_grid(*ESB)
    m = summary_mask(g, *ESB, radius_m=0.5)
    assert m.sum() == 1
    r, c = g.rowcol(*ESB)
    assert m[r, c]


def test_radius_larger_than_grid_selects_everything() -> None:
    g = chip_grid(*ESB, size_m=200)
    assert summary_mask(g, *ESB, radius_m=10_000).all()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "500", True])
def test_bad_radius_is_an_input_error(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="radius_m"):
        summary_mask(chip_grid(*ESB), *ESB, radius_m=bad)  # type: ignore[arg-type]


def test_summary_mask_point_outside_grid() -> None:
    g = chip_grid(*ESB)
    with pytest.raises(InvalidLocationError):
        summary_mask(g, 40.80, -73.95, radius_m=100)


def test_summary_mask_off_centre_point() -> None:
    big = chip_grid(*ESB, size_m=4480)
    p = (40.7510, -73.9800)
    m = summary_mask(big, *p, radius_m=300)
    r, c = big.rowcol(*p)
    assert m[r, c]
    rows, cols = np.nonzero(m)
    assert abs(rows.mean() - r) <= 1.0 and abs(cols.mean() - c) <= 1.0


# ----------------------------------------------------------------------------------------
# sub-grids, unions, constructors, serialisation
# ----------------------------------------------------------------------------------------
def test_window_of_a_sub_grid() -> None:
    outer = chip_grid(*ESB, size_m=4480)
    inner = chip_grid(*ESB)
    r, c = outer.window(inner)
    assert (r, c) == (112, 112)
    assert (outer.bounds[0] + c * 10.0, outer.bounds[3] - r * 10.0) == (inner.bounds[0], inner.bounds[3])
    assert outer.window(outer) == (0, 0)


def test_window_rejects_grids_that_do_not_fit() -> None:
    a = chip_grid(*ESB)
    with pytest.raises(InvalidInputError, match="does not fit"):
        a.window(chip_grid(*ESB, size_m=4480))
    with pytest.raises(InvalidInputError, match="does not fit"):
        a.window(chip_grid(40.80, -73.95))
    off = ChipGrid.from_bounds(a.crs, (a.bounds[0] + 5, a.bounds[1] + 5, a.bounds[0] + 105, a.bounds[1] + 105), 10)
    with pytest.raises(InvalidInputError, match="fraction of a pixel"):
        a.window(off)
    with pytest.raises(InvalidInputError, match="differ"):
        a.window(chip_grid(*ESB, settings=Settings(resolution_m=20.0)))


def test_union_grid_holds_every_member() -> None:
    pts = [(40.7484, -73.9857), (40.7527, -73.9772), (40.7411, -73.9897)]
    grids = [chip_grid(*p) for p in pts]
    u = union_grid(grids)
    for g in grids:
        r, c = u.window(g)
        assert 0 <= r and r + g.height <= u.height and 0 <= c and c + g.width <= u.width
    assert u.bounds == (min(g.bounds[0] for g in grids), min(g.bounds[1] for g in grids),
                        max(g.bounds[2] for g in grids), max(g.bounds[3] for g in grids))
    with pytest.raises(InvalidInputError):
        union_grid([])


def test_from_bounds_keeps_an_off_lattice_origin() -> None:
    # the real TerraMind tile 433D_629L_3_1: EPSG:32718, origin not on the 10 m lattice
    b = (717729.8352053782, 5697853.330553154, 719969.8352053782, 5700093.330553154)
    g = ChipGrid.from_bounds("EPSG:32718", b, 10.0)
    assert g.shape == (224, 224)
    assert g.bounds == pytest.approx(b)
    assert g.transform.c == pytest.approx(717729.8352053782)
    assert -39.0 < g.center_lat < -38.7 and -72.6 < g.center_lon < -72.4
    with pytest.raises(InvalidInputError, match="whole number"):
        ChipGrid.from_bounds("EPSG:32718", (b[0], b[1], b[2] + 3, b[3]), 10.0)
    s = ChipGrid.from_bounds("EPSG:32718", (b[0], b[1], b[2] + 3, b[3]), 10.0, snap=True)
    assert all(v % 10 == 0 for v in s.bounds)
    assert s.bounds[0] <= b[0] and s.bounds[2] >= b[2] + 3


@pytest.mark.parametrize("bounds", [(0, 0, 0, 10), (10, 0, 0, 10), (0, 0, float("nan"), 10), (0, 0, 10)])
def test_from_bounds_rejects_bad_bounds(bounds: tuple[float, ...]) -> None:
    with pytest.raises(InvalidInputError):
        ChipGrid.from_bounds("EPSG:32618", bounds, 10.0)


def test_to_dict_is_json_safe_and_round_trips() -> None:
    g = chip_grid(*ESB)
    d = g.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["transform"] == [10.0, 0.0, 584510.0, 0.0, -10.0, 4512440.0]
    assert d["bounds_4326"][0] < ESB[1] < d["bounds_4326"][2]
    assert ChipGrid.from_dict(d) == g


def test_geobox_matches_the_grid() -> None:
    g = chip_grid(*ESB)
    gb = g.geobox
    assert gb.shape == g.shape
    assert gb.affine == g.transform
    assert gb.crs.epsg == 32618


def test_contains() -> None:
    g = chip_grid(*ESB)
    assert g.contains(*ESB)
    assert g.contains(*ESB, radius_m=1100)
    assert not g.contains(*ESB, radius_m=1200)
    assert not g.contains(40.80, -73.95)


def test_grid_constructor_validates() -> None:
    g = chip_grid(*ESB)
    with pytest.raises(InvalidInputError):
        ChipGrid(g.crs, 10.0, 0, 10, g.transform, g.bounds, g.bounds_4326, *ESB)


def test_invalid_coordinates_are_rejected_before_any_search() -> None:
    for lat, lon in [(float("nan"), -73.98), (40.7, float("inf")), ("40.7", -73.98), (95.0, -73.98),
                     (-73.98, 40.75), (51.5, -0.12)]:
        with pytest.raises(InvalidLocationError):
            chip_grid(lat, lon)


# ----------------------------------------------------------------------------------------
# The distance gate and the junk a grid is never built from
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad", [pytest.param(10**400, id="huge-int"), pytest.param(-(2**1100), id="huge-negative-int"),
            pytest.param(10**5000, id="int-too-long-to-print"), None, [640], b"640", np.bool_(True), -0.0, 5e-324 * 0])
def test_as_metres_refuses_what_is_not_a_positive_distance(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="size_m must be a") as e:
        as_metres(bad, "size_m")
    assert len(str(e.value)) < 300


def test_as_metres_takes_any_positive_real() -> None:
    assert as_metres(640, "size_m") == 640.0 and type(as_metres(np.float32(2.5), "r")) is float
    assert as_metres(np.int64(10), "r") == 10.0 and as_metres(5e-324, "r") == 5e-324


@pytest.mark.parametrize("bad", [pytest.param(10**400, id="huge-int"), "500", [500]])
def test_huge_sizes_and_radii_are_input_errors(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="size_m"):
        chip_grid(*ESB, size_m=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="radius_m"):
        summary_mask(chip_grid(*ESB), *ESB, radius_m=bad)  # type: ignore[arg-type]


def test_a_grid_has_at_most_max_side_px_a_side() -> None:
    from terramind_nyc.grid import MAX_SIDE_PX

    assert chip_grid(*ESB, size_m=MAX_SIDE_PX * 10.0).width == MAX_SIDE_PX
    with pytest.raises(InvalidInputError, match="pass a smaller size_m"):
        chip_grid(*ESB, size_m=1e12)


@pytest.mark.parametrize("bounds", [None, 5, ("a", 0, 10, 10), (0, 0, 10**400, 10), [[0], 0, 10, 10]])
def test_from_bounds_refuses_junk(bounds: object) -> None:
    with pytest.raises(InvalidInputError, match="bounds must be finite"):
        ChipGrid.from_bounds("EPSG:32618", bounds, 10.0)  # type: ignore[arg-type]


def test_from_bounds_and_from_dict_refuse_bad_crs_centre_and_dicts() -> None:
    with pytest.raises(InvalidInputError, match="a CRS is a string"):
        ChipGrid.from_bounds(32618, (0, 0, 10, 10), 10.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"set Settings\(crs=...\)"):
        ChipGrid.from_bounds("EPSG:nope", (0, 0, 10, 10), 10.0)
    with pytest.raises(InvalidLocationError, match="latitude"):
        ChipGrid.from_bounds("EPSG:32618", (0, 0, 10, 10), 10.0, center=(10**400, 0.0))
    d = chip_grid(*ESB).to_dict()
    for bad in ({}, {**d, "transform": [1]}, {**d, "width": "wide"}, {**d, "resolution": 10**400}, [1, 2]):
        with pytest.raises(InvalidInputError, match="not a ChipGrid.to_dict"):
            ChipGrid.from_dict(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="unknown CRS"):
        ChipGrid.from_dict({**d, "crs": "EPSG:nope"})
