"""ONNX export of a checkpoint: one graph per modality subset, weights stored once, verified.

    from terramind_nyc.model.export_onnx import export_onnx
    record = export_onnx("path/to/artifact")            # or out="other/dir"
    record.max_abs_diff                                  # ORT vs torch probabilities, random inputs

writes into the artifact directory::

    model.onnx               every modality (S2L2A + S1RTC + DEM)
    model.S2L2A.onnx         one graph per further modality subset the export covers
    model.S2L2A-S1RTC.onnx   (default: every subset that holds the first modality, S2L2A)
    model.S2L2A-DEM.onnx
    model.onnx.data          the weights all of them read (ONNX external data), each tensor once

and records the export (opset, exporter, file hashes, the verified difference) under ``onnx``
in ``config.json``.

Why one graph per subset: TerraMind concatenates the tokens of the modalities it is given and
attends over all of them, so a chip without S1 is a different computation, not the full one
with zeros. A graph traced on a subset is exactly what the torch network computes on that
subset. The graphs differ only in their patch embeddings and token counts; every weight they
share is written once to ``model.onnx.data`` (tensors are deduplicated by content), so the
extra graphs cost about a megabyte each on disk. A single graph with a modality mask would have
to re-implement TerraMind's attention with a key mask and always pay for every modality's
tokens (S2 alone runs in under a third of the time of all three).

Inputs are named after the modalities, ``(batch, bands, tile, tile)`` float32 standardised
values (``(batch, bands, T, tile, tile)`` when T > 1) with a dynamic batch and the config's
fixed tile size; outputs are named after the heads, logits ``(batch, classes, tile, tile)``.

Before anything is written into the artifact, every graph is run by ONNX Runtime on random
inputs and compared with torch run in IEEE float32 (``"highest"`` matmul precision, whatever
the process or the ``precision`` setting says): the softmax probabilities may differ by at most
``tolerance`` (1e-4), and the argmax class must agree on at least 99.9% of the pixels.
Probabilities, not logits: a random-weight network's logits can be large, and their absolute
difference would then measure their scale, not the export. The steps: :func:`_write_graphs`,
:func:`_check_graphs`, :func:`_verify`, then :func:`_install`. Needs the ``torch`` extra (torch,
terratorch, onnx; onnxscript for the dynamo exporter) and onnxruntime.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..atomic import atomic_path
from ..errors import BackendError, InvalidInputError
from ._onnx_graph import TensorStore, input_shape, name_shapes
from .artifact import load_artifact, write_config
from .config import ModelConfig
from .files import ONNX_DATA_FILE, WEIGHTS_FILE, onnx_files_in
from .onnx_record import OnnxExport, OnnxGraph, onnx_graph_file
from .precision import torch_numerics
from .safetensors_io import weights_sha256
from .tiling import softmax

if TYPE_CHECKING:  # pragma: no cover
    from .network import MultiHeadTerraMind

__all__ = ["DEFAULT_OPSET", "EXPORTERS", "FP16_MIN_AGREEMENT", "FP16_TOLERANCE", "FP32_MIN_AGREEMENT",
           "FP32_TOLERANCE", "export_onnx", "resolve_subsets"]

log = logging.getLogger(__name__)

#: ONNX opset of the export (both torch exporters handle the network at 20).
DEFAULT_OPSET = 20
#: torch.onnx exporters: the TorchScript-based one (default: about 4x faster to export here) and
#: the torch.export-based one (``dynamo=True``, needs onnxscript).
EXPORTERS = ("torchscript", "dynamo")
#: Default verification tolerances (largest absolute probability difference from torch float32).
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2
#: Smallest argmax agreement with torch a float32 / float16 export must reach (per graph and head).
FP32_MIN_AGREEMENT = 0.999
FP16_MIN_AGREEMENT = 0.99

SubsetsLike = str | Sequence[Sequence[str] | str] | None


def resolve_subsets(config: ModelConfig, subsets: SubsetsLike = None) -> list[tuple[str, ...]]:
    """The modality subsets to export, in model order, the full set first.

    ``subsets``: None or ``"default"``: every subset holding the first modality (S2L2A: what
    ``fetch`` can produce, since it needs Sentinel-2); ``"all"``: every non-empty subset;
    ``"full"``: only all modalities; or a list of subsets, each a sequence of names or a string
    ``"S2L2A+DEM"``. The full set is always exported (it is ``model.onnx``).
    """
    names = config.modality_names
    if subsets is None or subsets == "default":
        picked = [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r) if names[0] in c]
    elif subsets == "all":
        picked = [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]
    elif subsets == "full":
        picked = []
    elif isinstance(subsets, str):
        picked = [tuple(p.strip() for p in part.split("+") if p.strip()) for part in subsets.split(",") if part.strip()]
    else:
        picked = [tuple(p.strip() for p in s.split("+")) if isinstance(s, str) else tuple(s) for s in subsets]
    out: list[tuple[str, ...]] = [names]
    for s in picked:
        unknown = sorted(set(s) - set(names))
        if not s or unknown:
            raise InvalidInputError(
                f"modality subset {'+'.join(s) or '(empty)'}: subsets are non-empty sets of {list(names)}"
                + (f" ({unknown} unknown)" if unknown else "")
            )
        ordered = tuple(m for m in names if m in s)
        if ordered not in out:
            out.append(ordered)
    return out


def export_onnx(
    artifact: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    subsets: SubsetsLike = None,
    opset: int = DEFAULT_OPSET,
    exporter: Literal["torchscript", "dynamo"] = "torchscript",
    tolerance: float | None = None,
    fp16: bool = False,
    revision: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> OnnxExport:
    """Export ``artifact``'s network to ONNX (module docstring), verify it, record it; return the record.

    Args:
        artifact: a local artifact directory, or a Hugging Face repo id (then ``out`` is needed).
        out: folder to write the exported artifact to (``config.json`` and ``model.safetensors``
            are copied there); default: into ``artifact`` itself.
        subsets: which modality subsets get a graph (:func:`resolve_subsets`).
        opset: ONNX opset.
        exporter: ``torchscript`` or ``dynamo`` (torch.onnx's two exporters).
        tolerance: largest absolute probability difference ONNX Runtime may show against
            torch in IEEE float32 (default 1e-4; with ``fp16``, 1e-2).
        fp16: store the weights and run the graphs in float16 (inputs and outputs stay
            float32); for GPU execution providers. The verification then also asks that the
            argmax class agrees with torch's float32 on at least 99% of the pixels.
        revision: hub revision of a repo id.
        seed: seed of the random verification inputs.
        progress: called with a line of text at each step (the CLI prints them).

    Raises BackendError when torch, onnx or onnxruntime are missing, the exporter fails, or
    the verification finds a difference above ``tolerance`` (the message gives the figure).
    Nothing in the artifact changes unless the whole export succeeds; a previous export there
    is replaced.
    """
    say = progress or (lambda line: log.info("%s", line))
    if exporter not in EXPORTERS:
        raise InvalidInputError(f"exporter must be one of {list(EXPORTERS)}, got {exporter!r}")
    if tolerance is None:
        tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    if not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise InvalidInputError(f"tolerance must be a number >= 0, got {tolerance!r}")
    torch, onnx, ort = _imports(exporter)

    src = Path(os.fspath(artifact)).expanduser()
    if out is None and not src.is_dir():
        raise InvalidInputError(f"{artifact!s} is not a local artifact directory; pass `out` to export a hub checkpoint")
    t0 = datetime.now(UTC)
    art = load_artifact(artifact, revision=revision, device="cpu")
    config = art.config
    network = art.network
    # channels-last is a CPU speed-up of the eager network; ONNX has no memory formats
    network.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    network.eval()
    wanted = resolve_subsets(config, subsets)
    dest = src if out is None else Path(os.fspath(out)).expanduser()
    if dest.exists() and not dest.is_dir():
        raise InvalidInputError(f"{dest} exists and is not a directory")
    if (out is not None and (dest / WEIGHTS_FILE).is_file() and dest.resolve() != art.files.directory.resolve()
            and weights_sha256(dest / WEIGHTS_FILE) != art.sha256):
        raise InvalidInputError(f"{dest} holds another artifact (other weights); choose an empty folder for `out`")
    dest.mkdir(parents=True, exist_ok=True)
    say(f"exporting {config.name} {config.version} ({config.encoder}) to ONNX opset {opset} with the {exporter} "
        f"exporter{' in float16' if fp16 else ''}: {len(wanted)} graph(s) -> {dest}")

    stage = Path(tempfile.mkdtemp(prefix=".onnx-export-", dir=dest))
    try:
        files = _write_graphs(network, config, wanted, stage, opset=opset, exporter=exporter, fp16=fp16, say=say,
                              torch=torch, onnx=onnx)
        _check_graphs(stage, files, onnx)
        max_diff, agreement = _verify(network, config, stage, files, tolerance=tolerance, fp16=fp16,
                                      exporter=exporter, seed=seed, say=say, torch=torch, ort=ort)
        record = OnnxExport(
            graphs=tuple(OnnxGraph(subset, name, weights_sha256(stage / name)) for subset, name in files),
            data_sha256=weights_sha256(stage / ONNX_DATA_FILE),
            source_sha256=art.sha256,
            opset=opset,
            exporter=f"torch.onnx {exporter} (torch {torch.__version__.split('+')[0]}, onnx {onnx.__version__})",
            max_abs_diff=float(max_diff),
            tolerance=float(tolerance),
            argmax_agreement=float(agreement),
            precision="float16" if fp16 else "float32",
            created=t0.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        )
        _install(art.files.config, art.files.weights, dest, stage, config, record)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    say(f"wrote {len(record.graphs)} graph(s) and {ONNX_DATA_FILE} to {dest}; ONNX Runtime vs torch max abs diff "
        f"{record.max_abs_diff:.2e} (<= {tolerance:g}), argmax agreement {100 * record.argmax_agreement:.3f}%")
    return record


def _imports(exporter: str) -> tuple[Any, Any, Any]:
    try:
        import torch
    except ImportError:
        raise BackendError("export-onnx needs torch and terratorch: pip install -c constraints.txt "
                           "'terramind-nyc[torch,onnx]'") from None
    try:
        import onnx
    except ImportError:
        raise BackendError("export-onnx needs the onnx package: pip install 'terramind-nyc[torch]'") from None
    if exporter == "dynamo":
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            raise BackendError("the dynamo exporter needs onnxscript: pip install 'terramind-nyc[torch]', or use "
                               "exporter='torchscript'") from None
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendError("export-onnx verifies the export with ONNX Runtime: pip install 'terramind-nyc[onnx]' "
                           "(or one of the gpu, rocm, migraphx extras)") from None
    return torch, onnx, ort


def _write_graphs(network: MultiHeadTerraMind, config: ModelConfig, wanted: list[tuple[str, ...]], stage: Path, *,
                  opset: int, exporter: str, fp16: bool, say: Callable[[str], None], torch: Any,
                  onnx: Any) -> list[tuple[tuple[str, ...], str]]:
    """Step 1: trace one graph per subset into ``stage``, fix its shapes, (fp16) convert it, and move
    its weights into the shared external-data file; return (subset, file name) per graph."""
    heads = list(config.head_names)
    store = TensorStore(stage / ONNX_DATA_FILE)
    files: list[tuple[tuple[str, ...], str]] = []
    try:
        for subset in wanted:
            name = onnx_graph_file(subset, config.modality_names)
            raw = stage / f"raw-{name}"
            say(f"  {'+'.join(subset)} -> {name}")
            _trace(network, config, subset, heads, raw, opset=opset, exporter=exporter, torch=torch)
            model = onnx.load(str(raw), load_external_data=True)
            raw.unlink()
            for extra in stage.glob(f"raw-{name}*"):  # the dynamo exporter may write external data beside it
                extra.unlink()
            name_shapes(model, config, subset)
            if fp16:
                from onnxruntime.transformers.float16 import convert_float_to_float16
                from onnxruntime.transformers.onnx_model import OnnxModel

                model = convert_float_to_float16(model, keep_io_types=True)
                OnnxModel(model).topological_sort()  # the converter appends its input casts at the end
            store.externalise(model, onnx)
            onnx.save_model(model, str(stage / name))
            del model
            files.append((subset, name))
    finally:
        store.close()
    say(f"  {ONNX_DATA_FILE}: {store.size / 2**20:.1f} MiB ({store.count} tensors, {store.deduplicated} shared "
        "between graphs)")
    return files


def _check_graphs(stage: Path, files: list[tuple[tuple[str, ...], str]], onnx: Any) -> None:
    """Step 2: onnx's checker on every written graph."""
    for _, name in files:
        try:
            onnx.checker.check_model(str(stage / name))
        except Exception as exc:  # noqa: BLE001 - any checker failure is an exporter failure
            raise BackendError(f"the exported {name} is not a valid ONNX model: {exc}") from None


def _verify(network: MultiHeadTerraMind, config: ModelConfig, stage: Path, files: list[tuple[tuple[str, ...], str]],
            *, tolerance: float, fp16: bool, exporter: str, seed: int, say: Callable[[str], None], torch: Any,
            ort: Any) -> tuple[float, float]:
    """Step 3: ONNX Runtime against torch (IEEE float32) on random standardised inputs, batch of 2;
    return (max abs probability difference, min argmax agreement) or raise BackendError."""
    heads = list(config.head_names)
    rng = np.random.default_rng(seed)
    worst, agreement = 0.0, 1.0
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3
    min_agree = FP16_MIN_AGREEMENT if fp16 else FP32_MIN_AGREEMENT
    for subset, name in files:
        x = {m: rng.standard_normal(input_shape(config, m, 2), dtype=np.float32) for m in subset}
        try:
            sess = ort.InferenceSession(str(stage / name), opts, providers=["CPUExecutionProvider"])
            got = dict(zip(heads, sess.run(heads, x)))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise BackendError(f"ONNX Runtime cannot run the exported {name}: {type(exc).__name__}: {exc}") from None
        del sess
        # the reference is IEEE float32, whatever the process's matmul precision or the precision setting
        with torch.inference_mode(), torch_numerics("fp32", "cpu"):
            ref = network({m: torch.from_numpy(a) for m, a in x.items()})
        graph_worst = 0.0
        for h in heads:
            diff, agree = _compare(name, h, got[h], ref[h].float().numpy(), tolerance=tolerance, fp16=fp16,
                                   min_agree=min_agree, exporter=exporter)
            agreement = min(agreement, agree)
            graph_worst = max(graph_worst, diff)
        worst = max(worst, graph_worst)
        say(f"  verified {name}: max abs diff {graph_worst:.2e}, argmax agreement {100 * agreement:.3f}%")
    return worst, agreement


def _compare(name: str, head: str, got: np.ndarray, want: np.ndarray, *, tolerance: float, fp16: bool,
             min_agree: float, exporter: str) -> tuple[float, float]:
    """(max abs probability difference, argmax agreement) of one head of one graph; BackendError
    when either misses its bound."""
    if got.shape != want.shape:
        raise BackendError(f"export verification failed: {name} gives {head} of shape {got.shape}, "
                           f"torch {want.shape}")
    diff = float(np.abs(softmax(got, axis=1) - softmax(want, axis=1)).max())
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    if agree < min_agree:
        raise BackendError(
            f"export verification failed: the {'float16' if fp16 else 'float32'} {name} agrees with torch's "
            f"argmax {head} class on only {100 * agree:.2f}% of the pixels (needs {100 * min_agree:g}%)"
            + ("; export in float32" if fp16 else "")
        )
    if not np.isfinite(diff) or diff > tolerance:
        raise BackendError(
            f"export verification failed: ONNX Runtime's {head} probabilities from {name} differ from torch's "
            f"(IEEE float32) by up to {diff:.3g} (tolerance {tolerance:g}); nothing was written. Try the "
            f"other exporter (exporter='{'dynamo' if exporter == 'torchscript' else 'torchscript'}') or "
            "another opset"
        )
    return diff, agree


def _trace(network: MultiHeadTerraMind, config: ModelConfig, subset: tuple[str, ...], heads: list[str], path: Path,
           *, opset: int, exporter: str, torch: Any) -> None:
    """One graph for ``subset`` with torch.onnx (weights inline)."""

    class Graph(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.network = network
            self.merged = torch.nn.ModuleDict(network.merged_encoders())  # merged LoRA weights: initializers

        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            out = self.network(dict(zip(subset, inputs)))
            return tuple(out[h] for h in heads)

    graph = Graph().eval()
    example = tuple(torch.zeros(input_shape(config, m, 2)) for m in subset)
    chatter = io.StringIO()  # the dynamo exporter prints its progress; library code never prints
    try:
        with (warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(),
              contextlib.redirect_stdout(chatter)):
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                batch = torch.export.Dim("batch", min=1, max=4096)
                torch.onnx.export(graph, example, str(path), input_names=list(subset), output_names=heads,
                                  opset_version=opset, dynamo=True, external_data=False, verbose=False,
                                  dynamic_shapes=(tuple({0: batch} for _ in subset),))
            else:
                torch.onnx.export(graph, example, str(path), input_names=list(subset), output_names=heads,
                                  opset_version=opset, dynamo=False, do_constant_folding=True,
                                  dynamic_axes={n: {0: "batch"} for n in (*subset, *heads)})
    except Exception as exc:  # exporter failures come in many types
        raise BackendError(f"torch.onnx ({exporter}) could not export the {'+'.join(subset)} graph: "
                           f"{type(exc).__name__}: {str(exc)[:500]}") from exc
    finally:
        if chatter.getvalue():
            log.debug("torch.onnx: %s", chatter.getvalue().strip())


def _install(config_src: Path, weights_src: Path, dest: Path, stage: Path, config: ModelConfig,
             record: OnnxExport) -> None:
    """Step 4: move the staged export into ``dest`` and record it in ``dest``'s config.json (atomic steps)."""
    same = dest.resolve() == config_src.parent.resolve()
    if not same:
        with atomic_path(dest / WEIGHTS_FILE) as tmp:
            shutil.copyfile(weights_src, tmp)
    # first forget the old export, then move the new files in, then record them: an interrupted
    # install leaves an artifact without an export, never one whose record names other files
    write_config(dataclasses.replace(config, onnx=None), dest)
    keep = {g.file for g in record.graphs} | {record.data_file}
    for f in (f for f in onnx_files_in(dest) if f.name not in keep):
        f.unlink()
    for name in sorted(keep):
        os.replace(stage / name, dest / name)
    write_config(dataclasses.replace(config, onnx=record), dest)
