"""Helpers for servers run as subprocesses: wait for HTTP, read a log's tail, stop a process."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .loopback import HarnessError

__all__ = ["stop_process", "tail", "wait_http"]


def wait_http(url: str, proc: subprocess.Popen[bytes] | None, timeout: float, what: str,
               log_path: Path | None = None) -> None:
    """Poll ``url`` until it answers 200, the process dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"{what} exited with status {proc.returncode} before answering:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise HarnessError(f"{what} did not answer {url} within {timeout:g} s ({last}):\n{tail(log_path)}")


def tail(path: Path | None, n: int = 4000) -> str:
    """The last ``n`` characters of a log file ('' when there is none)."""
    if path is None or not path.exists():
        return ""
    return path.read_text(errors="replace")[-n:]


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """Terminate ``proc`` (kill it after ``timeout`` s); nothing when it is None or has exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
