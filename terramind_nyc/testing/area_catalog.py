"""A local STAC catalog of generated imagery over a list of points: one clear scene per sensor.

    items = write_area_catalog(root, settings, [(40.755, -73.984), ...], size_m=2240)
    Settings(catalog_provider="local", catalog_path=str(items), ...)

``terramind-nyc sniff --offline`` runs its ten NYC areas on it. Built from the fixture generators
(:mod:`terramind_nyc.testing.scenarios`, :mod:`terramind_nyc.testing.synth`,
:mod:`terramind_nyc.testing.cogs`); the imagery is plausible, not real.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from ..sensors import S1_NODATA, S2_BANDS
from ..settings import Settings
from . import cogs
from .scenarios import Region, S2Spec, check_disjoint, scenario_region
from .synth import S2_RESOLUTION, fixture_elevation, ground_cover, s1_scene, s1_texture, s2_scene

__all__ = ["write_area_catalog"]

log = logging.getLogger(__name__)


def write_area_catalog(root: Path, s: Settings, points: Sequence[tuple[float, float]], *, size_m: float,
                       margin_m: float = 120.0, seed: int = 0) -> Path:
    """One clear S2 L2A scene, one S1 RTC scene and one DEM tile over a ``size_m`` window around each
    (lat, lon) point (plus ``margin_m``): COGs under ``root/cogs``, ``root/items.json`` (returned)
    with plain file paths as hrefs, for the ``local`` provider. Windows that overlap share one region."""

    groups: list[tuple[list[float], Any]] = []  # areas whose windows overlap share one region: (bounds, chip)
    for reg in (scenario_region(lat, lon, s, size_m, margin_m) for lat, lon in points):
        b = list(reg.bounds)
        g = next((g for g in groups if b[0] < g[0][2] and g[0][0] < b[2] and b[1] < g[0][3] and g[0][1] < b[3]), None)
        if g is None:
            groups.append((b, reg.chip))
        else:
            g[0][:] = [min(b[0], g[0][0]), min(b[1], g[0][1]), max(b[2], g[0][2]), max(b[3], g[0][3])]
    regions = [Region(s.crs, x0, y1, round((x1 - x0) / 10), round((y1 - y0) / 10), c, round((y1 - c.bounds[3]) / 10),
                      round((c.bounds[0] - x0) / 10)) for (x0, y0, x1, y1), c in groups]
    check_disjoint({str(i): r for i, r in enumerate(regions)})
    spec = S2Spec("2024-07-18T15:48:21Z", "05.10", 3.0, 0.0, "18TWL", outside_cloud=0.0)
    s1_dt = datetime.fromisoformat("2024-07-20T22:54:12Z")
    proj, ext = cogs.proj_properties("code", int(s.crs.split(":")[1]))
    items: list[dict[str, Any]] = []
    writer = cogs.CogWriter()

    def cog(rel: str, arr: Any, crs: str, tr: Any, nodata: Any, gsd: float, **kw: Any) -> dict[str, Any]:
        writer.add(root / rel, arr, crs=crs, transform=tr, nodata=nodata, description=Path(rel).stem)
        return cogs.cog_asset(str((root / rel).resolve()), Path(rel).stem, transform=tr, shape=arr.shape,
                              dtype=arr.dtype.name, nodata=nodata, gsd=gsd, **kw)

    def item(collection: str, iid: str, geom: Any, exts: tuple[str, ...], props: Any, assets: Any) -> None:
        items.append({"type": "Feature", "stac_version": "1.0.0", "stac_extensions": cogs.stac_extensions(*exts),
                      "id": iid, "collection": collection, "geometry": geom, "bbox": cogs.geometry_bbox(geom),
                      "properties": props, "links": [], "assets": assets})

    for i, reg in enumerate(regions):
        rng = np.random.default_rng([seed, 1000 + i])
        lc10, ground10 = ground_cover(rng, reg.h10, reg.w10)
        valid10, bands = s2_scene(rng, reg, ground10, lc10[::2, ::2], spec)
        iid = f"S2B_MSIL2A_{spec.acquired:%Y%m%dT%H%M%S}_R054_T18TWL_SNIFF{i:02d}"
        assets = {b: cog(f"cogs/{s.s2_collection}/{iid}/{b}.tif", bands[b], s.crs, reg.transform(S2_RESOLUTION[b]),
                         0, float(S2_RESOLUTION[b]), extra=None if b == "SCL" else {"eo:bands": [
                             {"name": b, "common_name": cogs.S2_COMMON_NAMES[b]}]}) for b in (*S2_BANDS, "SCL")}
        item(s.s2_collection, iid, cogs.footprint(valid10, reg.transform(10), s.crs), ("eo", ext, "raster"),
             {"datetime": cogs.stac_datetime(spec.acquired), "platform": "Sentinel-2B", "eo:cloud_cover": 3.0,
              "s2:mgrs_tile": "18TWL", "s2:processing_baseline": spec.baseline, **proj}, assets)
        valid1, lin = s1_scene(rng, reg, lc10, s1_texture(rng, reg))
        iid = f"S1A_IW_GRDH_1SDV_{s1_dt:%Y%m%dT%H%M%S}_SNIFF{i:02d}_rtc"
        assets = {p: cog(f"cogs/{s.s1_collection}/{iid}/{p}.tif", lin[k], s.crs, reg.transform(10), S1_NODATA, 10.0,
                         unit="linear power (gamma0)") for k, p in enumerate(("vv", "vh"))}
        item(s.s1_collection, iid, cogs.footprint(valid1, reg.transform(10), s.crs), ("sar", ext, "raster"),
             {"datetime": cogs.stac_datetime(s1_dt), "platform": "SENTINEL-1A", "sar:instrument_mode": "IW",
              "sar:polarizations": ["VV", "VH"], "sat:orbit_state": "ascending", **proj}, assets)
        w, so, e, n = reg.bounds_4326  # DEM pixel centres on whole arc-seconds, like Copernicus GLO-30
        A = cogs.ARCSEC
        c0, r0 = math.floor(w / A) - 0.5, math.ceil(n / A) + 0.5
        lons = (c0 + 0.5 + np.arange(round(math.ceil(e / A) + 0.5 - c0))) * A
        lats = (r0 - 0.5 - np.arange(round(r0 - math.floor(so / A) + 0.5))) * A
        z = fixture_elevation(lons[None, :], lats[:, None]).astype(np.float32)
        tr = Affine(A, 0.0, c0 * A, 0.0, -A, r0 * A)
        iid = f"Copernicus_DSM_COG_10_N40_00_W074_00_DEM_SNIFF{i:02d}"
        item(s.dem_collection, iid, cogs.footprint(np.ones(z.shape, bool), tr, "EPSG:4326"), ("proj1", "raster"),
             {"datetime": "2021-04-22T00:00:00Z", "proj:epsg": 4326},
             {"data": cog(f"cogs/{s.dem_collection}/{iid}/data.tif", z, "EPSG:4326", tr, None, 30.0, unit="metre")})
    root.mkdir(parents=True, exist_ok=True)
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    log.debug("area catalog: %d items, %d COGs under %s", len(items), writer.count, root)
    return root / "items.json"
