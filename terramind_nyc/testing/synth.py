"""Synthetic fields for the fixture scenes: ground, land cover, SCL and clouds, S2 DN, S1 power, terrain.

Everything here is drawn from a caller's :class:`numpy.random.Generator` in a fixed order, so a
scenario's pixels depend only on the seed and the scenario. :func:`chip_fractions` and
:func:`baseline_has_offset` are the generator's own computations of the facts (the test
oracle), written independently of the library's reader.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import sensors
from ..sensors import S1_NODATA, S2_BANDS, S2_OFFSET_DN, S2_RESOLUTION, SCL_CLOUD, SCL_NODATA
from .scenarios import Region, S2Spec

__all__ = [
    "S2_OFFSET",
    "S2_RESOLUTION",
    "baseline_has_offset",
    "chip_fractions",
    "fixture_elevation",
    "ground_cover",
    "s1_scene",
    "s1_texture",
    "s2_scene",
    "upsample",
]

#: DN added to every valid S2 L2A pixel from processing baseline 04.00 on.
S2_OFFSET = S2_OFFSET_DN

# Surface reflectance x 10000 per land-cover class (water, vegetation, built-up, bare), bands as S2_BANDS.
_SIGNATURE = np.array([
    [600, 520, 480, 320, 260, 210, 190, 160, 140, 90, 70, 50],                       # water
    [300, 350, 620, 360, 1050, 2500, 3000, 3250, 3350, 3300, 1800, 900],              # vegetation
    [1250, 1150, 1200, 1250, 1380, 1470, 1560, 1620, 1660, 1600, 1900, 1720],         # built-up
    [900, 1000, 1300, 1620, 1800, 2000, 2200, 2300, 2400, 2400, 2850, 2300],          # bare
], dtype=np.float64)
_CLOUD_SIG = np.array([6800, 7000, 7150, 7300, 7400, 7500, 7600, 7700, 7700, 4200, 5100, 4100], dtype=np.float64)
_SCL_OF_CLASS = np.array([6, 4, 5, 5], dtype=np.uint8)
# Linear gamma0 (vv, vh) per land-cover class.
_S1_SIG = np.array([[0.004, 0.0007], [0.09, 0.022], [0.45, 0.06], [0.06, 0.012]], dtype=np.float64)


def baseline_has_offset(baseline: str | None) -> bool:
    """Whether S2 L2A DN of this ``s2:processing_baseline`` carry the +1000 offset (>= 04.00).

    False for a missing or unparseable baseline (:func:`terramind_nyc.sensors.baseline_has_offset`
    says None there).
    """
    return bool(sensors.baseline_has_offset(baseline))


def fixture_elevation(lon: Any, lat: Any) -> np.ndarray:
    """The fixture DEM's terrain: metres above sea level at WGS84 ``lon, lat`` (arrays or scalars).

    A smooth analytic surface (0..~110 m, like NYC), so a DEM read onto any grid can be
    checked against the truth at its pixel centres; bilinear resampling of the 1 arc-second
    fixture DEM reproduces it to a few centimetres.
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    z = (45.0 + 30.0 * np.sin(2 * np.pi * (lon + 74.0) / 0.07) * np.cos(2 * np.pi * (lat - 40.7) / 0.05)
         + 120.0 * (lat - 40.7) + 15.0 * np.cos(2 * np.pi * (lon + 74.0) / 0.23))
    return np.clip(z, 0.0, None)


def chip_fractions(scl: np.ndarray) -> tuple[float, float]:
    """``(cloud_fraction, nodata_fraction)`` of SCL classes on a chip (DESIGN section 2).

    cloud = pixels in {3, 8, 9, 10} / pixels not in {0, 1}; nodata = pixels in {0, 1} / all
    pixels. A chip without valid pixels has cloud fraction 1.
    """
    scl = np.asarray(scl)
    invalid = np.isin(scl, SCL_NODATA)
    valid = int((~invalid).sum())
    cloud = int(np.isin(scl, SCL_CLOUD).sum())
    return (cloud / valid if valid else 1.0), float(invalid.mean()) if scl.size else 1.0


