"""Finding a checkpoint: the one local-or-hub rule, the files it needs, and what a missing one says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from terramind_nyc.diagnostics import checkpoint_status
from terramind_nyc.errors import CheckpointError, CheckpointNotFoundError, InvalidInputError
from terramind_nyc.model.files import CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE
from terramind_nyc.model.locate import (
    has_onnx_export,
    is_local_checkpoint,
    locate_artifact,
    locate_onnx,
    looks_like_repo_id,
    read_config,
    resolve_checkpoint,
)
from terramind_nyc.model.safetensors_io import weights_sha256
from terramind_nyc.settings import Settings
from terramind_nyc.testing.model import tiny_config

SHA = "ab" * 32


# ----------------------------------------------------------------------------------------
# the rule
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "repo_id"), [
    ("owner/name", True), ("ibm-esa-geospatial/TerraMind-1.0-base", True), ("a.b/c_d-1", True),
    ("name", False), ("a/b/c", False), ("../x", False), ("./owner/name", False), ("/abs/path", False),
    ("owner/..", False), ("~/x", False), ("owner/", False),
])
def test_one_rule_tells_a_repo_id_from_a_directory(source, repo_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # none of the sources exists here
    assert looks_like_repo_id(source) is repo_id
    assert is_local_checkpoint(source) is not repo_id
    # terramind-nyc info uses the same rule (it once disagreed on a bare "name": local here, hub there)
    if not repo_id:
        assert checkpoint_status(Settings(checkpoint=source))["kind"] == "local"


def test_an_existing_directory_shaped_like_a_repo_id_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)
    assert looks_like_repo_id("owner/name") and is_local_checkpoint("owner/name")
    where = resolve_checkpoint("owner/name", revision="v1")
    assert where.is_local and where.revision is None and where.directory == Path("owner/name")
    hub = resolve_checkpoint("someone/else", revision="v1")
    assert not hub.is_local and hub.revision == "v1" and hub.directory is None


def test_a_bad_source_is_refused():
    for bad in ("", "  ", None, 3):
        with pytest.raises(InvalidInputError, match="directory or a Hugging Face repo id"):
            resolve_checkpoint(bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# local directories
# ----------------------------------------------------------------------------------------
def test_missing_directory_raises_not_found(tmp_path: Path):
    with pytest.raises(CheckpointNotFoundError, match="no such directory.*TERRAMIND_NYC_CHECKPOINT"):
        locate_artifact(tmp_path / "nowhere")


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE])
def test_missing_file_raises_not_found_naming_it(copy_dir: Path, name: str):
    from terramind_nyc.model.artifact import load_artifact

    (copy_dir / name).unlink()
    with pytest.raises(CheckpointNotFoundError, match=f"has no {name}.*python -m training") as e:
        load_artifact(copy_dir)
    assert isinstance(e.value, FileNotFoundError)


def test_a_stray_model_onnx_is_not_an_export(copy_dir: Path):
    """A model.onnx the config does not record (another tool's, an older export) is ignored."""
    (copy_dir / ONNX_FILE).write_bytes(b"x")
    files = locate_artifact(copy_dir)
    assert files.directory == copy_dir and files.weights == copy_dir / WEIGHTS_FILE
    assert not has_onnx_export(copy_dir)


def test_reading_a_config_does_not_import_torch(tiny_dir: Path):
    code = (f"import sys; from terramind_nyc.model.locate import read_config; c = read_config({str(tiny_dir)!r}); "
            "print(c.encoder, 'torch' in sys.modules, 'terratorch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["terramind_v1_tiny", "False", "False"]


def test_read_config_reads_only_the_config(tmp_path: Path):
    (tmp_path / CONFIG_FILE).write_text(tiny_config().to_json())  # no weights at all
    assert read_config(tmp_path) == tiny_config() == read_config(tmp_path / CONFIG_FILE)


# ----------------------------------------------------------------------------------------
# Hugging Face repo ids (downloads faked; the real hub client: test_hub.py)
# ----------------------------------------------------------------------------------------
def test_repo_id_is_downloaded_through_the_hub_cache(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub

    from terramind_nyc.model.artifact import load_artifact

    calls = []

    def fake_download(repo_id, filename, *, revision=None, **kw):
        calls.append((repo_id, filename, revision))
        if not (tiny_dir / filename).exists():
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(f"{filename} not in repo")
        return str(tiny_dir / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    art = load_artifact("someone/tiny-model", revision="v1.0")
    assert ("someone/tiny-model", CONFIG_FILE, "v1.0") in calls and ("someone/tiny-model", WEIGHTS_FILE, "v1.0") in calls
    assert art.describe()["id"] == "someone/tiny-model" and art.describe()["revision"] == "v1.0"
    assert not has_onnx_export("someone/tiny-model")
    calls.clear()
    assert read_config("someone/tiny-model").encoder == "terramind_v1_tiny"
    assert [c[1] for c in calls] == [CONFIG_FILE]  # the config alone


def test_locate_onnx_fetches_only_the_config_and_the_onnx_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                onnx_record: dict):
    import huggingface_hub

    repo = tmp_path / "repo"
    repo.mkdir()
    d = tiny_config().to_dict()
    d["onnx"] = onnx_record
    for name, content in (("model.onnx", b"a"), ("model.S2L2A.onnx", b"b"), ("model.onnx.data", b"c")):
        (repo / name).write_bytes(content)
    for i, name in enumerate(("model.onnx", "model.S2L2A.onnx")):
        d["onnx"]["graphs"][i]["sha256"] = weights_sha256(repo / name)
    d["onnx"]["data_sha256"] = weights_sha256(repo / "model.onnx.data")
    (repo / CONFIG_FILE).write_text(json.dumps(d))
    calls = []

    def fake_download(repo_id, filename, *, revision=None, **kw):
        calls.append(filename)
        return str(repo / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    files = locate_onnx("someone/tiny-onnx", revision="v2")
    assert sorted(calls) == sorted([CONFIG_FILE, "model.onnx", "model.S2L2A.onnx", "model.onnx.data"])
    assert files.graphs[("S2L2A",)] == repo / "model.S2L2A.onnx" and files.revision == "v2"
    assert files.describe()["sha256"] == SHA and has_onnx_export("someone/tiny-onnx")
    (repo / "model.onnx.data").write_bytes(b"changed")
    with pytest.raises(CheckpointError, match="model.onnx.data is corrupt or truncated"):
        locate_onnx("someone/tiny-onnx")
