"""Converting the published NYC adapters into an artifact: every tensor checked, LoRA kept as factors.

    import_adapters("out/dir")        # or terramind-nyc import-adapters --out DIR

The default checkpoint, this conversion done once into the cache, is
:mod:`terramind_nyc.model.default_checkpoint`.

What the adapters are, their preprocessing and the default checkpoint built from them are in
:mod:`terramind_nyc.model.adapters`; ``docs/adapters.md`` lists every check. The files come from
the hub through huggingface_hub's cache (:mod:`terramind_nyc.model.hub`) or from local folders
in the same layout; the base's torch pickle is read with ``torch.load(weights_only=True)`` only.
Needs torch and terratorch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, CheckpointNotFoundError, InvalidInputError
from . import hub
from .adapters import ADAPTER_FILES, ADAPTERS_REPO, BASE_REPO, HEAD_FOLDERS, adapters_config, base_file_name
from .config import ENCODERS, LORA_TARGETS, LoraSpec
from .files import CONFIG_FILE

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["import_adapters"]

log = logging.getLogger(__name__)

_LORA_KEY = re.compile(r"^encoder\.encoder\.encoder\.(\d+)\.(attn\.(?:qkv|proj))\.lora_([AB])\.default\.weight$")
_PEFT_PREFIX = "base_model.model."


def _fetch(source: str, name: str, revision: str | None) -> Path:
    """A file of a hub repo (downloaded into the Hugging Face cache) or of a local folder."""
    local = Path(source).expanduser()
    if local.is_dir():
        f = local / name
        if not f.is_file():
            raise CheckpointNotFoundError(f"{source}: {name} is missing")
        return f
    return hub.download_file(source, name, revision)


def _commit_of(path: Path) -> str | None:
    """The commit a file of the Hugging Face cache belongs to (``.../snapshots/<commit>/...``)."""
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def _read_adapter_config(path: Path, where: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{where}: cannot be read as JSON ({str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a JSON object")
    missing = [k for k in ("r", "lora_alpha", "target_modules", "num_classes") if k not in data]
    if missing:
        raise CheckpointError(f"{where}: missing {missing}")
    return data


def _lora_spec(data: Mapping[str, Any], where: str) -> LoraSpec:
    r, alpha, targets = data["r"], data["lora_alpha"], data["target_modules"]
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise CheckpointError(f"{where}: `r` must be a positive integer, got {r!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise CheckpointError(f"{where}: `lora_alpha` must be a positive number, got {alpha!r}")
    if not isinstance(targets, list) or not targets:
        raise CheckpointError(f"{where}: `target_modules` must be a non-empty list, got {targets!r}")
    full = []
    for t in targets:
        name = t if t in LORA_TARGETS else f"attn.{t}" if f"attn.{t}" in LORA_TARGETS else None
        if name is None:
            raise CheckpointError(f"{where}: target module {t!r} is not one of {list(LORA_TARGETS)}")
        full.append(name)
    return LoraSpec(r, float(alpha), tuple(t for t in LORA_TARGETS if t in full))


def _load_safetensors(path: Path, where: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{where}: not a readable safetensors file ({str(exc)[:200]}); re-download it") from None


def _load_base(path: Path, where: str) -> dict[str, torch.Tensor]:
    """The base weights: safetensors, or a torch pickle read with ``weights_only=True`` only."""
    import pickle

    import torch

    if path.suffix == ".safetensors":
        return _load_safetensors(path, where)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{where}: refused by torch.load(weights_only=True), it holds more than tensors "
                              f"({str(exc).splitlines()[0][:200]}); it is not loaded") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:  # truncated or not a torch file
        raise CheckpointError(f"{where}: not a readable torch weights file ({str(exc)[:200]}); re-download it") from None
    for key in ("state_dict", "model"):  # a nested checkpoint
        if isinstance(data, dict) and isinstance(data.get(key), dict) and len(data) <= 4:
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{where}: expected a dict of tensors (a state dict)")
    return data


def _encoder_of(base: str) -> str:
    """``ibm-esa-geospatial/TerraMind-1.0-base`` -> ``terramind_v1_base``; a local folder by the
    ``TerraMind_v1_<size>.pt`` it holds."""
    local = Path(base).expanduser()
    sizes = ("tiny", "small", "base", "large")
    if local.is_dir():
        found = [s for s in sizes if (local / base_file_name(f"terramind_v1_{s}")).is_file()]
        if len(found) == 1:
            return f"terramind_v1_{found[0]}"
    m = re.search(r"TerraMind-1\.0-(tiny|small|base|large)$", base.rstrip("/"), re.IGNORECASE)
    if m is None:
        raise InvalidInputError(f"cannot tell the TerraMind size from base {base!r}; pass encoder= (--encoder)")
    return f"terramind_v1_{m.group(1).lower()}"


def _decoder_channels(path: Path, where: str) -> tuple[int, ...]:
    """The UNet decoder's four stage widths, from the shapes of its first convolutions."""
    from .safetensors_io import read_header

    tensors = read_header(path).tensors
    out = []
    for i in range(4):
        entry = tensors.get(f"decoder.decoder.blocks.{i}.conv1.0.weight")
        if entry is None:
            raise CheckpointError(f"{where}: no decoder.decoder.blocks.{i}.conv1.0.weight: not a UNet decoder's weights")
        out.append(int(entry[1][0]))
    return tuple(out)


