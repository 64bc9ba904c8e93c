"""One settings object for the whole library.

Values come from the defaults below, then a named profile (:data:`PROFILES`; ``profile=`` or
``TERRAMIND_NYC_PROFILE``), then ``TERRAMIND_NYC_<NAME>`` environment variables, then keyword
arguments (highest precedence)::

    s = Settings.from_env(recency_days=60)
    r = fetch(40.75, -73.98, settings=s)
    Settings.from_env(profile="riprap").deadline_s  # 60.0

Settings are frozen and validated on construction; ``s.replace(...)`` returns a validated copy.
An unknown keyword, a value of the wrong type or out of range (numbers: :data:`LIMITS`) and a bad
``TERRAMIND_NYC_*`` variable are each a SettingsError that names the setting and what it takes.
The tables in ``docs/settings.md`` are generated from the field metadata and profiles here
(``python -m terramind_nyc.settings_doc``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from .errors import InvalidInputError, SettingsError, shown

__all__ = ["DEFAULT_CHECKPOINT", "ENV_PREFIX", "KEY_SCOPES", "LIMITS", "PLANETARY_COMPUTER_URL", "POSITIVE", "PROFILES",
           "Settings"]

ENV_PREFIX = "TERRAMIND_NYC_"
PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
#: The default checkpoint: the published NYC adapters (two LoRA fine-tunes of TerraMind-1.0-base),
#: converted into a local artifact on first use (:mod:`terramind_nyc.model.adapters`), until a
#: jointly trained two-head checkpoint is published.
DEFAULT_CHECKPOINT = "msradam/TerraMind-NYC-Adapters"

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

#: Named defaults for a kind of caller, applied under the environment and keyword overrides.
#: ``riprap``: the flood-briefing client's chip step allows 60 s (soft) / 75 s (hard), so the whole
#: call, a first model load included, ends by 60 s; one stalled request gets 15 s, leaving time to retry.
PROFILES: Mapping[str, Mapping[str, Any]] = {"riprap": {"deadline_s": 60.0, "http_timeout_s": 15.0}}


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
    checkpoint: str = _f(DEFAULT_CHECKPOINT, "Checkpoint: a local artifact directory or a Hugging Face repo id (default: the published NYC adapters, converted once into the cache on first use).", scopes=("model", "runtime"))
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
    map_max_age_days: float = _f(120.0, "fetch(map=...) answers from the map only when its scene is at most this "
                                 "many days older than the end of `when` (now without it); else live.", scopes=())
    # --- caches ------------------------------------------------------------------------
    cache_enabled: bool = _f(True, "Enable in-memory caches (STAC searches, chips, results).", scopes=("catalog",))
    stac_cache_ttl_s: float = _f(900.0, "Time-to-live of cached STAC searches, seconds.", scopes=("catalog", "caches"))
    chip_cache_bytes: int = _f(512 * 1024 * 1024, "Byte bound of the in-memory LRU chip cache.", scopes=("caches",))
    result_cache_ttl_s: float = _f(3600.0, "Time-to-live of cached results, seconds.", scopes=("caches",))
    result_cache_size: int = _f(256, "Most results kept in the result cache.", scopes=("caches",))
    cache_dir: str | None = _f(None, "Optional on-disk chip cache directory.", scopes=("caches",))
    # --- training energy (training.energy: kWh = device-hours x kW x PUE, kg CO2e = kWh x grid factor) ---------
    energy_device_kw: float = _f(0.0, "Power draw of one GPU in kW for energy estimates; 0: the nominal board power "
                                 "of its model (training.energy table). CPU stages count 10 W per core.", scopes=())
    energy_pue: float = _f(1.5, "Data-centre power usage effectiveness (facility / IT energy, >= 1) applied to the "
                           "device energy.", scopes=())
    energy_grid_kg_co2e_per_kwh: float = _f(0.4, "Grid carbon intensity, kg CO2e per kWh. 0.4 is a round figure near "
                                            "the US average (EPA eGRID, about 0.37-0.39); set your grid's.", scopes=())

    def __post_init__(self) -> None:
        for name, value in _validate(self).items():  # each value checked, and normalised (list -> tuple, ...)
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, profile: str | None = None, **overrides: Any) -> Settings:
        """Defaults, then the :data:`PROFILES` entry ``profile`` (default: ``TERRAMIND_NYC_PROFILE``, else
        none), then ``TERRAMIND_NYC_*`` variables of ``env`` (default ``os.environ``), then ``overrides``.

        A bad variable is a SettingsError naming it (``TERRAMIND_NYC_RECENCY_DAYS='soon' ...``), and so
        is an unknown profile.
        """
        env = os.environ if env is None else env
        if not isinstance(env, Mapping):
            raise SettingsError(f"env must be a mapping of variable names to strings, got {type(env).__name__}")
        _reject_unknown(overrides)
        hints = _hints()
        name = (env.get(ENV_PREFIX + "PROFILE", "").strip() or None) if profile is None else profile
        if name is not None and name not in PROFILES:
            raise SettingsError(f"unknown settings profile {shown(name)}; profiles: {', '.join(PROFILES)}")
        values: dict[str, Any] = dict(PROFILES[name]) if name is not None else {}
        for f in dataclasses.fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env and f.name not in overrides:
                raw = env[key]
                try:
                    values[f.name] = _check_field(f.name, hints[f.name], _parse(f.name, hints[f.name], raw))
                except SettingsError as exc:
                    raise SettingsError(f"{key}={shown(raw)} is not a valid value for `{f.name}`: {exc}") from None
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` applied."""
        _reject_unknown(changes)
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


