"""One settings object for the whole library.

Values come from the defaults below, then ``TERRAMIND_NYC_<NAME>`` environment variables,
then keyword arguments (highest precedence)::

    s = Settings.from_env(recency_days=60)
    r = fetch(40.75, -73.98, settings=s)

Settings are frozen and validated on construction; ``s.replace(...)`` returns a validated copy.
The table in ``docs/settings.md`` is generated from the field metadata here
(``python -m terramind_nyc.settings``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from .errors import InvalidInputError, SettingsError

__all__ = ["DEFAULT_CHECKPOINT", "ENV_PREFIX", "KEY_SCOPES", "PLANETARY_COMPUTER_URL", "Settings"]

ENV_PREFIX = "TERRAMIND_NYC_"
PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
#: Hugging Face repo id of the default two-head checkpoint.
DEFAULT_CHECKPOINT = "terramind-nyc/terramind-nyc-multihead-base"

Provider = Literal["planetary-computer", "stac-api", "local"]
Signer = Literal["planetary-computer", "none"]
Backend = Literal["auto", "torch", "onnx", "openvino"]
Precision = Literal["fp32", "bf16", "auto"]
Device = Literal["auto", "cpu", "cuda"]


#: Cache-key scopes: ``Settings.key(scope)`` is built from the fields that name the scope, so a
#: new setting joins a key by saying so where it is declared (``_f(..., scopes=...)``).
#:
#: - ``catalog``: which STAC client a request talks to (provider, URL, signer, HTTP, STAC cache);
#: - ``chip``: which imagery a chip holds (catalog, collections, scene-choice limits, grid);
#: - ``caches``: the cache configuration (sizes, TTLs, on-disk folder);
#: - ``model``: which loaded network answers (checkpoint, backend, device, precision, threads);
#: - ``runtime``: ``model`` plus the tiling of a pass.
KEY_SCOPES: tuple[str, ...] = ("catalog", "chip", "caches", "model", "runtime")


def _f(default: Any, doc: str, *, scopes: tuple[str, ...]) -> Any:
    unknown = set(scopes) - set(KEY_SCOPES)
    if unknown:  # pragma: no cover - a typo in a declaration below
        raise AssertionError(f"unknown settings key scope(s) {sorted(unknown)}")
    return field(default=default, metadata={"doc": doc, "scopes": tuple(scopes)})


@dataclass(frozen=True)
class Settings:
    """Every tunable of terramind_nyc, with defaults, env overrides and validation."""

    # --- catalog -----------------------------------------------------------------------
    catalog_provider: Provider = _f(
        "planetary-computer",
        "STAC provider: `planetary-computer`, any `stac-api` at `catalog_url`, or `local` "
        "(an ItemCollection file or folder of item JSON files at `catalog_path`).",
        scopes=("catalog", "chip"),
    )
    catalog_url: str = _f(PLANETARY_COMPUTER_URL, "STAC API root URL (planetary-computer / stac-api).", scopes=("catalog", "chip"))
    catalog_path: str | None = _f(None, "Local ItemCollection file or folder of items (provider `local`).", scopes=("catalog", "chip"))
    signer: Signer = _f(
        "planetary-computer",
        "Asset URL signer: `planetary-computer` (no-op off Azure blob hosts) or `none`.",
        scopes=("catalog",),
    )
    s2_collection: str = _f("sentinel-2-l2a", "Sentinel-2 L2A collection id.", scopes=("chip",))
    s1_collection: str = _f("sentinel-1-rtc", "Sentinel-1 RTC collection id.", scopes=("chip",))
    dem_collection: str = _f("cop-dem-glo-30", "Copernicus DEM collection id.", scopes=("chip",))
    # --- scene choice ------------------------------------------------------------------
    recency_days: int = _f(120, "Search window in days before now (or before `when`) for S2 scenes.", scopes=())
    scene_prefilter_cloud_pct: float = _f(
        80.0, "Loose server-side prefilter on scene-wide `eo:cloud_cover` (percent, 0-100).",
        scopes=("chip",),
    )
    max_cloud: float = _f(0.2, "Highest chip-level cloud fraction (SCL 3, 8, 9, 10) accepted, 0..1.", scopes=("chip",))
    max_nodata: float = _f(0.1, "Highest chip-level S2 nodata fraction accepted for a scene, 0..1.", scopes=("chip",))
    min_valid_fraction: float = _f(
        0.5, "A chip whose valid-pixel fraction is below this is rejected (never zero-filled), 0..1.",
        scopes=("chip",),
    )
    scene_candidates: int = _f(6, "Newest N candidate scenes whose SCL is read on the chip grid.", scopes=("chip",))
    stale_after_days: int = _f(60, "Warn (StaleSceneWarning) when the chosen S2 scene is older than this at the window end.", scopes=())
    s1_window_days: int = _f(12, "S1 RTC pairing window: nearest acquisition within +-N days of S2.", scopes=("chip",))
    # --- grid --------------------------------------------------------------------------
    size_m: float = _f(2240.0, "Default chip window side in metres (224 px at 10 m).", scopes=())
    resolution_m: float = _f(10.0, "Grid resolution in metres.", scopes=("chip",))
    crs: str = _f("EPSG:32618", "Grid CRS (UTM 18N covers NYC).", scopes=("chip",))
    domain_check: bool = _f(True, "Reject points outside the NYC domain below.", scopes=())
    domain_lat: tuple[float, float] = _f((40.49, 40.92), "NYC domain latitude range (min, max).", scopes=())
    domain_lon: tuple[float, float] = _f((-74.27, -73.69), "NYC domain longitude range (min, max).", scopes=())
    # --- model -------------------------------------------------------------------------
    checkpoint: str = _f(DEFAULT_CHECKPOINT, "Checkpoint: a local artifact directory or a Hugging Face repo id.", scopes=("model", "runtime"))
    checkpoint_revision: str | None = _f(None, "Hugging Face revision (tag, branch or commit) to pin.", scopes=("model", "runtime"))
    backend: Backend = _f(
        "auto",
        "Inference backend: `auto` (OpenVINO on a bf16 CPU, else ONNX Runtime, when the artifact has an ONNX "
        "export; else torch), `torch`, `onnx` (ONNX Runtime), `openvino`.",
        scopes=("model", "runtime"),
    )
    device: Device = _f("auto", "Torch device: `auto`, `cpu`, `cuda` (ROCm builds report as cuda).", scopes=("model", "runtime"))
    onnx_providers: tuple[str, ...] = _f(
        ("MIGraphXExecutionProvider", "ROCMExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
        "ONNX Runtime execution providers in priority order (filtered to those installed).",
        scopes=("model", "runtime"),
    )
    precision: Precision = _f(
        "auto",
        "Numeric precision of the network: `fp32` (IEEE float32), `bf16` (bfloat16 where the hardware and "
        "backend support it, else fp32 with a warning) or `auto` (bf16 on GPUs with bf16 and on CPUs with "
        "AMX-BF16 / AVX512-BF16, else fp32).",
        scopes=("model", "runtime"),
    )
    threads: int | None = _f(None, "Intra-op threads for torch / ONNX Runtime (None: library default).", scopes=("model", "runtime"))
    tile_overlap_px: int = _f(32, "Overlap in pixels between neighbouring 224 tiles of a tiled pass.", scopes=("runtime",))
    tile_batch: int = _f(8, "Tiles per forward pass (memory bound).", scopes=("runtime",))
    # --- network -----------------------------------------------------------------------
    http_timeout_s: float = _f(20.0, "Timeout of one HTTP request (connect and read), seconds.", scopes=("catalog",))
    http_retries: int = _f(3, "Retries of a transient HTTP failure (timeout, 429, 5xx).", scopes=("catalog",))
    http_backoff_s: float = _f(0.5, "First retry backoff in seconds (doubles, capped at 8 s).", scopes=("catalog",))
    deadline_s: float = _f(120.0, "Overall deadline of one chip request, seconds.", scopes=())
    io_threads: int = _f(8, "Parallel asset reads per chip.", scopes=())
    # --- caches ------------------------------------------------------------------------
    cache_enabled: bool = _f(True, "Enable in-memory caches (STAC searches, chips, results).", scopes=("catalog",))
    stac_cache_ttl_s: float = _f(900.0, "Time-to-live of cached STAC searches, seconds.", scopes=("catalog", "caches"))
    chip_cache_bytes: int = _f(512 * 1024 * 1024, "Byte bound of the in-memory LRU chip cache.", scopes=("caches",))
    result_cache_ttl_s: float = _f(3600.0, "Time-to-live of cached results, seconds.", scopes=("caches",))
    result_cache_size: int = _f(256, "Most results kept in the result cache.", scopes=("caches",))
    cache_dir: str | None = _f(None, "Optional on-disk chip cache directory.", scopes=("caches",))

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``TERRAMIND_NYC_*`` variables of ``env`` (default ``os.environ``), then ``overrides``."""
        env = os.environ if env is None else env
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = _parse(f.name, hints[f.name], env[key], key)
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values.update(overrides)
        try:
            return cls(**values)
        except TypeError as exc:  # pragma: no cover - defensive
            raise SettingsError(str(exc)) from exc

    def replace(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` applied."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def resolve(cls, settings: Settings | None) -> Settings:
        """The settings a call runs with: ``settings`` itself, or ``Settings.from_env()`` for None.

        The one default path of the library: every public function that takes ``settings=None``
        goes through here. Anything that is not a :class:`Settings` is an InvalidInputError.
        """
        if settings is None:
            return cls.from_env()
        if not isinstance(settings, Settings):
            raise InvalidInputError(f"settings must be a terramind_nyc.Settings, got {type(settings).__name__}")
        return settings

    def key(self, scope: str) -> tuple[tuple[str, Any], ...]:
        """The ``(name, value)`` pairs of every field in cache-key ``scope`` (see :data:`KEY_SCOPES`).

        Hashable; two settings give the same key exactly when every field that matters to the
        scope is equal.
        """
        keys = self.__dict__.get("_keys")  # settings are frozen: each key is built once per instance
        if keys is None:
            keys = {sc: tuple((n, getattr(self, n)) for n in names) for sc, names in _scope_fields().items()}
            object.__setattr__(self, "_keys", keys)
        try:
            return keys[scope]
        except KeyError:
            raise SettingsError(f"unknown settings key scope {scope!r}; use one of {KEY_SCOPES}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of all settings."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ----------------------------------------------------------------------------------------
@functools.cache
def _scope_fields() -> dict[str, tuple[str, ...]]:
    """Scope -> names of the fields that declare it, in declaration order."""
    fields = dataclasses.fields(Settings)
    return {sc: tuple(f.name for f in fields if sc in f.metadata["scopes"]) for sc in KEY_SCOPES}


def _parse(name: str, hint: Any, raw: str, key: str) -> Any:
    """Parse one environment variable according to the field's type hint."""
    raw = raw.strip()
    args = get_args(hint)
    origin = get_origin(hint)
    try:
        if type(None) in args and raw.lower() in ("", "none", "null"):
            return None
        base = next((a for a in args if a is not type(None)), hint) if args and origin is not tuple and origin is not Literal else hint
        if get_origin(base) is Literal or origin is Literal:
            return raw
        if base is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if base is int:
            return int(raw)
        if base is float:
            return float(raw)
        if get_origin(base) is tuple:
            parts = [p.strip() for p in raw.split(",") if p.strip()]
            inner = get_args(base)[0]
            return tuple(float(p) if inner is float else p for p in parts)
        return raw
    except ValueError as exc:
        raise SettingsError(f"{key}={raw!r} is not a valid value for `{name}`: {exc}") from None


def _validate(s: Settings) -> None:
    hints = get_type_hints(Settings)
    for f in dataclasses.fields(s):
        v = getattr(s, f.name)
        hint = hints[f.name]
        lit = hint if get_origin(hint) is Literal else None
        if lit is not None and v not in get_args(lit):
            raise SettingsError(f"`{f.name}` must be one of {get_args(lit)}, got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise SettingsError(f"`{f.name}` must be finite, got {v!r}")

    def frac(name: str) -> None:
        v = getattr(s, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
            raise SettingsError(f"`{name}` is a fraction and must lie in 0..1, got {v!r}")

    def positive(name: str, *, allow_zero: bool = False) -> None:
        v = getattr(s, name)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (v >= 0 if allow_zero else v > 0)
        if not ok:
            raise SettingsError(f"`{name}` must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")

    for name in ("max_cloud", "max_nodata", "min_valid_fraction"):
        frac(name)
    for name in ("recency_days", "stale_after_days", "scene_candidates", "size_m", "resolution_m", "tile_batch",
                 "http_timeout_s", "deadline_s", "io_threads", "chip_cache_bytes", "result_cache_size"):
        positive(name)
    for name in ("s1_window_days", "tile_overlap_px", "http_retries", "http_backoff_s",
                 "stac_cache_ttl_s", "result_cache_ttl_s"):
        positive(name, allow_zero=True)
    if not 0 <= s.scene_prefilter_cloud_pct <= 100:
        raise SettingsError(f"`scene_prefilter_cloud_pct` is a percentage 0..100, got {s.scene_prefilter_cloud_pct!r}")
    if s.threads is not None and (not isinstance(s.threads, int) or s.threads < 1):
        raise SettingsError(f"`threads` must be a positive integer or None, got {s.threads!r}")
    for name, lo, hi in (("domain_lat", -90, 90), ("domain_lon", -180, 180)):
        rng = getattr(s, name)
        if len(rng) != 2 or not (lo <= rng[0] < rng[1] <= hi):
            raise SettingsError(f"`{name}` must be (min, max) within [{lo}, {hi}], got {rng!r}")
    if s.catalog_provider == "local" and not s.catalog_path:
        raise SettingsError("catalog_provider='local' needs `catalog_path` (an ItemCollection file or item folder)")
    if not s.checkpoint:
        raise SettingsError("`checkpoint` must name a local artifact directory or a Hugging Face repo id")
    if not s.onnx_providers:
        raise SettingsError("`onnx_providers` must list at least one execution provider")


def settings_table() -> str:
    """Markdown table of every setting, its environment variable, default and meaning."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(str(x) for x in default)
        rows.append(f"| `{f.name}` | `{ENV_PREFIX}{f.name.upper()}` | `{default}` | {f.metadata['doc']} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(settings_table())
