"""``terramind-nyc sniff``: ten NYC areas with known answers, run through the normal fetch path.

The published adapters were judged on ten areas (DESIGN section 9): how many of a 224 x 224 px chip's
50176 pixels are buildings (compared as shares with the result's ``building_density``) and which
land-cover classes, by name, may dominate. Preprocessing candidates run from a temporary artifact whose
weights are linked to the checkpoint's. Offline (generated imagery) accuracy is not judged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import errors
from .jsonsafe import json_safe
from .settings import DEFAULT_CHECKPOINT, Settings

if TYPE_CHECKING:  # pragma: no cover
    from .model.config import ModelConfig

__all__ = ["AREAS", "BUILDING_BANDS_PX", "CHIP_PX", "SIZE_M", "SniffArea", "SniffReport", "SniffRow",
           "buildings_hold", "lulc_holds", "sniff"]

log = logging.getLogger(__name__)

Buildings = Literal["many", "few", "none"]
#: Pixels of the 224 x 224 chip the expectations were written for.
CHIP_PX = 224 * 224
#: Window side of every area, metres (224 px at 10 m).
SIZE_M = 2240.0
#: Expectation -> (lowest, highest) building px of the 50176 px chip (None: no bound): ``many``
#: more than 5000 (strictly), ``few`` 100 to 30000 (both included), ``none`` fewer than 1000 (strictly).
BUILDING_BANDS_PX: Mapping[str, tuple[int | None, int | None]] = {
    "many": (5000, None), "few": (100, 30000), "none": (None, 1000)}


@dataclass(frozen=True)
class SniffArea:
    """One sanity area and what a working model says there."""

    name: str
    """Human-readable name."""
    lat: float
    """Latitude of the window centre, WGS84 degrees."""
    lon: float
    """Longitude of the window centre, WGS84 degrees."""
    buildings: Buildings
    """Expected building amount (:data:`BUILDING_BANDS_PX`)."""
    lulc: tuple[str, ...]
    """Land-cover class names any of which may dominate."""


#: The ten areas of DESIGN section 9, in its order.
AREAS: tuple[SniffArea, ...] = (
    SniffArea("Manhattan midtown", 40.755, -73.984, "many", ("developed",)),
    SniffArea("Central Park", 40.785, -73.965, "few", ("forest", "developed")),
    SniffArea("Jamaica Bay", 40.610, -73.840, "none", ("water",)),
    SniffArea("JFK runways", 40.640, -73.778, "few", ("developed",)),
    SniffArea("Pelham Bay Park", 40.871, -73.808, "few", ("forest", "developed")),
    SniffArea("Brooklyn industrial", 40.700, -73.940, "many", ("developed",)),
    SniffArea("Coney Island", 40.575, -73.970, "many", ("water", "developed")),
    SniffArea("Hudson Yards", 40.755, -74.000, "many", ("developed",)),
    SniffArea("Staten Island Greenbelt", 40.585, -74.150, "few", ("forest", "developed")),
    SniffArea("Queens residential", 40.722, -73.847, "many", ("developed", "forest")),
)


def buildings_hold(expected: str, share: float | None) -> bool:
    """Whether a building share (0..1 of the window) lies in the band of ``expected`` (bounds of
    :data:`BUILDING_BANDS_PX` over :data:`CHIP_PX`); None or NaN holds for no band."""
    if expected not in BUILDING_BANDS_PX:
        raise errors.InvalidInputError(f"expected buildings must be one of {list(BUILDING_BANDS_PX)}, got {expected!r}")
    if share is None or isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share):
        return False
    lo, hi = BUILDING_BANDS_PX[expected]
    # a one-sided band excludes its bound, a two-sided one includes both
    above = lo is None or (share > lo / CHIP_PX if hi is None else share >= lo / CHIP_PX)
    return above and (hi is None or (share < hi / CHIP_PX if lo is None else share <= hi / CHIP_PX))


def lulc_holds(expected: Sequence[str], dominant: str | None) -> bool:
    """Whether the dominant land-cover class name is one of the ``expected`` names."""
    return dominant is not None and dominant in tuple(expected)


@dataclass(frozen=True)
class SniffRow:
    """One area: what was expected, what the model said, whether it holds."""

    area: str
    """Area name."""
    lat: float
    """Latitude of the window centre, degrees."""
    lon: float
    """Longitude of the window centre, degrees."""
    expected_lulc: tuple[str, ...]
    """Land-cover class names any of which may dominate."""
    expected_buildings: Buildings
    """``many``, ``few`` or ``none`` (:data:`BUILDING_BANDS_PX`)."""
    dominant: str | None = None
    """Dominant land-cover class of the result (None when the area failed)."""
    building_share: float | None = None
    """Share of the window predicted as building, 0..1 (the result's ``building_density``)."""
    building_px_224: int | None = None
    """``building_share`` in pixels of the 224 x 224 chip, rounded."""
    lulc_fractions: dict[str, float] = dataclasses.field(default_factory=dict)
    """Share of the window per land-cover class (by name), 0..1."""
    lulc_ok: bool = False
    """Whether the dominant class is one of ``expected_lulc``."""
    buildings_ok: bool = False
    """Whether the building share lies in the band of ``expected_buildings``."""
    ok: bool = False
    """Whether the area holds: it ran, and both expectations are met."""
    error: str | None = None
    """``Type: message`` of the library error that failed the area (None when it ran)."""
    error_type: str | None = None
    """Class name of that error."""
    s2_item_ids: tuple[str, ...] = ()
    """Sentinel-2 item(s) the model saw."""
    s2_acquired: str | None = None
    """ISO UTC acquisition datetime of that scene."""
    warnings: tuple[str, ...] = ()
    """The result's degradation notes (missing modality, old scene)."""
    quicklook: str | None = None
    """The area's PNG panel (true colour, land cover, buildings) when ``sniff(panels=...)`` asked for one."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        return {f.name: json_safe(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class SniffReport:
    """What :func:`sniff` found over the ten areas."""

    rows: tuple[SniffRow, ...]
    """One row per area, in :data:`AREAS` order."""
    judged: bool
    """False when the run cannot say anything about accuracy (offline harness, a local catalog, no
    area reached the catalog): the rows then check the plumbing only."""
    preprocessing: dict[str, Any]
    """``checkpoint``, ``revision``, ``sha256`` (of the weights that ran), the effective ``stats`` /
    ``s1`` / ``chip`` of the config that ran, ``requested`` (the variant asked for), ``variant``,
    ``random_weights``, ``backend``."""
    passed: int
    """Areas that hold."""
    failed: int
    """Areas that do not hold (failed fetches included)."""
    note: str = ""
    """Why the report is not judged (empty when it is)."""
    catalog: str = ""
    """Where the imagery came from."""
    seconds: float = 0.0
    """Wall time of the sniff, seconds."""

    @property
    def exit_code(self) -> int:
        """0 when every area holds or the report is not judged; 1 when a judged area fails."""
        return 1 if self.judged and self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the rows, counts, preprocessing and judgement."""
        return {"judged": self.judged, "passed": self.passed, "failed": self.failed,
                "errors": sum(r.error is not None for r in self.rows), "exit_code": self.exit_code,
                "note": self.note, "catalog": self.catalog, "preprocessing": json_safe(self.preprocessing),
                "seconds": round(float(self.seconds), 3), "rows": [r.to_dict() for r in self.rows]}


def sniff(settings: Settings | None = None, *, stats: str | None = None, s1: str | None = None, chip: int | None = None,
          offline: bool | None = None, checkpoint: str | os.PathLike[str] | None = None, when: Any = None,
          workdir: str | os.PathLike[str] | None = None, progress: bool | None = None,
          panels: str | os.PathLike[str] | None = None) -> SniffReport:
    """Fetch the ten :data:`AREAS` (2240 m windows at 10 m, result cache bypassed) and check each.

    ``stats`` (``flood`` | ``pretraining``), ``s1`` (``linear`` | ``db``) and ``chip`` (224 | 256)
    rewrite the checkpoint's preprocessing (None keeps its choice; all None: the checkpoint as it is).
    ``offline`` True runs on the local harness (generated imagery; a tiny random-weight model unless
    ``checkpoint`` or a non-default ``settings.checkpoint`` is given), never judged; False always
    judges; None judges unless the catalog provider is ``local`` or no area reaches the catalog.
    ``checkpoint`` replaces ``settings.checkpoint``; ``when`` is ``fetch``'s window (pin it to compare
    candidates on the same scenes); ``workdir`` keeps (and reuses) the offline harness and tiny model;
    ``progress``: a tqdm bar on stderr (default: when it is a terminal); ``panels``: a folder that gets one
    quicklook PNG per area (``<area>.png``, named in the row). A failed area is a row with
    its error; a CheckpointError or BackendError (every area would fail alike) ends the run.
    """
    from .model.adapters import CHIP_CHOICES, S1_CHOICES, STATS_CHOICES

    t0 = time.perf_counter()
    s = Settings.resolve(settings)
    for name, value, choices in (("stats", stats, STATS_CHOICES), ("s1", s1, S1_CHOICES), ("chip", chip, CHIP_CHOICES)):
        if value is not None and (isinstance(value, bool) or value not in choices):
            raise errors.InvalidInputError(f"{name} must be one of {list(choices)} or None, got {value!r}")
    if offline is not None and not isinstance(offline, bool):
        raise errors.InvalidInputError(f"offline must be True, False or None, got {offline!r}")
    # every candidate runs the model: no answer from the result cache
    s = s.replace(size_m=SIZE_M, resolution_m=10.0, result_cache_ttl_s=0.0,
                  **({} if checkpoint is None else {"checkpoint": os.fspath(checkpoint)}))
    random_weights = False
    with tempfile.TemporaryDirectory(prefix="terramind-nyc-sniff-") as tmp:
        if offline:
            items = Path(workdir or tmp) / "harness" / "items.json"
            s = s.replace(catalog_provider="local", signer="none",
                          catalog_path=str(items if items.is_file() else _write_harness(items.parent, s)))
            when = ("2024-05-01", "2024-07-31") if when is None else when  # the harness scenes
            if checkpoint is None and s.checkpoint == DEFAULT_CHECKPOINT:
                s, random_weights = s.replace(checkpoint=str(_tiny_artifact(items.parent.parent / "tiny")),
                                              checkpoint_revision=None), True
        config, run = _prepare_checkpoint(s, Path(tmp) / "variant", stats=stats, s1=s1, chip=chip)
        classes = next((h.classes for h in config.heads if h.name == "lulc"), ())
        missing = sorted({c for a in AREAS for c in a.lulc} - set(classes))
        if missing:
            raise errors.CheckpointError(f"checkpoint {s.checkpoint!r}: its `lulc` classes {list(classes)} lack "
                                         f"{missing}, which sniff's areas name (classes are matched by name)")
        rows, shas, unreachable = _run_areas(run, when, progress, None if panels is None else Path(panels))
        if run is not s:  # the variant's model was loaded from a temporary folder: do not keep it
            from .model.backends import clear_runtimes

            clear_runtimes()
    if offline:
        judged, note = False, (f"offline: generated imagery and {'random weights' if random_weights else s.checkpoint} "
                               "check the plumbing, not accuracy; run sniff online to judge the checkpoint")
    elif offline is None and s.catalog_provider == "local":
        judged, note = False, (f"the catalog is a local one ({s.catalog_path}), not the live archive: accuracy is "
                               "not judged; use a planetary-computer / stac-api catalog, or pass --online")
    elif offline is None and unreachable == len(rows):
        judged, note = False, (f"no area could reach the catalog or its imagery ({rows[0].error}); nothing was "
                               "judged: check the network, or run --offline to check the plumbing")
    else:
        judged, note = True, ""
    s1_spec = next((m for m in config.modalities if m.name == "S1RTC"), None)
    prep = {"checkpoint": "tiny random-weight artifact (generated)" if random_weights else s.checkpoint,
            "revision": s.checkpoint_revision, "sha256": next((h for h in shas if h), None),
            "stats": dict(config.training.get("preprocessing_choice") or {}).get("stats"),
            "s1": None if s1_spec is None else "linear" if s1_spec.transform == "db_to_linear" else "db",
            "chip": config.tile_size, "requested": {"stats": stats, "s1": s1, "chip": chip},
            "variant": run is not s, "random_weights": random_weights, "backend": run.backend}
    catalog = "local harness (generated imagery)" if offline else (
        f"local ({s.catalog_path})" if s.catalog_provider == "local" else f"{s.catalog_provider} ({s.catalog_url})")
    passed = sum(r.ok for r in rows)
    return SniffReport(rows=tuple(rows), judged=judged, preprocessing=prep, passed=passed, failed=len(rows) - passed,
                       note=note, catalog=catalog, seconds=time.perf_counter() - t0)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _run_areas(settings: Settings, when: Any, progress: bool | None,
               panels: Path | None = None) -> tuple[list[SniffRow], list[Any], int]:
    """Every area in turn: the rows, the weights' sha256 of each result, how many could not reach imagery."""
    from tqdm.auto import tqdm

    from .api import fetch

    rows: list[SniffRow] = []
    shas: list[Any] = []
    unreachable = 0  # areas whose catalog or imagery could not be reached
    show = sys.stderr.isatty() if progress is None else bool(progress)
    with tqdm(total=len(AREAS), desc="sniff", unit="area", disable=not show, file=sys.stderr) as bar:
        for a in AREAS:
            bar.set_postfix_str(a.name, refresh=False)
            try:
                with warnings.catch_warnings():  # each result carries its own (row.warnings)
                    warnings.simplefilter("ignore", errors.TerramindNYCWarning)
                    r = fetch(a.lat, a.lon, when=when, size_m=SIZE_M, settings=settings)
            except (errors.CheckpointError, errors.BackendError):
                raise  # the model cannot run: every area would fail the same way
            except Exception as exc:
                if not isinstance(exc, errors.TerramindNYCError):
                    log.error("unexpected error in sniff area %s (a bug: please report it)", a.name, exc_info=exc)
                    exc = errors.InternalError(f"unexpected {type(exc).__name__} fetching {a.name}: {exc} (a bug "
                                               "in terramind_nyc or a dependency: please report it)")
                unreachable += isinstance(exc, (errors.CatalogError, errors.ChipError, errors.DeadlineExceededError)) \
                    and not isinstance(exc, errors.NoSceneError)  # the catalog answered: no scene
                rows.append(SniffRow(a.name, a.lat, a.lon, a.lulc, a.buildings, error=f"{type(exc).__name__}: {exc}",
                                     error_type=type(exc).__name__))
            else:
                share: float | None = float(r.building_density) if math.isfinite(r.building_density) else None
                lulc_ok, bld_ok = lulc_holds(a.lulc, r.dominant_class), buildings_hold(a.buildings, share)
                png = None
                if panels is not None:
                    panels.mkdir(parents=True, exist_ok=True)
                    png = str(r.quicklook(panels / f"{_slug(a.name)}.png"))
                rows.append(SniffRow(
                    a.name, a.lat, a.lon, a.lulc, a.buildings, dominant=r.dominant_class, building_share=share,
                    building_px_224=None if share is None else round(share * CHIP_PX),
                    lulc_fractions={k: float(v) for k, v in r.lulc_fractions.items()}, lulc_ok=lulc_ok,
                    buildings_ok=bld_ok, ok=lulc_ok and bld_ok, s2_acquired=r.provenance.s2_acquired, quicklook=png,
                    s2_item_ids=tuple(r.provenance.imagery.get("S2L2A", {}).get("item_ids") or ()),
                    warnings=tuple(r.warnings)))
                shas.append(r.provenance.checkpoint.get("sha256"))
            bar.update(1)
    return rows, shas, unreachable


def _prepare_checkpoint(s: Settings, root: Path, *, stats: Any, s1: Any, chip: Any) -> tuple[ModelConfig, Settings]:
    """The config that runs and the settings serving it: the checkpoint as it is, or a temporary
    artifact with the rewritten config and the checkpoint's weights linked (torch backend)."""
    from .model.adapters import preprocessing_variant
    from .model.artifact import write_config
    from .model.locate import locate_artifact, read_config, read_config_file

    if stats is None and s1 is None and chip is None:
        return read_config(s.checkpoint, revision=s.checkpoint_revision), s
    files = locate_artifact(s.checkpoint, revision=s.checkpoint_revision)
    base = read_config_file(files.config, f"checkpoint {s.checkpoint!r}: config.json")
    variant = preprocessing_variant(base, stats=stats, s1=s1, chip=chip).replace(onnx=None)
    root.mkdir(parents=True)
    write_config(variant, root)
    target, dest = Path(os.path.realpath(files.weights)), root / files.weights.name
    try:  # a hard link, else a symbolic one: never a copy, never a write to the checkpoint
        os.link(target, dest)
    except OSError:
        os.symlink(target, dest)
    log.info("sniff: %s with stats=%s s1=%s chip=%s from %s", s.checkpoint, stats, s1, chip, root)
    return variant, s.replace(checkpoint=str(root), checkpoint_revision=None, backend="torch")


# --- the offline harness: generated imagery over the ten areas ---------------------------
def _tiny_artifact(directory: Path) -> Path:
    """A tiny random-weight artifact in ``directory`` (reused when one is there)."""
    try:
        from .testing.model import make_tiny_artifact

        done = (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()
        return directory if done else make_tiny_artifact(directory)
    except ImportError as exc:
        raise errors.BackendError(f"offline sniff's tiny random-weight model needs the torch extra ({exc}): pip "
                                  "install -c constraints.txt 'terramind-nyc[torch]', or pass --checkpoint") from None


def _write_harness(root: Path, s: Settings) -> Path:
    """The local harness over the ten areas (:func:`terramind_nyc.testing.area_catalog.write_area_catalog`)."""
    from .testing.area_catalog import write_area_catalog

    return write_area_catalog(root, s, [(a.lat, a.lon) for a in AREAS], size_m=SIZE_M)