#: Documented range of every numeric setting, ``name -> (lowest, highest)``, both inclusive except
#: that the fields of :data:`POSITIVE` must be above their lowest value. The upper bounds keep every
#: value inside what the standard library and the services accept (timedelta, thread and socket
#: timeouts) and inside what makes sense for NYC imagery (a day-long deadline, a century of days).
LIMITS: Mapping[str, tuple[float, float]] = {
    "recency_days": (1, 36_500), "scene_prefilter_cloud_pct": (0, 100), "max_cloud": (0, 1), "max_nodata": (0, 1),
    "min_valid_fraction": (0, 1), "scene_candidates": (1, 1000), "stale_after_days": (1, 36_500),
    "s1_window_days": (0, 36_500), "size_m": (0, 20_000), "resolution_m": (1, 1000), "threads": (1, 1024),
    "tile_overlap_px": (0, 1024), "tile_batch": (1, 4096), "http_timeout_s": (0, 86_400), "http_retries": (0, 100),
    "http_backoff_s": (0, 3600), "deadline_s": (0, 86_400), "io_threads": (1, 1024), "map_max_age_days": (0, 36_500),
    "stac_cache_ttl_s": (0, 31_536_000), "chip_cache_bytes": (1, 1 << 50), "result_cache_ttl_s": (0, 31_536_000),
    "result_cache_size": (1, 10_000_000), "energy_device_kw": (0, 100), "energy_pue": (1, 10),
    "energy_grid_kg_co2e_per_kwh": (0, 5)}
#: Numeric settings that must lie strictly above their lowest value (a window, a timeout).
POSITIVE = frozenset({"size_m", "http_timeout_s", "deadline_s"})
_UNITS = {"_days": " of days", "_pct": " (percent)", "_m": " of metres", "_px": " of pixels", "_s": " of seconds",
          "_bytes": " of bytes", "_kw": " of kilowatts", "_per_kwh": " (kg CO2e per kWh)"}
_PATHS = frozenset({"catalog_path", "checkpoint", "cache_dir"})  # os.PathLike accepted, kept as str


@functools.cache
def _hints() -> dict[str, Any]:  # field name -> type hint
    return get_type_hints(Settings)


def _reject_unknown(names: Iterable[str]) -> None:
    known = [f.name for f in dataclasses.fields(Settings)]
    unknown = sorted(set(names) - set(known))
    if unknown:
        close = [m for n in unknown for m in difflib.get_close_matches(n, known, n=1)]
        hint = f"did you mean {', '.join(f'`{c}`' for c in close)}? " if close else ""
        raise SettingsError(f"unknown setting(s) {', '.join(f'`{n}`' for n in unknown)}; {hint}see docs/settings.md")