def _some(names: Sequence[str]) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")


class _Filler:
    """Fills the network's tensors from the source files; every target exactly once, shapes checked.
    Messages name the tensors as the files name them."""

    def __init__(self, targets: Mapping[str, torch.Tensor], fold: Callable[[torch.Tensor, Any], torch.Tensor] | None
                 = None) -> None:
        self.targets = targets
        self.fold = fold  # folds a weight that read T repeated copies into one that reads one copy
        self.filled: set[str] = set()
        self.problems: list[str] = []

    def put(self, name: str, value: torch.Tensor, where: str, source: str) -> None:
        t = self.targets.get(name)
        if t is None:
            self.problems.append(f"{where}: {source} has no place in the network")
            return
        if tuple(value.shape) != tuple(t.shape) and self.fold is not None and value.ndim == t.ndim \
                and value.numel() > t.numel():
            try:
                value = self.fold(value, tuple(t.shape))
            except CheckpointError:
                pass  # reported as a shape mismatch below
        if tuple(value.shape) != tuple(t.shape):
            self.problems.append(f"{where}: {source} has shape {list(value.shape)}, the network needs {list(t.shape)}")
            return
        import torch

        with torch.no_grad():
            t.copy_(value.to(t.dtype))
        self.filled.add(name)


def _file_name(name: str, base: str) -> str:
    """Where a tensor of the converted network comes from: ``file: key`` as the source files name it."""
    part, _, rest = name.partition(".")
    if part == "encoder":
        return f"{base}: {rest}"
    head, _, key = rest.partition(".")
    folder = HEAD_FOLDERS.get(head, head)
    if part == "lora":
        block, target, ab = key.split(".")
        return (f"{folder}/adapter_model.safetensors: encoder.encoder.encoder.{block}."
                f"{target.replace('_', '.')}.{ab}.default.weight")
    prefix = {"necks": "neck", "decoders": "decoder", "heads": "head"}.get(part, part)
    return f"{folder}/decoder_head.safetensors: {prefix}.{key}"