def _smooth(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance smooth noise (float32) with features about ``scale`` pixels across."""
    from scipy.ndimage import zoom

    ch, cw = math.ceil(shape[0] / scale) + 2, math.ceil(shape[1] / scale) + 2
    coarse = rng.standard_normal((ch, cw)).astype(np.float32)
    fine = zoom(coarse, scale, order=1, grid_mode=False)
    out = fine[: shape[0], : shape[1]]
    if out.shape != shape:  # zoom rounding: pad by edge values
        out = np.pad(out, ((0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1])), mode="edge")
    out = out - out.mean()
    return out / (out.std() or np.float32(1.0))


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return a
    h, w = a.shape[-2] // k, a.shape[-1] // k
    return a[..., : h * k, : w * k].reshape(*a.shape[:-2], h, k, w, k).mean(axis=(-3, -1))


def upsample(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` with each pixel repeated ``k`` x ``k`` times (nearest upsampling by a whole factor)."""
    return a if k == 1 else np.repeat(np.repeat(a, k, axis=-2), k, axis=-1)


def ground_cover(rng: np.random.Generator, h10: int, w10: int) -> tuple[np.ndarray, np.ndarray]:
    """Land-cover classes and surface reflectance (x 10000, float32) per band at 10 m."""
    f1 = _smooth(rng, (h10, w10), 60.0)
    f2 = _smooth(rng, (h10, w10), 18.0)
    lc = np.full((h10, w10), 2, dtype=np.uint8)  # built-up
    lc[f2 > 0.55] = 1  # vegetation
    lc[f2 < -1.3] = 3  # bare
    lc[f1 < -1.0] = 0  # water
    tex = 1.0 + 0.06 * _smooth(rng, (h10, w10), 3.0)
    refl = _SIGNATURE.astype(np.float32)[lc].transpose(2, 0, 1) * tex[None]
    return lc, np.clip(refl, 1.0, None)


def _scl_and_clouds(rng: np.random.Generator, region: Region, lc20: np.ndarray, spec: S2Spec) -> np.ndarray:
    """SCL at 20 m over the whole region for one scene (before nodata is applied)."""
    h, w = lc20.shape
    scl = _SCL_OF_CLASS[lc20].copy()
    noise = rng.random((h, w))
    scl[noise < 0.01] = 7  # unclassified
    scl[(noise >= 0.01) & (noise < 0.015)] = 2  # dark area
    # chip window at 20 m (covering every 20 m pixel the chip touches), with a 300 m guard
    r0, c0 = region.chip_r // 2, region.chip_c // 2
    r1 = (region.chip_r + region.chip.height + 1) // 2
    c1 = (region.chip_c + region.chip.width + 1) // 2
    inside = np.zeros((h, w), dtype=bool)
    inside[r0:r1, c0:c1] = True
    # Chebyshev distance (20 m px) from the chip; "outside" clouds keep a 300 m guard (wider
    # than the cloud-shadow offset) and thin out towards it instead of ending in a hard edge
    rr, cc = np.mgrid[0:h, 0:w]
    dist = np.maximum(np.maximum(r0 - rr, rr - (r1 - 1)), np.maximum(c0 - cc, cc - (c1 - 1))).clip(0)
    guard = dist <= 15
    field_ = _smooth(rng, (h, w), 14.0)
    field_out = field_ - np.where(guard, 100.0, 2.5 * np.clip(1.0 - (dist - 15) / 25.0, 0.0, 1.0))

    def clouds(thr: float, fld: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cloud = fld > thr
        cirrus = (fld > thr - 0.25) & ~cloud
        shadow = np.zeros_like(cloud)
        shadow[8:, 10:] = cloud[:-8, :-10]
        shadow &= ~(cloud | cirrus)
        return cloud, cirrus, shadow

    def frac(thr: float, fld: np.ndarray, over: np.ndarray) -> float:
        cl, ci, sh = clouds(thr, fld)
        return float((cl | ci | sh)[over].mean())

    def solve(target: float, fld: np.ndarray, over: np.ndarray) -> float:
        lo, hi = -4.0, 4.0
        for _ in range(24):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if frac(mid, fld, over) < target else (mid, hi)
        return (lo + hi) / 2

    masks = []
    if spec.chip_cloud > 0:
        masks.append(clouds(solve(spec.chip_cloud, field_, inside), field_))
    if spec.outside_cloud > 0:
        cloud, cirrus, shadow = clouds(solve(spec.outside_cloud, field_out, ~guard), field_out)
        masks.append((cloud, cirrus, shadow & ~guard))
    for cloud, cirrus, shadow in masks:
        high = cloud & (field_ > np.quantile(field_[cloud], 0.5) if cloud.any() else cloud)
        scl[shadow] = 3
        scl[cirrus] = 10
        scl[cloud] = 8
        scl[high] = 9
    return scl


def s2_scene(rng: np.random.Generator, region: Region, ground10: np.ndarray, lc20: np.ndarray,
             spec: S2Spec) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Valid mask (10 m), and SCL (20 m) and per-band DN arrays at native resolution over the region, for one scene."""
    scl20 = _scl_and_clouds(rng, region, lc20, spec)
    h60, w60 = region.h10 // 6, region.w10 // 6
    valid60 = np.zeros((h60, w60), dtype=bool)
    c0, c1 = round(spec.cols[0] * w60), round(spec.cols[1] * w60)
    valid60[:, c0:c1] = True
    if spec.chip_valid is not None:
        # a swath edge: nodata above a diagonal line, placed so the chip keeps ~chip_valid valid
        rr, cc = np.mgrid[0:h60, 0:w60]
        chip60 = np.zeros((h60, w60), dtype=bool)
        chip60[region.chip_r // 6:(region.chip_r + region.chip.height) // 6,
               region.chip_c // 6:(region.chip_c + region.chip.width) // 6] = True
        score = rr + 0.6 * cc
        thr = np.quantile(score[chip60], 1.0 - spec.chip_valid)
        valid60 &= score >= thr
    valid20 = upsample(valid60, 3)
    valid10 = upsample(valid60, 6)
    scl20 = np.where(valid20, scl20, 0).astype(np.uint8)

    cloud10 = upsample(np.isin(scl20, (8, 9)), 2)
    cirrus10 = upsample(scl20 == 10, 2)
    shadow10 = upsample(scl20 == 3, 2)
    refl = ground10 * np.float32(spec.gain)
    if cloud10.any() or cirrus10.any():
        cloud_tex = upsample(0.85 + 0.1 * _smooth(rng, (region.h10 // 2, region.w10 // 2), 10.0), 2)
        sig = _CLOUD_SIG.astype(np.float32)[:, None]
        refl[:, cirrus10] = 0.6 * refl[:, cirrus10] + 0.4 * sig * cloud_tex[cirrus10][None]
        refl[:, cloud10] = sig * cloud_tex[cloud10][None]
    refl[:, shadow10] *= np.float32(0.35)
    offset = S2_OFFSET if baseline_has_offset(spec.baseline) else 0
    bands: dict[str, np.ndarray] = {}
    for i, b in enumerate(S2_BANDS):
        k = S2_RESOLUTION[b] // 10
        r = _block_mean(refl[i], k)
        dn = np.clip(np.rint(r) + offset, 1, 65535).astype(np.uint16)
        dn[~upsample(valid60, 6 // k)] = 0
        bands[b] = dn
    bands["SCL"] = scl20
    return valid10, bands


def s1_texture(rng: np.random.Generator, region: Region) -> np.ndarray:
    """A scenario's S1 texture: a smooth multiplicative field around 1 at 10 m, shared by its scenes."""
    return 1.0 + 0.15 * _smooth(rng, (region.h10, region.w10), 10.0)


def s1_scene(rng: np.random.Generator, region: Region, lc10: np.ndarray,
             texture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid mask (10 m) and linear gamma0 (vv, vh; float32, nodata -32768) over the region, for one scene."""
    # speckle (4.4 looks) drawn at 20 m and repeated: realistic statistics, half the entropy
    speck = upsample(rng.gamma(4.4, 1.0 / 4.4, (2, region.h10 // 2, region.w10 // 2)).astype(np.float32), 2)
    sig = _S1_SIG.astype(np.float32)[lc10].transpose(2, 0, 1) * texture[None]
    lin = np.clip(sig, 1e-5, None) * speck
    # keep 8 mantissa bits (relative precision ~4e-3, far below speckle) so the
    # fixture stays small; the stored values are the truth tests compare against
    lin = (lin.view(np.uint32) & np.uint32(0xFFFF8000)).view(np.float32)
    valid = np.ones((region.h10, region.w10), dtype=bool)
    valid[:, : max(1, region.chip_c // 3)] = False  # a swath-edge stripe west of the chip
    lin[:, ~valid] = S1_NODATA
    return valid, lin
