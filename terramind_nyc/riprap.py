"""The Riprap client's views: the three documents its flood-briefing steps build from one fetch.

Riprap (msradam/riprap) runs three steps per query, each turned into its own cited document: a
chip step (which scenes were found, whether S1 and the DEM were there), a land-cover step and a
buildings step. :func:`fetch_views` runs ONE fetch (one model pass) and returns the three dicts
under Riprap's own state keys; :func:`chip_view`, :func:`lulc_view` and :func:`buildings_view`
build each from a :class:`~terramind_nyc.result.Result` you already have::

    from terramind_nyc.riprap import fetch_views, warm

    warm()                                   # at start-up: load the model once, outside any budget
    views = fetch_views(40.7484, -73.9857)   # never raises; the `riprap` settings profile (60 s)
    views["eo_chip"], views["terramind_lulc"], views["terramind_buildings"]

Every view is a JSON-safe dict that validates against :data:`SCHEMA_FILE` (shipped in the package,
see docs/riprap.md). Nothing here raises: a failure is ``{"ok": False, "skipped": reason}`` for a
point outside NYC and ``{"ok": False, "err": "<ErrorType>: reason"}`` for anything else, both with
``error_type`` and ``elapsed_s``. Labels are the checkpoint config's display labels (``labels`` of
each head); percentages are :attr:`Result.percentages`, so every figure a view carries appears as
the same decimal in :meth:`Result.to_dict` (the property Riprap's number check relies on).
:func:`fetch_riprap` is the older one-dict form (:meth:`Result.to_riprap`).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from .deadline import Deadline
from .errors import ChipNodataError, MissingModalityWarning, OutsideDomainError, TerramindNYCError, shown
from .pipeline import current_pipeline
from .result import Result, model_label
from .settings import Settings

__all__ = ["PROFILE", "SCHEMA_FILE", "VIEWS", "buildings_view", "chip_view", "failure", "fetch_riprap", "fetch_views",
           "lulc_view", "schema", "views", "warm"]

log = logging.getLogger(__name__)

#: Riprap's state keys, one per view: the chip step's, the land-cover step's and the buildings step's.
VIEWS = ("eo_chip", "terramind_lulc", "terramind_buildings")
#: The JSON schema (draft 2020-12) of the views, a file of this package.
SCHEMA_FILE = "riprap_views.schema.json"
#: The settings profile the Riprap calls use when given no ``settings``.
PROFILE = "riprap"


def schema() -> dict[str, Any]:
    """The views' JSON schema (:data:`SCHEMA_FILE`) as a dict."""
    import json

    return json.loads(resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


def failure(exc: BaseException, elapsed_s: float) -> dict[str, Any]:
    """The client's dict for a failed call: ``skipped`` (outside NYC) or ``err``, ``error_type``, ``elapsed_s``.

    An exception that is not one of the library's is logged with its traceback (a bug).
    """
    kind = type(exc).__name__
    if not isinstance(exc, TerramindNYCError):
        log.error("unexpected %s in a Riprap call (a bug: please report it)", kind, exc_info=exc)
    try:
        reason = str(exc)
    except Exception:  # an exception whose message cannot even be printed
        reason = shown(exc)
    key, text = ("skipped", reason) if isinstance(exc, OutsideDomainError) else ("err", f"{kind}: {reason}")
    return {"ok": False, key: text, "error_type": kind, "elapsed_s": round(float(elapsed_s), 3)}


def _guarded(build: Callable[[Result], dict[str, Any]], result: Any) -> dict[str, Any]:
    """``build(result)``, or the failure dict: a view never raises."""
    t0 = time.perf_counter()
    try:
        if not isinstance(result, Result):
            from .errors import InvalidInputError

            raise InvalidInputError(f"a Riprap view needs a terramind_nyc Result, got {type(result).__name__}")
        return build(result)
    except Exception as exc:
        return failure(exc, time.perf_counter() - t0)


def _settings(settings: Settings | None) -> Settings:
    return Settings.from_env(profile=PROFILE) if settings is None else Settings.resolve(settings)


# ----------------------------------------------------------------------------------------
# The views of one result
# ----------------------------------------------------------------------------------------
def _context(r: Result) -> dict[str, Any]:
    """What every success document carries: the scene, the modalities, the window and the call."""
    prov = r.provenance
    return {
        "ok": True,
        "s2_scene_id": prov.first("S2L2A", "item_ids"),
        "modalities_used": list(prov.modalities_used),
        "modalities_missing": list(prov.modalities_missing),
        "bounds_4326": [float(v) for v in r.grid.bounds_4326],
        "elapsed_s": round(float(r.timings.get("total", 0.0)), 4),  # as to_dict() rounds timings
        "cached": bool(r.cached),
    }


def _common(r: Result, head: str) -> dict[str, Any]:
    """What both model documents carry: which head of which checkpoint ran, on what, when.

    A summary area without one valid pixel has no figures to quote: ChipNodataError (a failure dict).
    """
    if r.summary.nodata_fraction >= 1.0:
        raise ChipNodataError(f"no pixel of the summary area has valid Sentinel-2 input (radius_m={r.radius_m}): "
                              "there is nothing to report; widen radius_m or try another date")
    ck, prov = r.provenance.checkpoint, r.provenance
    return {
        **_context(r),
        "adapter": f"{head} head of {ck.get('name', ck.get('id'))} {ck.get('version', '?')} ({ck.get('id')})",
        "repo": ck.get("id"),
        "revision": ck.get("revision"),
        "checkpoint_kind": ck.get("kind"),
        "compute": f"local · {prov.backend} {prov.device} {prov.precision}",
        "model": prov.model_label,
        "s2_acquired_iso": prov.s2_acquired,
        "shape": [int(r.grid.height), int(r.grid.width)],
        "n_pixels": int(r.summary.n_pixels),
        "nodata_pct": r.percentages["nodata"],
    }


def _polygons(r: Result, layer: str) -> dict[str, Any] | None:
    """One layer's polygons (features carry ``fill_color``), or None when they cannot be traced."""
    try:
        return r.to_geojson(layers=(layer,))
    except Exception as exc:  # the map layer is decoration: the document goes on without it
        log.warning("could not trace the %s polygons for the Riprap view: %s", layer, exc)
        return None


def _lulc(r: Result, polygons: bool) -> dict[str, Any]:
    head = r.heads["lulc"]
    label = dict(zip(head["classes"], head["labels"]))
    pct = r.percentages
    out = _common(r, "lulc")
    out.update({
        # zero classes dropped, as Riprap's own adapter does; labels in the model's class order
        "class_fractions": {label[c]: p for c, p in pct["lulc"].items() if p},
        "dominant_class": label.get(r.dominant_class),
        "dominant_pct": pct["dominant"],
        "class_labels": list(head["labels"]),
        "class_names": list(head["classes"]),
        "class_colors": dict(zip(head["labels"], head["colors"])),
    })
    if polygons:
        out["polygons_geojson"] = _polygons(r, "lulc")
    return out


def _buildings(r: Result, polygons: bool) -> dict[str, Any]:
    head = r.heads["buildings"]
    out = _common(r, "buildings")
    out.update({
        "pct_buildings": r.percentages["buildings"],
        "n_building_components": int(r.n_building_components),
        "threshold": r.building_threshold,
        "class_labels": list(head["labels"]),
        "class_names": list(head["classes"]),
        "fill_color": head["colors"][1],
    })
    if polygons:
        out["polygons_geojson"] = _polygons(r, "buildings")
    return out


def _chip(r: Result) -> dict[str, Any]:
    prov = r.provenance
    s2, s1 = prov.imagery.get("S2L2A", {}), prov.imagery.get("S1RTC", {})
    ctx = _context(r)
    s2_id = ctx["s2_scene_id"]
    return {
        **ctx,
        "lat": r.lat,
        "lon": r.lon,
        "crs": r.grid.crs,
        "chip_px": int(r.grid.width),
        "pixel_m": float(r.grid.resolution),
        # Riprap's own chip keys; cloud_cover is the chip-level cloud share (SCL) in percent, not the
        # scene-wide eo:cloud_cover
        "s2_meta": {"scene_id": s2_id, "datetime": prov.s2_acquired or None, "cloud_cover": r.percentages["s2_cloud"],
                    "age_days": s2.get("age_days")},
        "s1_meta": ({"scene_id": prov.first("S1RTC", "item_ids"), "datetime": prov.first("S1RTC", "datetimes") or None,
                     "age_days": s1.get("age_days")} if s1 else {}),
        "has_s1": "S1RTC" in prov.modalities_used,
        "has_dem": "DEM" in prov.modalities_used,
        "catalog": prov.catalog,
        "warnings": list(r.warnings),
    }


def lulc_view(result: Result, *, polygons: bool = True) -> dict[str, Any]:
    """The land-cover document: ``class_fractions`` ({display label: percent}, zero classes dropped),
    ``dominant_class`` / ``dominant_pct``, ``class_labels``, ``adapter``, and the ``lulc`` polygons
    (``polygons_geojson``, each feature with its ``fill_color``) unless ``polygons=False``."""
    return _guarded(lambda r: _lulc(r, polygons), result)


def buildings_view(result: Result, *, polygons: bool = True) -> dict[str, Any]:
    """The buildings document: ``pct_buildings``, ``n_building_components``, its own ``class_labels``
    (background / building footprint), ``adapter``, and the building polygons unless ``polygons=False``."""
    return _guarded(lambda r: _buildings(r, polygons), result)


def chip_view(result: Result) -> dict[str, Any]:
    """The chip metadata Riprap traces: ``s2_scene_id``, ``s2_meta`` (scene id, datetime, chip cloud
    percent), ``s1_meta``, ``has_s1`` / ``has_dem``, ``modalities_missing``, ``bounds_4326``."""
    return _guarded(_chip, result)


def views(result: Result, *, polygons: bool = True) -> dict[str, dict[str, Any]]:
    """The three views of one result under Riprap's state keys (:data:`VIEWS`)."""
    return {"eo_chip": chip_view(result), "terramind_lulc": lulc_view(result, polygons=polygons),
            "terramind_buildings": buildings_view(result, polygons=polygons)}


# ----------------------------------------------------------------------------------------
# The calls
# ----------------------------------------------------------------------------------------
def _fetch(lat: Any, lon: Any, kwargs: Mapping[str, Any]) -> Result:
    kw = dict(kwargs)
    kw["settings"] = _settings(kw.get("settings"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingModalityWarning)  # reported in the views instead
        if kw.get("map") is None:
            kw.pop("map", None)
            return current_pipeline().fetch(lat, lon, **kw)
        from .maps.citymap import fetch_or_map  # only with map=PATH: the maps package stays off the fetch path

        return fetch_or_map(lat, lon, **kw)


def fetch_views(lat: float, lon: float, *, polygons: bool = True, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """One :func:`~terramind_nyc.fetch` (one model pass) as Riprap's three documents; never raises.

    Returns ``{"eo_chip": ..., "terramind_lulc": ..., "terramind_buildings": ...}`` (:data:`VIEWS`).
    ``kwargs`` are :func:`~terramind_nyc.fetch`'s (``when``, ``size_m``, ``radius_m``, ``settings``,
    ``map``: a city map folder answers where it can, else a live fetch);
    without ``settings`` the ``riprap`` profile applies (a 60 s deadline over the whole call, a first
    model load included). On failure every view is the same failure dict.
    """
    t0 = time.perf_counter()
    try:
        result = _fetch(lat, lon, kwargs)
    except Exception as exc:
        f = failure(exc, time.perf_counter() - t0)
        return {k: dict(f) for k in VIEWS}
    return views(result, polygons=polygons)


def fetch_riprap(lat: float, lon: float, *, polygons: bool = False, **kwargs: Any) -> dict[str, Any]:
    """:func:`~terramind_nyc.fetch` as the one-dict form (:meth:`Result.to_riprap`); never raises.

    Same keywords, profile and failure dicts as :func:`fetch_views`; ``polygons=True`` adds both
    layers in one ``polygons_geojson``.
    """
    t0 = time.perf_counter()
    try:
        return _fetch(lat, lon, kwargs).to_riprap(polygons=polygons)
    except Exception as exc:
        return failure(exc, time.perf_counter() - t0)


def warm(settings: Settings | None = None, *, timeout_s: float | None = None) -> dict[str, Any]:
    """Load the model now (for a client's start-up), so no request pays the first load; never raises.

    Waits for the load however long it takes (a first use of the default checkpoint downloads and
    converts it), or at most ``timeout_s`` seconds: then it returns the DeadlineExceededError failure
    dict and the load goes on in the background for the first request to use. Returns
    ``{"ok": True, "model", "backend", "device", "precision", "elapsed_s"}`` or the failure dict.
    """
    t0 = time.perf_counter()
    try:
        deadline = None if timeout_s is None else Deadline(timeout_s)
        info = current_pipeline().runtimes(_settings(settings), deadline).model_info()
    except Exception as exc:
        return failure(exc, time.perf_counter() - t0)
    return {"ok": True, "model": model_label(info.checkpoint), "backend": info.backend, "device": info.device,
            "precision": info.precision, "elapsed_s": round(time.perf_counter() - t0, 3)}
