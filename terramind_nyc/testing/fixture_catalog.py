"""Generated test imagery: small, realistic COGs and matching STAC items around NYC points.

:func:`build_fixture_catalog` writes, under ``root``:

- ``cogs/<collection>/<item id>/<asset>.tif``: cloud-optimised GeoTIFFs (DEFLATE, 256 px tiles,
  header first; no overviews, which full-resolution chip reads never touch);
- ``items.json``: one STAC ItemCollection with every item, asset hrefs ``{base_url}/cogs/...``;
- ``collections/<id>.json``: the three collections (``sentinel-2-l2a``, ``sentinel-1-rtc``,
  ``cop-dem-glo-30``).

The data follow the real products (see DESIGN section 2): Sentinel-2 L2A uint16 DN
(reflectance x 10000, nodata 0) for B01..B12 at their native 10/20/60 m and SCL at 20 m, with
``s2:processing_baseline`` "02.14" (no offset) or >= "04.00" (+1000 on every valid DN);
``proj:epsg`` on some items and ``proj:code`` on others; Sentinel-1 RTC vv/vh float32 linear
power with nodata -32768; Copernicus DEM float32 metres in EPSG:4326 at 1 arc-second (~30 m),
with the half-pixel origin of the real tiles. Every scenario lives in its own few-km region of
New York City, so a bbox search for one never returns another's items.

Scenarios (:attr:`FixtureCatalog.points`, facts in :attr:`FixtureCatalog.expected`):

``clear``            the newest scene is clear over the chip (plus older 04.00 and 02.14 scenes).
``cloudy_vs_clear``  the newest scene has a LOW ``eo:cloud_cover`` but its SCL is cloudy over the
                     chip; an older one has a HIGH ``eo:cloud_cover`` and is clear over the chip:
                     the older one is the right choice (and so is the S1 scene nearest to it).
``tile_edge``        the chip straddles two items (two MGRS tiles) of the same acquisition, one
                     with ``proj:epsg``, one with ``proj:code``; each alone covers about half of
                     it; an older single scene covers it all (picking it is wrong); two DEM
                     tiles split the chip too.
``no_s1``            S2 and DEM, no S1 item intersects.
``no_dem``           S2 and S1, no DEM item intersects.
``mostly_nodata``    the only S2 item covers < 30 % of the chip (a swath edge).
``all_cloudy``       every scene is cloudy over the chip; the one clear scene has a scene-wide
                     ``eo:cloud_cover`` above the 80 % prefilter (a server or client that
                     ignores the prefilter would pick it).

Modules: :mod:`.scenarios` (the scenario table), :mod:`.synth` (the synthetic fields),
:mod:`.cogs` (writing COGs and STAC fields); this module puts them together.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from ..grid import ChipGrid, chip_grid
from ..sensors import S1_NODATA, S2_BANDS
from ..settings import Settings
from .cogs import (
    ARCSEC,
    S2_COMMON_NAMES,
    S2_WAVELENGTHS,
    CogWriter,
    cog_asset,
    footprint,
    geometry_bbox,
    proj_properties,
    stac_datetime,
    stac_extensions,
    write_collections,
)
from .scenarios import (
    FIXTURE_NOW,
    REGION_MARGIN_M,
    SCENARIOS,
    Region,
    S2Spec,
    ScenarioSpec,
    check_disjoint,
    scenario_region,
    scenario_specs,
)
from .synth import (
    S2_OFFSET,
    S2_RESOLUTION,
    baseline_has_offset,
    chip_fractions,
    fixture_elevation,
    ground_cover,
    s1_scene,
    s1_texture,
    s2_scene,
    upsample,
)

__all__ = ["FixtureCatalog", "build_fixture_catalog"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FixtureCatalog:
    """A generated catalog: files on disk, the URL they are served under, and the facts."""

    root: Path
    """Folder holding ``cogs/``, ``items.json`` and ``collections/``."""
    items_path: Path
    """The STAC ItemCollection of every item (``root / "items.json"``)."""
    base_url: str
    """URL the ``root`` folder is served under; asset hrefs start with ``{base_url}/cogs/``."""
    points: dict[str, tuple[float, float]]
    """Scenario name -> ``(lat, lon)`` of its chip centre (all inside the NYC domain)."""
    expected: dict[str, dict[str, Any]]
    """Scenario name -> facts to assert on (see :func:`build_fixture_catalog`)."""
    item_facts: dict[str, dict[str, Any]]
    """Item id -> what the generator put in it (collection, scenario, datetime, baseline,
    offset, chip fractions on the scenario's default chip, ...)."""
    collection_paths: tuple[Path, ...]
    """One JSON file per collection (for servers that load collections separately)."""
    now: datetime
    """A reference 'now' (UTC) for recency windows: every scene is within 120 days before it."""
    size_m: float = 2240.0
    """Chip side the chip-level facts in :attr:`expected` were computed for (metres)."""

    def items(self) -> list[dict[str, Any]]:
        """The item dicts of :attr:`items_path`."""
        return list(json.loads(self.items_path.read_text())["features"])

    def item(self, item_id: str) -> dict[str, Any]:
        """One item dict by id."""
        for it in self.items():
            if it["id"] == item_id:
                return it
        raise KeyError(item_id)

    def grid(self, scenario: str, settings: Settings | None = None) -> ChipGrid:
        """The default chip grid of a scenario (the grid the facts were computed on)."""
        lat, lon = self.points[scenario]
        return chip_grid(lat, lon, size_m=self.size_m, settings=settings)

    def when(self, scenario: str) -> tuple[str, str]:
        """The scenario's search window as two ISO dates ``(start, end)``."""
        start, end = self.expected[scenario]["when"]
        return str(start), str(end)

    def settings(self, **overrides: Any) -> Settings:
        """Settings for the local provider over this catalog (no signing), plus ``overrides``."""
        base: dict[str, Any] = {"catalog_provider": "local", "catalog_path": str(self.items_path), "signer": "none"}
        base.update(overrides)
        return Settings(**base)


def build_fixture_catalog(root: str | os.PathLike[str], base_url: str, *, seed: int = 0,
                          settings: Settings | None = None,
                          scenarios: Iterable[str] | None = None,
                          margin_m: float = REGION_MARGIN_M) -> FixtureCatalog:
    """Write the fixture COGs and STAC items under ``root``; asset hrefs start with ``base_url``.

    ``root`` may already be served (start a :class:`~terramind_nyc.testing.CogServer` on an
    empty folder first, then build into it with its URL). ``seed`` changes the pixel values
    (so chip fractions move a little), never the scenario's choices. ``settings`` gives the grid
    CRS/resolution and the chip-choice limits the expected facts are checked against (default
    ``Settings.resolve(None)``, as everywhere). ``scenarios`` builds only those (default all of :data:`SCENARIOS`); a
    scenario's pixels do not depend on which others are built. ``margin_m`` is how far the
    data extend around each scenario's default chip (larger for benchmarks that scatter points
    around it; the scenarios' facts are only guaranteed at the default).

    ``expected[scenario]`` holds: ``when`` (ISO start, end), ``s2_ids`` (the item(s) a correct
    scene choice returns, several when they must be mosaicked; empty when none qualifies),
    ``s2_datetime``, ``s2_baseline``, ``s2_offset`` (DN to subtract), ``s2_offset_removed``,
    ``chip_cloud_fraction`` / ``chip_nodata_fraction`` of that choice (mosaic) on the default
    chip, ``s1_id`` / ``s1_datetime`` (None when no S1 fits), ``dem_ids``, ``reason`` ("cloud",
    "nodata" or None), ``s2_candidates`` (every S2 item id of the scenario, newest first) and
    ``prefiltered_ids`` (those above the ``eo:cloud_cover`` prefilter).
    """
    s = Settings.resolve(settings)
    if s.resolution_m != 10.0:
        raise ValueError("the fixture catalog is built on the 10 m lattice; use Settings(resolution_m=10)")
    root = Path(root)
    base_url = base_url.rstrip("/")
    size_m = 2240.0
    every = scenario_specs()
    wanted = set(SCENARIOS) if scenarios is None else set(scenarios)
    unknown = wanted - set(SCENARIOS)
    if unknown or not wanted:
        raise ValueError(f"unknown or no scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    with CogWriter() as writer:
        b = _Build(root, base_url, s, int(s.crs.split(":")[1]), writer)
        expected: dict[str, dict[str, Any]] = {}
        regions: dict[str, Region] = {}
        for si, sc in enumerate(every):
            if sc.name not in wanted:
                continue
            # one random stream per scenario, drawn in a fixed order: ground, S2 scenes, S1 scenes
            rng = np.random.default_rng([seed, si])
            reg = regions[sc.name] = scenario_region(sc.lat, sc.lon, s, size_m, margin_m)
            lc10, ground10 = ground_cover(rng, reg.h10, reg.w10)
            lc20 = lc10[::2, ::2]
            s2 = [_write_s2_scene(b, sc, reg, rng, ground10, lc20, spec) for spec in sc.s2]
            s1_ids = _write_s1_scenes(b, si, sc, reg, rng, lc10)
            dem_ids = _write_dem_tiles(b, sc, reg)
            expected[sc.name] = _expected_facts(sc, s, s2, s1_ids, dem_ids)
        check_disjoint(regions)
        ids = [it["id"] for it in b.items]
        if len(ids) != len(set(ids)):  # pragma: no cover - a bug in the scenario table
            raise AssertionError("fixture item ids are not unique")

    root.mkdir(parents=True, exist_ok=True)
    items_path = root / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": b.items}, indent=1))
    coll_paths = tuple(write_collections(root, b.items, s))
    log.debug("fixture catalog: %d items, %d COGs under %s", len(b.items), writer.count, root)
    return FixtureCatalog(
        root=root, items_path=items_path, base_url=base_url,
        points={sc.name: (sc.lat, sc.lon) for sc in every if sc.name in wanted},
        expected=expected, item_facts=b.facts, collection_paths=coll_paths, now=FIXTURE_NOW, size_m=size_m,
    )


@dataclass
class _Build:
    """What one :func:`build_fixture_catalog` call writes into, and the items and facts so far."""

    root: Path
    base_url: str
    settings: Settings
    epsg: int
    writer: CogWriter
    items: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def write(self, rel: str, data: np.ndarray, **kw: Any) -> str:
        """Write one COG at ``root / rel``; returns its href."""
        self.writer.add(self.root / rel, data, **kw)
        return f"{self.base_url}/{rel}"


# ----------------------------------------------------------------------------------------
# Sentinel-2
# ----------------------------------------------------------------------------------------
def _write_s2_scene(b: _Build, sc: ScenarioSpec, reg: Region, rng: np.random.Generator, ground10: np.ndarray,
                    lc20: np.ndarray, spec: S2Spec) -> tuple[str, np.ndarray]:
    """One S2 L2A item: its COGs, item and facts; returns its id and its SCL on the default chip (10 m)."""
    s = b.settings
    dt = spec.acquired
    proc = dt + timedelta(hours=9, minutes=13, seconds=7)
    iid = f"S2{spec.sat}_MSIL2A_{dt:%Y%m%dT%H%M%S}_R{spec.orbit:03d}_T{spec.tile}_{proc:%Y%m%dT%H%M%S}"
    valid10, bands = s2_scene(rng, reg, ground10, lc20, spec)
    c0 = round(spec.cols[0] * (reg.w10 // 6)) * 6
    c1 = round(spec.cols[1] * (reg.w10 // 6)) * 6
    assets = _write_s2_assets(b, iid, reg, bands, c0, c1)
    raster_valid = valid10[:, c0:c1]
    geom = footprint(raster_valid, reg.transform(10, c0), s.crs)
    proj, proj_ext = proj_properties(spec.proj, b.epsg)
    nod_pct = round(100.0 * (1.0 - float(raster_valid.mean())), 4)
    b.items.append({
        "type": "Feature", "stac_version": "1.0.0",
        "stac_extensions": stac_extensions("eo", proj_ext, "sat", "raster"),
        "id": iid, "collection": s.s2_collection, "geometry": geom, "bbox": geometry_bbox(geom),
        "properties": {
            "datetime": stac_datetime(dt), "platform": f"Sentinel-2{spec.sat}", "constellation": "Sentinel 2",
            "instruments": ["msi"], "eo:cloud_cover": spec.cloud_cover,
            "s2:mgrs_tile": spec.tile, "s2:processing_baseline": spec.baseline,
            "s2:product_type": "S2MSI2A", "s2:nodata_pixel_percentage": nod_pct,
            "s2:generation_time": stac_datetime(proc), "sat:relative_orbit": spec.orbit,
            "sat:orbit_state": "descending", **proj,
        },
        "links": [], "assets": assets,
    })
    # facts on the default chip (10 m; SCL by nearest = 2x2 repeat on this lattice)
    full_scl10 = upsample(bands["SCL"], 2)
    chip_scl = reg.chip_window(full_scl10)
    cf, nf = chip_fractions(chip_scl)
    off = S2_OFFSET if baseline_has_offset(spec.baseline) else 0
    b.facts[iid] = {"collection": s.s2_collection, "scenario": sc.name, "datetime": stac_datetime(dt),
                    "baseline": spec.baseline, "offset": off, "eo:cloud_cover": spec.cloud_cover,
                    "mgrs_tile": spec.tile, "proj": "proj:epsg" if spec.proj == "epsg" else "proj:code",
                    "chip_cloud_fraction": round(cf, 6), "chip_nodata_fraction": round(nf, 6),
                    "chip_valid_fraction": round(float(reg.chip_window(valid10).mean()), 6)}
    return iid, chip_scl


def _write_s2_assets(b: _Build, iid: str, reg: Region, bands: Mapping[str, np.ndarray], c0: int,
                     c1: int) -> dict[str, Any]:
    """The band and SCL COGs of one S2 item (columns ``c0:c1`` of the region at 10 m), as assets."""
    assets: dict[str, Any] = {}
    for name in (*S2_BANDS, "SCL"):
        res = S2_RESOLUTION[name]
        k = res // 10
        arr = bands[name][:, c0 // k:c1 // k]
        tr = reg.transform(res, c0 // k)
        href = b.write(f"cogs/sentinel-2-l2a/{iid}/{name}.tif", arr, crs=b.settings.crs, transform=tr, nodata=0,
                       description=name)
        extra: dict[str, Any] = {}
        if name == "SCL":
            title = "Scene classification map (SCL)"
        else:
            title = f"Band {int(name[1:3]) if name != 'B8A' else '8A'} - {S2_COMMON_NAMES[name]} - {res}m"
            extra["eo:bands"] = [{"name": name, "common_name": S2_COMMON_NAMES[name],
                                  "center_wavelength": S2_WAVELENGTHS[name]}]
        assets[name] = cog_asset(href, title, transform=tr, shape=arr.shape,
                                 dtype="uint8" if name == "SCL" else "uint16", nodata=0, gsd=float(res), extra=extra)
    return assets


# ----------------------------------------------------------------------------------------
# Sentinel-1 RTC
# ----------------------------------------------------------------------------------------
def _write_s1_scenes(b: _Build, si: int, sc: ScenarioSpec, reg: Region, rng: np.random.Generator,
                     lc10: np.ndarray) -> list[str]:
    """The scenario's S1 RTC items (vv/vh linear power COGs, items, facts); returns their ids."""
    if not sc.s1:
        return []
    s = b.settings
    texture = s1_texture(rng, reg)
    s1_ids: list[str] = []
    for k_s1, s1 in enumerate(sc.s1):
        dt = s1.acquired
        end = dt + timedelta(seconds=25)
        absorb = 54000 + 37 * si + k_s1
        iid = (f"S1{s1.platform}_IW_GRDH_1SDV_{dt:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}_"
               f"{absorb:06d}_{(0x6A000 + absorb) & 0xFFFFFF:06X}_rtc")
        valid, lin = s1_scene(rng, reg, lc10, texture)
        tr = reg.transform(10)
        assets: dict[str, Any] = {}
        for pi, pol in enumerate(("vv", "vh")):
            href = b.write(f"cogs/sentinel-1-rtc/{iid}/{pol}.tif", lin[pi], crs=s.crs, transform=tr,
                           nodata=S1_NODATA, description=pol)
            assets[pol] = cog_asset(href, f"{pol.upper()}: vertical transmit, "
                                    f"{'vertical' if pol == 'vv' else 'horizontal'} receive", transform=tr,
                                    shape=lin[pi].shape, dtype="float32", nodata=S1_NODATA, gsd=10.0,
                                    unit="linear power (gamma0)")
        geom = footprint(valid, tr, s.crs)
        proj, proj_ext = proj_properties(s1.proj, b.epsg)
        b.items.append({
            "type": "Feature", "stac_version": "1.0.0",
            "stac_extensions": stac_extensions("sar", "sat", proj_ext, "raster"),
            "id": iid, "collection": s.s1_collection, "geometry": geom, "bbox": geometry_bbox(geom),
            "properties": {
                "datetime": stac_datetime(dt), "start_datetime": stac_datetime(dt), "end_datetime": stac_datetime(end),
                "platform": f"SENTINEL-1{s1.platform}", "constellation": "Sentinel-1", "instruments": ["c-sar"],
                "sar:instrument_mode": "IW", "sar:frequency_band": "C", "sar:polarizations": ["VV", "VH"],
                "sar:product_type": "GRD", "sat:orbit_state": s1.orbit_state,
                "sat:relative_orbit": 33 if s1.orbit_state == "ascending" else 106, **proj,
            },
            "links": [], "assets": assets,
        })
        s1_ids.append(iid)
        b.facts[iid] = {"collection": s.s1_collection, "scenario": sc.name, "datetime": stac_datetime(dt),
                        "orbit_state": s1.orbit_state, "proj": "proj:epsg" if s1.proj == "epsg" else "proj:code",
                        "units": "linear", "nodata": S1_NODATA}
    return s1_ids


# ----------------------------------------------------------------------------------------
# DEM
# ----------------------------------------------------------------------------------------
def _write_dem_tiles(b: _Build, sc: ScenarioSpec, reg: Region) -> list[str]:
    """The scenario's Copernicus DEM tiles (one, or two split across the chip); returns their ids."""
    if sc.dem_split is None:
        return []
    w, so, e, n = reg.bounds_4326
    split_lon = None
    if sc.dem_split < 1.0:
        cb = reg.chip.bounds_4326
        split_lon = cb[0] + sc.dem_split * (cb[2] - cb[0])
    pieces = [(w, e)] if split_lon is None else [(w, split_lon), (split_lon, e)]
    return [_write_dem_tile(b, sc, i, pw, so, pe, n) for i, (pw, pe) in enumerate(pieces)]


def _write_dem_tile(b: _Build, sc: ScenarioSpec, index: int, pw: float, so: float, pe: float, n: float) -> str:
    """One DEM tile over ``pw..pe`` x ``so..n`` (degrees) from :func:`fixture_elevation`; returns its id."""
    # real tiles: pixel centres on whole arc-seconds -> edges at half arc-seconds
    e0 = math.floor(pw / ARCSEC) - 0.5
    e1 = math.ceil(pe / ARCSEC) + 0.5
    n0 = math.ceil(n / ARCSEC) + 0.5
    n1 = math.floor(so / ARCSEC) - 0.5
    width, height = round(e1 - e0), round(n0 - n1)
    tr = Affine(ARCSEC, 0.0, e0 * ARCSEC, 0.0, -ARCSEC, n0 * ARCSEC)
    lons = (e0 + 0.5 + np.arange(width)) * ARCSEC
    lats = (n0 - 0.5 - np.arange(height)) * ARCSEC
    z = fixture_elevation(lons[None, :], lats[:, None]).astype(np.float32)
    lat_tag = f"N{math.floor(so):02d}_00"
    lon_tag = f"W{math.ceil(-pw):03d}_00"
    iid = f"Copernicus_DSM_COG_10_{lat_tag}_{lon_tag}_DEM_{sc.name}_{index}"
    href = b.write(f"cogs/cop-dem-glo-30/{iid}/data.tif", z, crs="EPSG:4326", transform=tr, nodata=None,
                   description="elevation")
    geom = footprint(np.ones(z.shape, dtype=bool), tr, "EPSG:4326")
    s = b.settings
    b.items.append({
        "type": "Feature", "stac_version": "1.0.0",
        "stac_extensions": stac_extensions("proj1", "raster"),
        "id": iid, "collection": s.dem_collection, "geometry": geom, "bbox": geometry_bbox(geom),
        "properties": {"datetime": "2021-04-22T00:00:00Z", "start_datetime": "2011-12-11T00:00:00Z",
                       "end_datetime": "2015-01-21T00:00:00Z", "platform": "TanDEM-X",
                       "gsd": 30, "proj:epsg": 4326},
        "links": [],
        "assets": {"data": cog_asset(href, "Elevation (m)", transform=tr, shape=z.shape,
                                     dtype="float32", nodata=None, gsd=30.0, unit="metre",
                                     extra={"roles": ["data"]})},
    })
    b.facts[iid] = {"collection": s.dem_collection, "scenario": sc.name, "crs": "EPSG:4326",
                    "resolution_deg": ARCSEC, "units": "metre"}
    return iid


# ----------------------------------------------------------------------------------------
# Expected facts
# ----------------------------------------------------------------------------------------
def _expected_facts(sc: ScenarioSpec, s: Settings, s2: Sequence[tuple[str, np.ndarray]], s1_ids: list[str],
                    dem_ids: list[str]) -> dict[str, Any]:
    """``expected[scenario]`` (see :func:`build_fixture_catalog`); ``s2`` holds ``(item id, chip SCL)`` in
    ``sc.s2`` order."""
    s2_ids = [iid for iid, _ in s2]
    s2_scl_chip = dict(s2)
    order = sorted(range(len(sc.s2)), key=lambda i: sc.s2[i].dt, reverse=True)
    chosen = [s2_ids[i] for i in sc.choose]
    exp: dict[str, Any] = {
        "when": sc.when, "s2_ids": chosen, "reason": sc.reason,
        "s2_candidates": [s2_ids[i] for i in order],
        "prefiltered_ids": [s2_ids[i] for i in order if sc.s2[i].cloud_cover > s.scene_prefilter_cloud_pct],
        "dem_ids": dem_ids, "s1_ids": s1_ids,
    }
    if chosen:
        spec0 = sc.s2[sc.choose[0]]
        mosaic_scl = np.zeros_like(s2_scl_chip[chosen[0]])
        for iid in chosen:
            mosaic_scl = np.where(mosaic_scl == 0, s2_scl_chip[iid], mosaic_scl)
        cf, nf = chip_fractions(mosaic_scl)
        off = S2_OFFSET if baseline_has_offset(spec0.baseline) else 0
        exp.update(s2_datetime=stac_datetime(spec0.acquired), s2_baseline=spec0.baseline, s2_offset=off,
                   s2_offset_removed=bool(off), chip_cloud_fraction=round(cf, 6),
                   chip_nodata_fraction=round(nf, 6))
    else:
        exp.update(s2_datetime=None, s2_baseline=None, s2_offset=None, s2_offset_removed=None,
                   chip_cloud_fraction=None, chip_nodata_fraction=None)
    if sc.s1_choose is not None:
        exp.update(s1_id=s1_ids[sc.s1_choose], s1_datetime=stac_datetime(sc.s1[sc.s1_choose].acquired))
    else:
        exp.update(s1_id=None, s1_datetime=None)
    return exp
