"""Hugging Face repo ids through huggingface_hub's real client: a loopback hub, offline use, failing fast."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from terramind_nyc.errors import CheckpointNotFoundError
from terramind_nyc.model import hub
from terramind_nyc.model.files import CONFIG_FILE, WEIGHTS_FILE

pytest.importorskip("torch")  # loading needs the torch extra
from terramind_nyc.model.artifact import load_artifact


@pytest.fixture(autouse=True)
def _fresh_probes():
    hub.clear_probes()  # every test probes its own hub
    yield
    hub.clear_probes()


def test_unreachable_repo_id_says_how_to_point_at_a_local_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointNotFoundError, match="local artifact directory.*python -m training") as info:
        load_artifact("terramind-nyc/does-not-exist")
    # offline is reported as offline, not as "the repo has no config.json"
    assert "could not be reached" in str(info.value) and "has no" not in str(info.value)


def test_unreachable_hub_fails_fast_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A hub that gives no answer (here: a closed loopback port) costs one request, not
    huggingface_hub's ~25 s of retries per file, and the error says the hub could not be reached."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        f"http://127.0.0.1:{port}/{{repo_id}}/resolve/{{revision}}/{{filename}}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    from huggingface_hub.utils import _http

    waits: list[float] = []  # huggingface_hub's retry back-off sleeps through its module's `time`
    monkeypatch.setattr(_http.time, "sleep", waits.append)
    with pytest.raises(CheckpointNotFoundError, match="could not be reached") as info:
        load_artifact("terramind-nyc/not-cached")
    assert waits == [], "the hub's retries were not skipped"
    assert "has no" not in str(info.value)
    assert hub.hub_reachable("terramind-nyc/not-cached", CONFIG_FILE, None) is False  # remembered, not re-asked


def test_repo_id_downloads_from_a_loopback_hub_then_loads_offline(tiny_dir: Path, loopback_hub,
                                                                  monkeypatch: pytest.MonkeyPatch):
    """The real huggingface_hub download path (HEAD, GET, cache, revision pin) against a
    loopback hub; afterwards the same checkpoint loads with the hub gone."""
    from huggingface_hub import constants

    server = loopback_hub
    commit = server.add_repo("nyc/tiny", tiny_dir)
    art = load_artifact("nyc/tiny")
    local = load_artifact(str(tiny_dir))
    assert art.sha256 == local.sha256 and art.describe()["id"] == "nyc/tiny"
    gets = [r.path for r in server.requests if r.method == "GET"]
    assert any(p.endswith("/config.json") for p in gets) and any(p.endswith("/model.safetensors") for p in gets)
    assert load_artifact("nyc/tiny", revision=commit).sha256 == art.sha256
    with pytest.raises(CheckpointNotFoundError, match="no such revision"):
        load_artifact("nyc/tiny", revision="v9")
    with pytest.raises(CheckpointNotFoundError, match="no such repository"):
        load_artifact("nyc/absent")
    # the hub goes away: the cached files still load, without waiting for retries
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert load_artifact("nyc/tiny").sha256 == art.sha256


def test_a_hub_file_missing_from_the_repo_is_named(tiny_dir: Path, loopback_hub, tmp_path: Path):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_dir / CONFIG_FILE, partial / CONFIG_FILE)
    loopback_hub.add_repo("nyc/partial", partial)
    with pytest.raises(CheckpointNotFoundError, match=f"hub has no {WEIGHTS_FILE}"):
        load_artifact("nyc/partial")
    assert hub.download_file("nyc/partial", CONFIG_FILE, None).read_text() == (partial / CONFIG_FILE).read_text()
