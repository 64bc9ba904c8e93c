"""A small mapped world: generated COGs over a ~5 km area served on loopback, and a tiny checkpoint.

``area_world`` writes one clear S2 / S1 / DEM scene around :data:`CENTER` (``write_area_catalog``),
serves it from the session's COG server (hrefs are ``http://127.0.0.1:...``), and gives the
settings, the tiny checkpoint, the 448 px map grid (2 x 2 windows of 256 px at ``window_px=256``)
and the date window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from terramind_nyc.grid import ChipGrid, chip_grid
from terramind_nyc.settings import Settings

CENTER = (40.7484, -73.9857)
WHEN = ("2024-07-01", "2024-07-31")
#: Small windows so that a 448 px grid is 2 x 2 of them.
SMALL = {"window_px": 256, "chunk_px": 128}


@dataclass(frozen=True)
class AreaWorld:
    settings: Settings
    """Local provider over the served items, tiny checkpoint, caches off, one torch thread."""
    grid: ChipGrid
    """448 x 448 px around CENTER."""
    items_path: Path
    cog_server: Any
    checkpoint: str


@pytest.fixture(scope="session")
def area_world(cog_server: Any, _cog_root: Path, tmp_path_factory: pytest.TempPathFactory) -> AreaWorld:
    pytest.importorskip("torch")
    from terramind_nyc.testing.area_catalog import write_area_catalog
    from terramind_nyc.testing.model import make_tiny_artifact

    root = _cog_root / "area"
    base = Settings(signer="none", cache_enabled=False, deadline_s=30.0, http_timeout_s=5.0, http_retries=2,
                    http_backoff_s=0.05)
    items = write_area_catalog(root, base, [CENTER], size_m=5120)
    d = json.loads(items.read_text())
    prefix = str(root.resolve())
    for f in d["features"]:
        for a in f["assets"].values():
            a["href"] = a["href"].replace(prefix, f"{cog_server.url}/area")
    items.write_text(json.dumps(d))
    ckpt = str(make_tiny_artifact(tmp_path_factory.mktemp("maps") / "tiny", seed=5))
    s = base.replace(catalog_provider="local", catalog_path=str(items), checkpoint=ckpt, precision="fp32")
    return AreaWorld(s, chip_grid(*CENTER, size_m=4480, settings=s), items, cog_server, ckpt)


@pytest.fixture
def fast(area_world: AreaWorld) -> Any:
    """Run map_area / fetch / CityMap through a LinearRuntime (the real reader and servers)."""
    from terramind_nyc.pipeline import Pipeline, use_pipeline
    from terramind_nyc.testing.model import linear_runtime

    rt = linear_runtime()
    with use_pipeline(Pipeline(runtimes=lambda settings, deadline=None: rt)):
        yield rt
