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


class LinearRuntime:
    """A real :class:`~terramind_nyc.model.runtime.Runtime` (validation, standardising, tiling,
    blending, softmax) whose network is a fixed random per-pixel linear map: milliseconds a tile."""

    def __new__(cls) -> Any:
        import numpy as np

        from terramind_nyc.model.runtime import Runtime
        from terramind_nyc.testing.model import tiny_config

        class _Linear(Runtime):
            backend = "linear"

            def _forward(self, batch: Any) -> Any:
                x = np.concatenate([batch[m.name] for m in self.config.modalities if m.name in batch], axis=1)
                return {h: np.einsum("oc,kcij->koij", w[:, :x.shape[1]], x).astype(np.float32)
                        for h, w in self.weights.items()}

        cfg = tiny_config()
        rt = _Linear(cfg, {"id": "linear-test", "revision": None, "name": "linear", "sha256": "1" * 64})
        rng = np.random.default_rng(0)
        n_bands = sum(len(m.bands) for m in cfg.modalities)
        rt.weights = {h.name: rng.normal(size=(len(h.classes), n_bands)).astype(np.float32) for h in cfg.heads}
        return rt


@pytest.fixture
def fast(area_world: AreaWorld) -> Any:
    """Run map_area / fetch / CityMap through a LinearRuntime (the real reader and servers)."""
    from terramind_nyc.pipeline import Pipeline, use_pipeline

    rt = LinearRuntime()
    with use_pipeline(Pipeline(runtimes=lambda settings, deadline=None: rt)):
        yield rt
