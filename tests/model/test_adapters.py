"""The published NYC adapters converted into an artifact (synthetic repos in the published layout).

The repos come from :func:`terramind_nyc.testing.adapters.write_synthetic_adapters` (tiny encoder,
small decoder, rank and alpha other than the importer's defaults so that the config can only have
them from ``adapter_config.json``), written once per module; tests that damage them work on copies.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fakes import raw
from safetensors.torch import load_file, save_file

from terramind_nyc.errors import CheckpointError, CheckpointNotFoundError, InvalidInputError
from terramind_nyc.model import convert_adapters as convert_module
from terramind_nyc.model import hub
from terramind_nyc.model.adapters import (
    ADAPTER_FILES,
    ADAPTERS_REPO,
    BASE_REPO,
    FLOOD_STATS,
    HEAD_FOLDERS,
)
from terramind_nyc.model.artifact import Artifact, load_artifact
from terramind_nyc.model.convert_adapters import import_adapters
from terramind_nyc.model.default_checkpoint import converted_dir, default_status
from terramind_nyc.model.files import CONFIG_FILE, WEIGHTS_FILE
from terramind_nyc.model.locate import read_config, resolve_checkpoint
from terramind_nyc.model.precision import torch_numerics
from terramind_nyc.model.runtime_torch import TorchRuntime
from terramind_nyc.model.safetensors_io import read_header
from terramind_nyc.settings import DEFAULT_CHECKPOINT
from terramind_nyc.testing.adapters import ADAPTER_TIMESTEPS, reference_model, write_synthetic_adapters

ENCODER = "terramind_v1_tiny"
DECODER = (32, 16, 8, 4)
RANK, ALPHA = 8, 24.0  # not the importer's defaults (16, 32): the config must read them from adapter_config.json
#: The base the synthetic adapter_config.json files name.
TINY_BASE_REPO = "ibm-esa-geospatial/TerraMind-1.0-tiny"
BASE_FILE = "TerraMind_v1_tiny.pt"
LULC_CLASSES = ("water", "developed", "forest", "herbaceous", "other")


@dataclass(frozen=True)
class Repos:
    """The two synthetic repo folders."""

    base: Path
    adapters: Path


@dataclass(frozen=True)
class HubImport:
    """An import with defaults through a loopback hub serving the synthetic repos."""

    out: Path
    commits: dict[str, str]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny networks: intra-op threads cost more than they give (on a loaded 2-core machine this
    module ran in 108 s with 2 threads, 51 s with 1). Restored for the tests after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _fresh_probes() -> Iterator[None]:
    hub.clear_probes()  # every test probes its own hub
    yield
    hub.clear_probes()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Repos:
    """The synthetic repos, never modified (damage :func:`repos`). Their weights keep activations
    alive (merging the LoRA factors or not changes the logits by > 1e-2, checked below), so a
    1e-5 agreement means something."""
    base, adapters = write_synthetic_adapters(tmp_path_factory.mktemp("adapters") / "repos", encoder=ENCODER,
                                              decoder_channels=DECODER, rank=RANK, alpha=ALPHA, seed=3, lora_std=0.05)
    return Repos(base, adapters)


@pytest.fixture
def repos(synthetic: Repos, tmp_path: Path) -> Repos:
    """A copy of the synthetic repos for one test to damage."""
    base, adapters = tmp_path / "repos" / "base", tmp_path / "repos" / "adapters"
    shutil.copytree(synthetic.base, base)
    shutil.copytree(synthetic.adapters, adapters)
    return Repos(base, adapters)


def _point_hub_at(mp: pytest.MonkeyPatch, url: str, cache: Path) -> None:
    from huggingface_hub import constants

    mp.setattr(constants, "ENDPOINT", url)
    mp.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    mp.setattr(constants, "HF_HUB_CACHE", str(cache))
    mp.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def hub_import(synthetic: Repos, tmp_path_factory: pytest.TempPathFactory) -> HubImport:
    """``import_adapters(out)`` with defaults, the synthetic repos served as the published ones."""
    from terramind_nyc.testing import HubServer

    root = tmp_path_factory.mktemp("hub-import")
    with HubServer() as server, pytest.MonkeyPatch.context() as mp:
        _point_hub_at(mp, server.url, root / "hub-cache")
        commits = {ADAPTERS_REPO: server.add_repo(ADAPTERS_REPO, synthetic.adapters),
                   TINY_BASE_REPO: server.add_repo(TINY_BASE_REPO, synthetic.base)}
        hub.clear_probes()
        try:
            out = import_adapters(root / "artifact")
        finally:
            hub.clear_probes()
    return HubImport(out, commits)


@pytest.fixture(scope="module")
def artifact(hub_import: HubImport) -> Artifact:
    return load_artifact(hub_import.out)


@pytest.fixture
def served_hub(loopback_hub: Any, synthetic: Repos) -> Any:
    """The loopback hub (empty cache) serving the synthetic repos as the published ones."""
    loopback_hub.add_repo(ADAPTERS_REPO, synthetic.adapters)
    loopback_hub.add_repo(TINY_BASE_REPO, synthetic.base)
    return loopback_hub


def convert(repos: Repos, out: Path, **kwargs: Any) -> Path:
    return import_adapters(out, adapters=str(repos.adapters), base=str(repos.base), encoder=ENCODER, **kwargs)


def assert_nothing_written(out: Path) -> None:
    assert not out.exists(), f"{out} was written although the import failed"
    assert not list(out.parent.glob(f".{out.name}*")), "a staging folder was left behind"


def inputs(batch: int = 2, size: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, c, size, size, generator=gen) for m, c in (("S2L2A", 12), ("S1RTC", 2), ("DEM", 1))}


def repeated(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """T identical time steps, ``(B, C, T, H, W)``."""
    return {m: v[:, :, None].repeat(1, 1, ADAPTER_TIMESTEPS, 1, 1) for m, v in x.items()}


def reference_logits(repos: Repos, head: str, x: dict[str, torch.Tensor], *, lora: bool = True) -> torch.Tensor:
    """The head's logits from its model built and loaded the way the adapters' authors do
    (terratorch factory, base weights + ``(alpha / r) * B @ A``, the decoder file as it is, strict)."""
    folder = repos.adapters / HEAD_FOLDERS[head]
    cfg = json.loads((folder / "adapter_config.json").read_text())
    model = reference_model(ENCODER, cfg["num_classes"], DECODER)
    base = torch.load(repos.base / BASE_FILE, map_location="cpu", weights_only=True)
    factors = load_file(str(folder / "adapter_model.safetensors"))
    scale = cfg["lora_alpha"] / cfg["r"]
    prefix = "encoder.encoder."  # factory model -> TemporalWrapper -> TerraMindViT
    state = {}
    for k in model.state_dict():
        if k.startswith(prefix):
            w = base[k[len(prefix):]].clone()
            if lora and k.endswith(("attn.qkv.weight", "attn.proj.weight")):
                pre = k[: -len(".weight")]
                w = w + scale * factors[f"{pre}.lora_B.default.weight"] @ factors[f"{pre}.lora_A.default.weight"]
            state[k] = w
    state.update(load_file(str(folder / "decoder_head.safetensors")))
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        return model(repeated(x)).output


def rewrite_safetensors(path: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def rewrite_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------
# equivalence with the adapters' own model
# ----------------------------------------------------------------------------------------
def test_hub_import_gives_the_logits_of_the_authors_models(artifact: Artifact, synthetic: Repos):
    x = inputs()
    with torch_numerics("fp32", "cpu"):
        with torch.inference_mode():
            ours = artifact.network(x)
        for head in HEAD_FOLDERS:
            ref = reference_logits(synthetic, head, x)
            assert ours[head].shape == ref.shape == (2, len(artifact.config.head(head).classes), 64, 64)
            assert float(ref.abs().max()) > 0.1, "logits too small for a 1e-5 tolerance to mean anything"
            torch.testing.assert_close(ours[head], ref, atol=1e-5, rtol=0)
            # the comparison sees the encoder and the LoRA merge: without the merge the logits are far off
            assert float(ref.std(dim=(-2, -1)).mean()) > 1e-2, "logits nearly constant over the image"
            unmerged = reference_logits(synthetic, head, x, lora=False)
            assert float((unmerged - ours[head]).abs().max()) > 1e-2


def test_one_encoder_pass_repeated_equals_temporal_wrapper_on_identical_steps(artifact: Artifact):
    from terramind_nyc.model.compat import terratorch_imports

    with terratorch_imports():
        from terratorch.models.utils import TemporalWrapper

    net = artifact.network
    x = inputs(batch=1, seed=1)
    with torch_numerics("fp32", "cpu"), torch.inference_mode():
        for variant in net.config.encoder_names:
            wrapper = TemporalWrapper(net.merged_encoders()[variant], pooling="concat", n_timestamps=ADAPTER_TIMESTEPS)
            want = wrapper(repeated(x))
            # one pass; the neck's weights are folded over the copies, so the features are one copy
            got = [torch.cat([f] * ADAPTER_TIMESTEPS, dim=-1) for f in net.encode(variant, x)]
            assert len(got) == len(want) == net.config.encoder_depth
            for g, w in zip(got, want, strict=True):
                assert g.shape == w.shape
                torch.testing.assert_close(g, w, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------
# the converted config, provenance and runtime
# ----------------------------------------------------------------------------------------
def test_converted_config_describes_the_adapters_and_their_preprocessing(artifact: Artifact):
    c = artifact.config
    assert (c.schema_version, c.kind, c.encoder, c.decoder_channels) == (2, "per-head-encoders", ENCODER, DECODER)
    assert c.encoder_names == ("lulc", "buildings")
    for e in c.encoders:
        assert e.lora is not None
        assert (e.lora.rank, e.lora.alpha, e.lora.targets) == (RANK, ALPHA, ("attn.qkv", "attn.proj"))
    assert (c.timesteps, c.temporal_pooling, c.temporal_repeat, c.tile_size) == (4, "concat", True, 256)
    for m in c.modalities:
        assert (m.mean, m.std) == FLOOD_STATS[m.name]
    assert c.modality("S1RTC").transform == "db_to_linear"
    assert c.modality("S2L2A").transform == c.modality("DEM").transform == ""
    assert c.head_names == ("lulc", "buildings")
    assert c.head("lulc").classes == LULC_CLASSES and c.head("lulc").encoder == "lulc"
    assert c.head("buildings").threshold == 0.5 and c.head("buildings").encoder == "buildings"
    assert c.head("lulc").labels[2] == "Trees / forest" and c.head("buildings").labels[1] == "Building footprint"
    assert c.training["preprocessing_choice"] == {"stats": "flood", "s1": "linear", "chip": 256}


def test_converted_config_records_repos_commits_and_file_hashes(hub_import: HubImport, synthetic: Repos):
    source = read_config(hub_import.out).training["source"]
    assert source["adapters"]["repo"] == ADAPTERS_REPO
    assert source["adapters"]["commit"] == hub_import.commits[ADAPTERS_REPO]
    assert source["adapters"]["sha256"] == {f"{folder}/{name}": sha256(synthetic.adapters / folder / name)
                                            for folder in HEAD_FOLDERS.values() for name in ADAPTER_FILES}
    assert source["base"] == {"repo": TINY_BASE_REPO, "revision": None, "commit": hub_import.commits[TINY_BASE_REPO],
                              "file": BASE_FILE, "sha256": sha256(synthetic.base / BASE_FILE)}
    unused = read_config(hub_import.out).training["unused"]
    assert unused == {"base_tensors": 2, "aux_heads_tensors": {"lulc_nyc": 0, "buildings_nyc": 0}}


def test_provenance_and_runtime_report_two_encoder_passes(artifact: Artifact):
    described = artifact.describe()
    assert (described["kind"], described["encoder_passes"]) == ("per-head-encoders", 2)
    runtime = TorchRuntime.from_artifact(artifact)
    p = runtime.predict(raw(40, 48, seed=2)).probabilities
    assert p["lulc"].shape == (5, 40, 48) and p["buildings"].shape == (2, 40, 48)
    for v in p.values():
        assert np.isfinite(v).all()
        np.testing.assert_allclose(v.sum(axis=0), 1.0, atol=1e-5)
    checkpoint = runtime.model_info().checkpoint
    assert (checkpoint["kind"], checkpoint["encoder_passes"]) == ("per-head-encoders", 2)


# ----------------------------------------------------------------------------------------
# bad input: the named error, nothing at out
# ----------------------------------------------------------------------------------------
def test_missing_adapter_file_is_checkpoint_not_found(repos: Repos, tmp_path: Path):
    (repos.adapters / "buildings_nyc" / "decoder_head.safetensors").unlink()
    out = tmp_path / "art"
    with pytest.raises(CheckpointNotFoundError, match=r"buildings_nyc/decoder_head\.safetensors is missing"):
        convert(repos, out)
    assert_nothing_written(out)


def test_rank_disagreeing_with_the_tensors_is_refused(repos: Repos, tmp_path: Path):
    rewrite_json(repos.adapters / "lulc_nyc" / "adapter_config.json", r=4)
    out = tmp_path / "art"
    with pytest.raises(CheckpointError, match=rf"lulc_nyc/adapter_model\.safetensors.*rank {RANK} disagrees.*r = 4"):
        convert(repos, out)
    assert_nothing_written(out)


def test_target_modules_disagreeing_with_the_tensors_are_refused(repos: Repos, tmp_path: Path):
    rewrite_json(repos.adapters / "buildings_nyc" / "adapter_config.json", target_modules=["qkv"])
    out = tmp_path / "art"
    with pytest.raises(CheckpointError, match=r"buildings_nyc/adapter_model\.safetensors: 24 unknown.*attn\.proj"
                                              r".*target_modules \['attn\.qkv'\]"):
        convert(repos, out)
    assert_nothing_written(out)


EXTRA_LORA = "encoder.encoder.encoder.0.mlp.fc1.lora_A.default.weight"
GONE_LORA = "encoder.encoder.encoder.3.attn.qkv.lora_B.default.weight"


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.update({EXTRA_LORA: torch.zeros(RANK, 192)}), rf"1 unknown tensor\(s\): {EXTRA_LORA}"),
    (lambda t: t.pop(GONE_LORA), rf"1 missing: {GONE_LORA}"),
], ids=["unknown", "missing"])
def test_adapter_model_with_unknown_or_missing_tensor_is_refused(repos: Repos, tmp_path: Path, change, message):
    rewrite_safetensors(repos.adapters / "lulc_nyc" / "adapter_model.safetensors", change)
    out = tmp_path / "art"
    with pytest.raises(CheckpointError, match=r"lulc_nyc/adapter_model\.safetensors: " + message):
        convert(repos, out)
    assert_nothing_written(out)


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.update({"bogus.weight": torch.zeros(3)}), r"1 unknown tensor\(s\): bogus\.weight"),
    (lambda t: t.update({"decoder.extra.weight": torch.zeros(3)}), r"decoder\.extra\.weight has no place in the network"),
    (lambda t: t.pop("head.head.2.weight"), r"1 tensor\(s\) missing: buildings_nyc/decoder_head\.safetensors: head\.head\.2\.weight"),
], ids=["unknown-prefix", "unknown-decoder-tensor", "missing"])
def test_decoder_head_with_unknown_or_missing_tensor_is_refused(repos: Repos, tmp_path: Path, change, message):
    rewrite_safetensors(repos.adapters / "buildings_nyc" / "decoder_head.safetensors", change)
    out = tmp_path / "art"
    with pytest.raises(CheckpointError, match=message):
        convert(repos, out)
    assert_nothing_written(out)


def test_base_checkpoint_of_another_size_is_refused(repos: Repos, tmp_path: Path):
    from terramind_nyc.model.compat import terratorch_imports

    with terratorch_imports():
        from terratorch.registry import BACKBONE_REGISTRY

    small = BACKBONE_REGISTRY.build("terramind_v1_small", modalities=["S2L2A", "S1RTC", "DEM"], pretrained=False)
    torch.save(small.state_dict(), repos.base / BASE_FILE)
    out = tmp_path / "art"
    with pytest.raises(CheckpointError, match=rf"{BASE_FILE}: \d+ encoder tensor\(s\) of another shape .*384.*is it the {ENCODER} checkpoint"):
        convert(repos, out)
    assert_nothing_written(out)


class _NotATensor:
    """Pickled into a base file: torch.load(weights_only=True) must refuse to rebuild it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.marker),))  # would create the marker file if unpickled


