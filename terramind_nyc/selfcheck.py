"""``terramind-nyc selfcheck``: the whole fetch path, end to end, on this machine, offline.

It generates a small STAC catalog of realistic COGs (:mod:`terramind_nyc.testing`), reads
it through the ``local`` catalog provider (no server, no network), builds a tiny TerraMind two-head artifact with random weights
(unless a checkpoint is given), and runs ``fetch``, ``fetch_riprap`` and ``fetch_many``
against them, checking scene choice, mosaicking, the missing-modality path, caching and the
client's dict, and writes the JSON, GeoTIFF, GeoJSON and quicklook outputs. Random weights mean the figures are meaningless; the plumbing is what is checked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import Settings

__all__ = ["Check", "SelfcheckReport", "run_selfcheck"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One selfcheck step."""

    name: str
    """What was checked."""
    ok: bool
    """Whether it passed."""
    detail: str
    """Figures or the failure."""
    seconds: float
    """How long it took."""


@dataclass(frozen=True)
class SelfcheckReport:
    """What :func:`run_selfcheck` did."""

    checks: tuple[Check, ...]
    """Every step, in order."""
    result: Any | None
    """The :class:`~terramind_nyc.Result` of the first scenario (None if it failed)."""
    outputs: dict[str, str]
    """Output kind (``json``, ``geotiff``, ``geojson``, ``quicklook``) -> file written."""
    random_weights: bool
    """True when the checkpoint was the generated random-weight one."""

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.ok]


class _Run:
    """One selfcheck run: its folders, its settings, and one method per step."""

    def __init__(self, root: Path, *, checkpoint: str | None, backend: str, precision: str,
                 outdir: str | Path | None, progress: Callable[[Check], None] | None) -> None:
        self.root = root
        self.checkpoint = checkpoint
        self.backend = backend
        self.precision = precision
        self.outdir = outdir
        self.progress = progress
        self.checks: list[Check] = []
        self.result: Any | None = None
        self.outputs: dict[str, str] = {}
        self.cat: Any = None
        self.settings: Settings | None = None

    def report(self) -> SelfcheckReport:
        return SelfcheckReport(tuple(self.checks), self.result, dict(self.outputs), random_weights=not self.checkpoint)

    def step(self, name: str, fn: Callable[[], str]) -> bool:
        t = time.perf_counter()
        try:
            detail, ok = fn(), True
        except Exception as exc:
            log.debug("selfcheck step %s failed", name, exc_info=True)
            detail, ok = f"{type(exc).__name__}: {exc}", False
        c = Check(name, ok, detail, time.perf_counter() - t)
        self.checks.append(c)
        if self.progress is not None:
            self.progress(c)
        return ok

    # --- set-up ----------------------------------------------------------------------------
    def build_catalog(self) -> str:
        from .testing import build_fixture_catalog

        imagery = self.root / "imagery"
        imagery.mkdir(parents=True, exist_ok=True)
        # asset hrefs are plain file paths: the local provider reads them with no server
        self.cat = build_fixture_catalog(imagery, imagery.resolve().as_posix())
        return f"{len(self.cat.items())} STAC items over generated COGs, {len(self.cat.points)} scenarios (local provider)"

    def build_model(self) -> str:
        from .cache import clear_caches

        if self.checkpoint:
            ck, detail = self.checkpoint, f"using checkpoint {self.checkpoint}"
        else:
            from .testing.model import make_tiny_artifact

            path = make_tiny_artifact(self.root / "tiny-artifact")
            ck = str(path)
            detail = f"tiny two-head TerraMind artifact with RANDOM weights at {path.name} (figures are meaningless)"
        self.settings = self.cat.settings(checkpoint=ck, backend=self.backend, precision=self.precision,
                                          cache_enabled=True)
        clear_caches()
        return detail

    # --- the fetch path --------------------------------------------------------------------
    def scenario(self, name: str, expect_missing: tuple[str, ...] = ()) -> Callable[[], str]:
        def run() -> str:
            from .api import fetch
            from .errors import MissingModalityWarning

            lat, lon = self.cat.points[name]
            exp = self.cat.expected[name]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r = fetch(lat, lon, when=self.cat.when(name), settings=self.settings)
            s2 = r.provenance.imagery["S2L2A"]
            if sorted(s2["item_ids"]) != sorted(exp["s2_ids"]):
                raise AssertionError(f"chose {s2['item_ids']}, expected {exp['s2_ids']}")
            total = sum(r.lulc_fractions.values())
            if not math.isclose(total, 1.0, abs_tol=1e-6) or not 0 <= r.building_density <= 1:
                raise AssertionError(f"fractions sum to {total}, density {r.building_density}")
            if tuple(r.provenance.modalities_missing) != expect_missing:
                raise AssertionError(f"missing {r.provenance.modalities_missing}, expected {expect_missing}")
            if expect_missing and not any(issubclass(w.category, MissingModalityWarning) for w in caught):
                raise AssertionError("no MissingModalityWarning for the missing modality")
            json.dumps(r.to_dict(), allow_nan=False)
            if self.result is None:
                self.result = r
            return (f"S2 {','.join(s2['item_ids'])}; buildings {100 * r.building_density:.1f}%, "
                    f"dominant {r.dominant_class}; {r.provenance.backend} {r.provenance.precision}; "
                    f"{r.timings['total']:.2f} s")
        return run

    def cached(self) -> str:
        from .api import fetch

        lat, lon = self.cat.points["clear"]
        t = time.perf_counter()
        r = fetch(lat, lon, when=self.cat.when("clear"), settings=self.settings)
        ms = 1000 * (time.perf_counter() - t)
        if not r.cached:
            raise AssertionError("second identical fetch did not hit the result cache")
        return f"warm fetch {ms:.2f} ms"

    def riprap(self) -> str:
        from .riprap import fetch_riprap, fetch_views, schema

        lat, lon = self.cat.points["clear"]
        ok = fetch_riprap(lat, lon, when=self.cat.when("clear"), settings=self.settings)
        out = fetch_riprap(40.7128, -80.0, settings=self.settings)
        views = fetch_views(lat, lon, when=self.cat.when("clear"), settings=self.settings)
        json.dumps([ok, views], allow_nan=False)
        if not ok.get("ok") or out.get("ok") or "skipped" not in out or not all(v["ok"] for v in views.values()):
            raise AssertionError(f"unexpected riprap dicts: {ok} / {out} / {views}")
        checked = "views not schema-checked (install jsonschema)"
        with contextlib.suppress(ImportError):
            import jsonschema

            jsonschema.validate(views, schema())
            checked = "views match their schema"
        lulc = views["terramind_lulc"]
        return (f"pct_buildings {ok['pct_buildings']}, dominant {lulc['dominant_class']} {lulc['dominant_pct']}; "
                f"{checked}; out of NYC skipped")

    def many(self) -> str:
        from .api import fetch_many

        assert self.settings is not None
        lat, lon = self.cat.points["clear"]
        pts = [(lat, lon), (lat + 0.002, lon + 0.002), ("not", "a point"), (lat - 0.002, lon)]
        items = fetch_many(pts, when=self.cat.when("clear"), settings=self.settings.replace(cache_enabled=False),
                           progress=False)
        oks = [it.ok for it in items]
        if oks != [True, True, False, True]:
            raise AssertionError(f"per-point outcome {oks}")
        return "3 points in one shared window, 1 invalid point reported"

    # --- outputs ---------------------------------------------------------------------------
    def write_outputs(self) -> str:
        r = self.result
        if r is None:
            raise AssertionError("no result to write (the first fetch failed)")
        out = Path(self.outdir) if self.outdir else self.root / "outputs"
        out.mkdir(parents=True, exist_ok=True)
        files = {"json": out / "result.json", "geotiff": out / "result.tif",
                 "geojson": out / "result.geojson", "quicklook": out / "quicklook.png"}
        from .atomic import atomic_write_text

        atomic_write_text(files["json"], json.dumps(r.to_dict(), indent=2, allow_nan=False))
        r.to_geotiff(files["geotiff"])
        r.write_geojson(files["geojson"])
        gj = json.loads(files["geojson"].read_text())
        if gj.get("type") != "FeatureCollection" or not gj.get("features"):
            raise AssertionError("GeoJSON has no features")
        r.quicklook(files["quicklook"])
        import rasterio

        with rasterio.open(files["geotiff"]) as ds:
            if ds.crs is None or (ds.height, ds.width) != r.grid.shape:
                raise AssertionError(f"GeoTIFF grid {ds.crs} {ds.shape} != result grid {r.grid.shape}")
            bands = ds.count
        small = [k for k, f in files.items() if f.stat().st_size == 0]
        if small:
            raise AssertionError(f"empty outputs: {small}")
        self.outputs = {k: str(f) for k, f in files.items()}
        kept = f" in {out}" if self.outdir else " (temporary; pass --out DIR to keep them)"
        return (f"result.json, result.tif ({bands} bands), result.geojson ({len(gj['features'])} features), "
                f"quicklook.png{kept}")