def _strict(init: Callable[..., None]) -> Callable[..., None]:
    """The dataclass ``__init__``, with a wrong call (unknown keyword, too many positional values) a
    SettingsError instead of a TypeError."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Settings, *args: Any, **kwargs: Any) -> None:
        _reject_unknown(kwargs)
        try:
            signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise SettingsError(f"{exc}; pass settings as keywords, e.g. Settings(recency_days=60)") from None
        init(self, *args, **kwargs)

    return __init__


setattr(Settings, "__init__", _strict(Settings.__init__))


def _parse(name: str, hint: Any, raw: Any) -> Any:
    """Parse one environment variable according to the field's type hint (checked afterwards)."""
    if not isinstance(raw, str):
        raise SettingsError(f"an environment value is a string, got {type(raw).__name__}")
    raw = raw.strip()
    args, origin = get_args(hint), get_origin(hint)
    if type(None) in args and raw.lower() in ("", "none", "null"):
        return None
    base = next((a for a in args if a is not type(None)), hint) if origin is not tuple and origin is not Literal else hint
    if base is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError("expected true or false (1/0, yes/no, on/off)")
    floats = get_origin(base) is tuple and get_args(base)[0] is float
    try:
        if base is int or base is float:
            return base(raw)
        if get_origin(base) is tuple:
            return tuple(float(p) if floats else p for p in (p.strip() for p in raw.split(",")) if p)
    except ValueError:
        what = "a whole number" if base is int else "comma-separated numbers such as '40.49,40.92'" if floats \
            else "a number"
        raise SettingsError(f"expected {what}") from None
    return raw


def _number(name: str, value: Any, integer: bool) -> float:
    """A numeric setting checked against :data:`LIMITS` (an int field takes whole numbers only)."""
    lo, hi = LIMITS[name]
    unit = next((u for suffix, u in _UNITS.items() if name.endswith(suffix)), "")
    rng = f"above {lo:g} and at most {hi:g}" if name in POSITIVE else f"from {lo:g} to {hi:g}"
    bad = SettingsError(f"`{name}` must be {'a whole' if integer else 'a'} number{unit} {rng}, got {shown(value)}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy numbers are Real, np.bool_ not
        raise bad
    try:
        v = float(value)
    except (OverflowError, TypeError, ValueError):
        raise bad from None
    if not math.isfinite(v) or not lo <= v <= hi or (name in POSITIVE and v <= lo) or (integer and not v.is_integer()):
        raise bad
    return int(v) if integer else v


def _check_field(name: str, hint: Any, value: Any) -> Any:
    """One field's value, checked against its type hint and range, normalised (tuples, str paths)."""
    args = get_args(hint)
    if type(None) in args and value is None:
        return None
    base = next((a for a in args if a is not type(None)), hint) if get_origin(hint) is not tuple else hint
    if get_origin(hint) is Literal:
        if not isinstance(value, str) or value not in args:
            raise SettingsError(f"`{name}` must be one of {', '.join(repr(a) for a in args)}, got {shown(value)}")
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"`{name}` must be True or False, got {shown(value)}")
        return bool(value)
    if base in (int, float):
        return _number(name, value, base is int)
    if base is str:
        if name in _PATHS and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            none = " or None" if type(None) in args else ""
            raise SettingsError(f"`{name}` must be a non-empty string{none}, got {shown(value)}; see docs/settings.md")
        return value
    if name in ("domain_lat", "domain_lon"):
        lim = 90 if name == "domain_lat" else 180
        bad = SettingsError(f"`{name}` must be (min, max) degrees with -{lim} <= min < max <= {lim}, got "
                            f"{shown(value)}; e.g. {shown(getattr(Settings, name))}")
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise bad
        try:
            lo, hi = (float(v) for v in value if isinstance(v, numbers.Real) and not isinstance(v, bool))
        except (ValueError, TypeError, OverflowError):  # too few numbers, or one too large for a float
            raise bad from None
        if not -lim <= lo < hi <= lim:
            raise bad
        return lo, hi
    # onnx_providers: the one tuple of strings
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value \
            or not all(isinstance(v, str) and v.strip() for v in value):
        raise SettingsError(f"`{name}` must be a non-empty list of names such as ('CPUExecutionProvider',), got "
                            f"{shown(value)}")
    return tuple(value)


def _validate(s: Settings) -> dict[str, Any]:
    """Every field of ``s`` checked (SettingsError naming the first bad one), as normalised values."""
    hints = _hints()
    values = {f.name: _check_field(f.name, hints[f.name], getattr(s, f.name)) for f in dataclasses.fields(s)}
    provider = values["catalog_provider"]
    if provider == "local" and values["catalog_path"] is None:
        raise SettingsError("catalog_provider='local' needs `catalog_path` (an ItemCollection file or item folder)")
    if provider != "local" and not values["catalog_url"].lower().startswith(("http://", "https://")):
        raise SettingsError(f"catalog_provider={provider!r} needs `catalog_url`, an http(s) URL of a STAC API root, "
                            f"got {shown(values['catalog_url'])}")
    if values["size_m"] < values["resolution_m"]:
        raise SettingsError(f"`size_m`={values['size_m']:g} is smaller than one {values['resolution_m']:g} m pixel "
                            "(`resolution_m`); pass a larger size_m")
    return values