def test_base_pickle_holding_more_than_tensors_is_not_loaded(repos: Repos, tmp_path: Path):
    marker = tmp_path / "unpickled"
    torch.save({"w": torch.zeros(2), "obj": _NotATensor(str(marker))}, repos.base / BASE_FILE)
    out = tmp_path / "art"
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        convert(repos, out)
    assert not marker.exists(), "the pickle's payload ran"
    assert_nothing_written(out)


@pytest.mark.parametrize("fault", ["http-500", "truncated"])
def test_hub_failure_mid_conversion_leaves_nothing_and_a_later_call_succeeds(served_hub: Any, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch, fault: str):
    from huggingface_hub.utils import _http

    # huggingface_hub retries 5xx answers and cut transfers (~25 s of back-off); skip the waits
    monkeypatch.setattr(_http.time, "sleep", lambda seconds: None)
    pattern = "*/buildings_nyc/decoder_head.safetensors"  # the last adapter file: the others are in by then
    if fault == "http-500":
        served_hub.faults.fail(500, pattern, times=None)
    else:
        served_hub.faults.truncate(pattern, nbytes=1024)
    out = tmp_path / "art"
    with pytest.raises(CheckpointNotFoundError, match=r"buildings_nyc/decoder_head\.safetensors"):
        import_adapters(out)
    assert_nothing_written(out)
    hit = [r for r in served_hub.requests if r.fault]
    assert hit and all(r.path.endswith("buildings_nyc/decoder_head.safetensors") for r in hit)
    assert any(r.path.endswith("lulc_nyc/decoder_head.safetensors") and r.status == 200 for r in served_hub.requests)

    served_hub.faults.clear()
    hub.clear_probes()
    assert import_adapters(out) == out
    assert read_header(out / WEIGHTS_FILE).tensors
    assert read_config(out).kind == "per-head-encoders"


