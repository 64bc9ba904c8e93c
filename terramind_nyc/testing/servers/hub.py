"""A loopback stand-in for the Hugging Face hub: the file-resolve endpoint only."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from .faults import Faults
from .loopback import FaultHandlerMixin, LoopbackServer

__all__ = ["HubServer"]


class _HubHandler(FaultHandlerMixin):
    """``/{owner}/{name}/resolve/{revision}/{filename}`` as the hub answers it: the commit in
    ``X-Repo-Commit``, the file's sha256 as ``ETag``, and ``X-Error-Code`` on a 404."""

    def _serve(self) -> None:
        hub: HubServer = self.server.owner  # type: ignore[assignment]
        parts = self.path.partition("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self._error(404, "EntryNotFound", "not a resolve URL")
            return
        repo_id, revision, filename = "/".join(parts[:2]), urllib.parse.unquote(parts[3]), "/".join(parts[4:])
        repo = hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"repository {repo_id} not found")
            return
        commit = hub.commits[repo_id]
        if revision not in ("main", commit):
            self._error(404, "RevisionNotFound", f"revision {revision} not found")
            return
        path = repo / filename
        if not path.is_file():
            self._error(404, "EntryNotFound", f"{filename} not found in {repo_id}")
            return
        data = path.read_bytes()
        rule = self._truncation
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.end_headers()
        if self.command != "HEAD":
            if rule is not None:
                self.close_connection = True
                data = data[: rule.nbytes]
            self.wfile.write(data)
            self._hold_if_stalled(rule)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class HubServer(LoopbackServer):
    """A loopback stand-in for the Hugging Face hub's file downloads.

    ``add_repo("owner/name", folder)`` publishes the files of ``folder`` (read at request
    time) under the revision ``main`` and one fixed commit (:attr:`commits`). Point
    huggingface_hub at :attr:`url` through ``HF_ENDPOINT`` (set before huggingface_hub is
    imported, or patch ``huggingface_hub.constants.ENDPOINT`` and
    ``HUGGINGFACE_CO_URL_TEMPLATE``). Faults and the request log work as on the other servers.
    """

    def __init__(self, *, faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.repos: dict[str, Path] = {}
        self.commits: dict[str, str] = {}

    def add_repo(self, repo_id: str, folder: str | os.PathLike[str]) -> str:
        """Publish ``folder`` as ``repo_id``; returns the repo's commit hash."""
        self.repos[repo_id] = Path(folder)
        self.commits[repo_id] = hashlib.sha1(repo_id.encode()).hexdigest()
        return self.commits[repo_id]

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        return _HubHandler