def run_selfcheck(
    *,
    checkpoint: str | None = None,
    backend: str = "auto",
    precision: str = "auto",
    workdir: str | Path | None = None,
    outdir: str | Path | None = None,
    progress: Callable[[Check], None] | None = None,
) -> SelfcheckReport:
    """Run every check and return the report (never raises for a failed check).

    ``workdir`` keeps the generated catalog and checkpoint (default: a temporary folder,
    removed afterwards); ``outdir`` keeps the JSON, GeoTIFF, GeoJSON and quicklook outputs
    (default: inside the working folder).
    """
    with tempfile.TemporaryDirectory(prefix="terramind-nyc-selfcheck-") as tmp:
        run = _Run(Path(workdir) if workdir else Path(tmp), checkpoint=checkpoint, backend=backend,
                   precision=precision, outdir=outdir, progress=progress)
        if not run.step("generate local catalog", run.build_catalog) or not run.step("checkpoint", run.build_model):
            return run.report()
        run.step("fetch: newest clear scene", run.scenario("clear"))
        run.step("fetch: chip SCL beats scene-wide cloud cover", run.scenario("cloudy_vs_clear"))
        run.step("fetch: chip across two tiles is mosaicked", run.scenario("tile_edge"))
        run.step("fetch: no S1 -> model runs without it, flagged", run.scenario("no_s1", ("S1RTC",)))
        run.step("result cache hit", run.cached)
        run.step("Riprap views and fetch_riprap", run.riprap)
        run.step("fetch_many", run.many)
        run.step("outputs: JSON, GeoTIFF, GeoJSON, quicklook", run.write_outputs)
        return run.report()