def test_existing_artifact_is_kept_without_overwrite(hub_import: HubImport, tmp_path: Path):
    out = tmp_path / "art"
    shutil.copytree(hub_import.out, out)
    before = {p.name: sha256(p) for p in out.iterdir()}
    with pytest.raises(InvalidInputError, match="already holds an artifact.*overwrite"):
        import_adapters(out, adapters=str(tmp_path / "never-read"))
    assert {p.name: sha256(p) for p in out.iterdir()} == before


# ----------------------------------------------------------------------------------------
# the default checkpoint
# ----------------------------------------------------------------------------------------
def test_default_checkpoint_is_converted_once_into_the_cache(served_hub: Any):
    from huggingface_hub import constants

    assert default_status()["cached"] is False
    where = resolve_checkpoint(DEFAULT_CHECKPOINT)
    assert where.directory == converted_dir()
    assert where.directory.is_relative_to(Path(constants.HF_HUB_CACHE).parent)  # the test's tmp, beside its cache
    assert read_config(where.directory).kind == "per-head-encoders"
    assert (where.directory / WEIGHTS_FILE).is_file()
    assert served_hub.request_count > 0
    status = default_status()
    assert status["cached"] is True and status["path"] == str(where.directory)

    served_hub.reset()
    again = resolve_checkpoint(DEFAULT_CHECKPOINT)
    assert again.directory == where.directory
    assert served_hub.requests == [], "the converted artifact was not reused"