def import_adapters(out: str | os.PathLike[str], *, adapters: str = ADAPTERS_REPO, revision: str | None = None,
                    base: str | None = None, base_revision: str | None = None, encoder: str | None = None,
                    base_file: str | None = None, overwrite: bool = False) -> Path:
    """Download the adapters and their base, check every tensor, and write a normal artifact at ``out``.

    Args:
        out: the artifact directory to write (``config.json`` + ``model.safetensors``).
        adapters / revision: the adapters repo (or a local folder of the same layout) and its revision.
        base / base_revision: the TerraMind base repo (or folder) and its revision (default: the
            ``base_model_name_or_path`` of the adapters' ``adapter_config.json``).
        encoder: the TerraMind size the adapters were trained on (default: from the base repo's
            name, ``TerraMind-1.0-base`` -> ``terramind_v1_base``).
        base_file: the base weights' file name (default ``TerraMind_v1_<size>.pt``).
        overwrite: replace an existing artifact at ``out``.

    The UNet decoder's channels are read from the decoder weights' shapes.

    The artifact is built in a temporary folder next to ``out`` and moved into place whole, so
    a failed download or check leaves nothing half-written. Raises CheckpointNotFoundError
    (a file or repo missing, the hub unreachable) and CheckpointError (a tensor missing, left
    over or of another shape; a LoRA rank or target that disagrees with ``adapter_config.json``;
    a pickle ``weights_only=True`` refuses; NaN weights).
    """
    from .network import build_network, fold_repeated, lora_key, transformer_blocks
    from .save import save_artifact

    dest = Path(os.fspath(out)).expanduser()
    if (dest / CONFIG_FILE).exists() and not overwrite:
        raise InvalidInputError(f"{dest} already holds an artifact; pass overwrite=True (--overwrite)")
    paths: dict[tuple[str, str], Path] = {}
    for head, folder in HEAD_FOLDERS.items():
        for name in ADAPTER_FILES:
            paths[(head, name)] = _fetch(adapters, f"{folder}/{name}", revision)
    loras, configs = {}, {}
    for head, folder in HEAD_FOLDERS.items():
        where = f"{adapters}/{folder}/adapter_config.json"
        configs[head] = _read_adapter_config(paths[(head, "adapter_config.json")], where)
        loras[head] = _lora_spec(configs[head], where)
    declared = {str(c.get("base_model_name_or_path") or BASE_REPO) for c in configs.values()}
    if base is None and len(declared) > 1:
        raise CheckpointError(f"{adapters}: the adapters name different bases {sorted(declared)}; pass base=")
    base = base or declared.pop()
    encoder = encoder or _encoder_of(base)
    base_name = base_file or base_file_name(encoder)
    base_path = _fetch(base, base_name, base_revision)
    first = next(iter(HEAD_FOLDERS))
    decoder_channels = _decoder_channels(paths[(first, "decoder_head.safetensors")],
                                         f"{adapters}/{HEAD_FOLDERS[first]}/decoder_head.safetensors")
    sources = _source_record(adapters, revision, base, base_revision, paths, base_path, base_name)
    config = adapters_config(encoder, loras=loras, decoder_channels=decoder_channels,
                             training={"source": sources, "kind": "published LoRA adapters, converted"})
    for head in HEAD_FOLDERS:
        want = len(config.head(head).classes)
        if configs[head]["num_classes"] != want:
            raise CheckpointError(f"{adapters}/{HEAD_FOLDERS[head]}/adapter_config.json: num_classes "
                                  f"{configs[head]['num_classes']!r}, the {head} head has {want} classes")

    network = build_network(config, pretrained=False)
    targets = network.state_dict()
    dim = ENCODERS[config.encoder][1]
    fill = _Filler(targets, (lambda w, shape: fold_repeated(w, shape, network.fold, dim)) if network.fold > 1 else None)

    # the base encoder: every tensor the encoder has, from the TerraMind file (its other parts unused)
    base_sd = _load_base(base_path, f"{base}/{base_name}")
    missing = [k for k in targets if k.startswith("encoder.") and k[len("encoder."):] not in base_sd]
    if missing:
        raise CheckpointError(f"{base}/{base_name}: {len(missing)} encoder tensor(s) missing "
                              f"({_some([m[len('encoder.'):] for m in missing])}); is it the {encoder} checkpoint?")
    reshaped = [f"{k[len('encoder.'):]} {list(base_sd[k[len('encoder.'):]].shape)} (needs {list(t.shape)})"
                for k, t in targets.items() if k.startswith("encoder.") and
                tuple(base_sd[k[len("encoder."):]].shape) != tuple(t.shape)]
    if reshaped:
        raise CheckpointError(f"{base}/{base_name}: {len(reshaped)} encoder tensor(s) of another shape "
                              f"({_some(reshaped)}); is it the {encoder} checkpoint?")
    for k in [k for k in targets if k.startswith("encoder.")]:
        fill.put(k, base_sd[k[len("encoder."):]], f"{base}/{base_name}", k[len("encoder."):])
    unused_base = len(base_sd) - sum(1 for k in targets if k.startswith("encoder."))

    blocks = len(transformer_blocks(network.encoder))
    dropped: dict[str, int] = {}
    for head, folder in HEAD_FOLDERS.items():
        spec = loras[head]
        where = f"{adapters}/{folder}/adapter_model.safetensors"
        lora = _load_safetensors(paths[(head, "adapter_model.safetensors")], where)
        lora = {k.removeprefix(_PEFT_PREFIX): v for k, v in lora.items()}
        expected = {f"encoder.encoder.encoder.{i}.{t}.lora_{ab}.default.weight"
                    for i in range(blocks) for t in spec.targets for ab in "AB"}
        unknown, absent = sorted(set(lora) - expected), sorted(expected - set(lora))
        if unknown or absent:
            targets_hint = ("; the file's targets disagree with adapter_config.json's target_modules "
                            f"{list(spec.targets)}") if any(_LORA_KEY.match(k) for k in unknown) else ""
            raise CheckpointError(f"{where}: " + "; ".join(
                p for p in (f"{len(unknown)} unknown tensor(s): {_some(unknown)}" if unknown else "",
                            f"{len(absent)} missing: {_some(absent)}" if absent else "") if p) + targets_hint)
        for k, v in lora.items():
            m = _LORA_KEY.match(k)
            assert m is not None
            i, target, ab = int(m.group(1)), m.group(2), m.group(3)
            rank_axis = 0 if ab == "A" else 1
            if v.ndim != 2 or v.shape[rank_axis] != spec.rank:
                raise CheckpointError(f"{where}: {k} has shape {list(v.shape)}: rank {v.shape[rank_axis] if v.ndim == 2 else '?'}"
                                      f" disagrees with adapter_config.json (r = {spec.rank})")
            fill.put(f"lora.{head}.{i}.{lora_key(target)}.lora_{ab}", v, where, k)

        where = f"{adapters}/{folder}/decoder_head.safetensors"
        rest = _load_safetensors(paths[(head, "decoder_head.safetensors")], where)
        prefixes = {"neck.": f"necks.{head}.", "decoder.": f"decoders.{head}.", "head.": f"heads.{head}."}
        stray = sorted(k for k in rest if not k.startswith((*prefixes, "aux_heads.")))
        if stray:
            raise CheckpointError(f"{where}: {len(stray)} unknown tensor(s): {_some(stray)}")
        dropped[folder] = sum(1 for k in rest if k.startswith("aux_heads."))
        for k, v in rest.items():
            for p, q in prefixes.items():
                if k.startswith(p):
                    fill.put(q + k[len(p):], v, where, k)
    absent = sorted(set(targets) - fill.filled)
    if fill.problems or absent:
        named = [_file_name(a, f"{base}/{base_name}") for a in absent]
        problems = fill.problems[:6] + ([f"{len(absent)} tensor(s) missing: {_some(named)}"] if absent else [])
        raise CheckpointError("the adapters do not match the network they were trained as: " + "; ".join(problems))
    network.merge_lora()
    broken = [k for k, t in targets.items() if t.is_floating_point() and not bool(t.isfinite().all())]
    if broken:
        raise CheckpointError(f"{len(broken)} tensor(s) hold NaN or inf (first: {broken[0]}); re-download the adapters")
    record = dict(config.training) | {"unused": {"base_tensors": unused_base, "aux_heads_tensors": dropped}}
    config = config.replace(training=record)

    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.import-"))
    try:
        save_artifact(network, config, stage, overwrite=True)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            os.replace(stage, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.info("converted %s (+ %s) into %s", adapters, base, dest)
    return dest


def _source_record(adapters: str, revision: str | None, base: str, base_revision: str | None,
                   paths: Mapping[tuple[str, str], Path], base_path: Path, base_name: str) -> dict[str, Any]:
    from .safetensors_io import weights_sha256

    files = {f"{HEAD_FOLDERS[h]}/{n}": weights_sha256(p) for (h, n), p in sorted(paths.items())}
    return {
        "adapters": {"repo": adapters, "revision": revision, "commit": _commit_of(next(iter(paths.values()))),
                     "sha256": files},
        "base": {"repo": base, "revision": base_revision, "commit": _commit_of(base_path), "file": base_name,
                 "sha256": weights_sha256(base_path)},
    }
