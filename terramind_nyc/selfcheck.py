"""``terramind-nyc selfcheck``: the whole fetch path, end to end, on this machine, offline.

It generates a small STAC catalog of realistic COGs (:mod:`terramind_nyc.testing`), serves
them over HTTP on 127.0.0.1, builds a tiny TerraMind two-head artifact with random weights
(unless a checkpoint is given), and runs ``fetch``, ``fetch_riprap`` and ``fetch_many``
against them, checking scene choice, mosaicking, the missing-modality path, caching and the
client's dict. Random weights mean the figures are meaningless; the plumbing is what is checked.
"""

from __future__ import annotations

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

__all__ = ["Check", "run_selfcheck"]

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


def run_selfcheck(
    *,
    checkpoint: str | None = None,
    backend: str = "auto",
    workdir: str | Path | None = None,
    progress: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Run every check; return them in order (never raises for a failed check)."""
    from .api import fetch, fetch_many, fetch_riprap
    from .cache import clear_caches
    from .errors import MissingModalityWarning
    from .testing import CogServer, build_fixture_catalog

    checks: list[Check] = []

    def step(name: str, fn: Callable[[], str]) -> bool:
        t = time.perf_counter()
        try:
            detail, ok = fn(), True
        except Exception as exc:  # noqa: BLE001 - a failed check is reported, not raised
            log.debug("selfcheck step %s failed", name, exc_info=True)
            detail, ok = f"{type(exc).__name__}: {exc}", False
        c = Check(name, ok, detail, time.perf_counter() - t)
        checks.append(c)
        if progress is not None:
            progress(c)
        return ok

    with tempfile.TemporaryDirectory(prefix="terramind-nyc-selfcheck-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        imagery = root / "imagery"
        imagery.mkdir(parents=True, exist_ok=True)
        with CogServer(imagery) as cogs:
            state: dict[str, Any] = {}

            def build_catalog() -> str:
                cat = build_fixture_catalog(imagery, cogs.url)
                state["cat"] = cat
                return f"{len(cat.items())} STAC items, {len(cat.points)} scenarios served at {cogs.url}"

            if not step("generate catalog + COG server", build_catalog):
                return checks
            cat = state["cat"]

            def build_model() -> str:
                if checkpoint:
                    state["ck"] = checkpoint
                    return f"using checkpoint {checkpoint}"
                from .testing.model import make_tiny_artifact

                path = make_tiny_artifact(root / "tiny-artifact")
                state["ck"] = str(path)
                return f"tiny two-head TerraMind artifact with random weights at {path.name}"

            if not step("checkpoint", build_model):
                return checks
            settings: Settings = cat.settings(checkpoint=state["ck"], backend=backend, cache_enabled=True)
            clear_caches()

            def scenario(name: str, expect_missing: tuple[str, ...] = ()) -> Callable[[], str]:
                def run() -> str:
                    lat, lon = cat.points[name]
                    exp = cat.expected[name]
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        r = fetch(lat, lon, when=cat.when(name), settings=settings)
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
                    return (f"S2 {','.join(s2['item_ids'])}; buildings {100 * r.building_density:.1f}%, "
                            f"dominant {r.dominant_class}; {r.timings['total']:.2f} s")
                return run

            step("fetch: newest clear scene", scenario("clear"))
            step("fetch: chip SCL beats scene-wide cloud cover", scenario("cloudy_vs_clear"))
            step("fetch: chip across two tiles is mosaicked", scenario("tile_edge"))
            step("fetch: no S1 -> model runs without it, flagged", scenario("no_s1", ("S1RTC",)))

            def cached() -> str:
                lat, lon = cat.points["clear"]
                t = time.perf_counter()
                r = fetch(lat, lon, when=cat.when("clear"), settings=settings)
                ms = 1000 * (time.perf_counter() - t)
                if not r.cached:
                    raise AssertionError("second identical fetch did not hit the result cache")
                return f"warm fetch {ms:.2f} ms"

            step("result cache hit", cached)

            def riprap() -> str:
                lat, lon = cat.points["clear"]
                ok = fetch_riprap(lat, lon, when=cat.when("clear"), settings=settings)
                out = fetch_riprap(40.7128, -80.0, settings=settings)
                json.dumps(ok, allow_nan=False)
                if not ok.get("ok") or out.get("ok") or "skipped" not in out:
                    raise AssertionError(f"unexpected riprap dicts: {ok} / {out}")
                return f"pct_buildings {ok['pct_buildings']}, dominant {ok['dominant_class']}; out of NYC skipped"

            step("fetch_riprap contract", riprap)

            def many() -> str:
                lat, lon = cat.points["clear"]
                pts = [(lat, lon), (lat + 0.002, lon + 0.002), ("not", "a point"), (lat - 0.002, lon)]
                items = fetch_many(pts, when=cat.when("clear"), settings=settings.replace(cache_enabled=False),
                                   progress=False)
                oks = [it.ok for it in items]
                if oks != [True, True, False, True]:
                    raise AssertionError(f"per-point outcome {oks}")
                return "3 points in one shared window, 1 invalid point reported"

            step("fetch_many", many)
    return checks