def test_concurrent_default_resolutions_convert_once(served_hub: Any, monkeypatch: pytest.MonkeyPatch):
    calls: list[Path] = []
    real = convert_module.import_adapters

    def counted(out: Any, **kwargs: Any) -> Path:
        calls.append(Path(out))
        return real(out, **kwargs)

    monkeypatch.setattr(convert_module, "import_adapters", counted)
    start = threading.Barrier(2)

    def resolve() -> Path | None:
        start.wait(timeout=30)
        return resolve_checkpoint(DEFAULT_CHECKPOINT).directory

    with ThreadPoolExecutor(2) as pool:
        results = [f.result(timeout=120) for f in [pool.submit(resolve) for _ in range(2)]]
    assert results[0] == results[1] == converted_dir()
    assert len(calls) == 1, f"converted {len(calls)} times"
    assert read_config(results[0]).encoder_names == ("lulc", "buildings")
    assert read_header(results[0] / WEIGHTS_FILE).tensors


@pytest.mark.parametrize("why", ["offline", "no-such-repo"])
def test_default_checkpoint_unavailable_says_what_to_download(loopback_hub: Any, monkeypatch: pytest.MonkeyPatch,
                                                              why: str):
    if why == "offline":
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint(DEFAULT_CHECKPOINT)
    message = str(info.value)
    for needed in ("import-adapters", "TerraMind_v1_base.pt", ADAPTERS_REPO, BASE_REPO, "TERRAMIND_NYC_CHECKPOINT"):
        assert needed in message
    if why == "offline":
        assert "could not be reached" in message
        assert loopback_hub.requests == [], "offline, yet the hub was asked"
    else:
        assert "no such repository" in message
    assert not (converted_dir() / CONFIG_FILE).exists()
    assert default_status()["cached"] is False


# ----------------------------------------------------------------------------------------
# the CLI
# ----------------------------------------------------------------------------------------
def test_cli_import_adapters_from_local_folders_prints_json(synthetic: Repos, tmp_path: Path):
    from click.testing import CliRunner

    from terramind_nyc.cli import cli

    out = tmp_path / "art"
    result = CliRunner().invoke(cli, ["import-adapters", "--out", str(out), "--adapters", str(synthetic.adapters),
                                      "--base", str(synthetic.base), "--encoder", ENCODER, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"] == str(out)
    assert (data["kind"], data["heads"]) == ("per-head-encoders", ["lulc", "buildings"])
    assert data["source"]["adapters"]["repo"] == str(synthetic.adapters)
    assert data["source"]["adapters"]["commit"] is None  # a local folder has no commit
    assert data["source"]["base"]["sha256"] == sha256(synthetic.base / BASE_FILE)
    assert read_config(out).encoder == ENCODER


def test_cli_import_adapters_error_is_one_line_and_exit_1(tmp_path: Path):
    from click.testing import CliRunner

    from terramind_nyc.cli import cli

    (tmp_path / "empty").mkdir()
    out = tmp_path / "art"
    result = CliRunner().invoke(cli, ["import-adapters", "--out", str(out), "--adapters", str(tmp_path / "empty"),
                                      "--base", str(tmp_path / "empty"), "--encoder", ENCODER])
    assert result.exit_code == 1
    assert "error: CheckpointNotFoundError" in result.output and "adapter_config.json is missing" in result.output
    assert_nothing_written(out)
