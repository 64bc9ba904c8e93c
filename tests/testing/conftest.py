"""Fixtures of the harness tests: a small folder of known bytes and a CogServer over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from terramind_nyc.testing import CogServer


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "blob.tif").write_bytes(bytes(range(256)) * 64)  # 16 KiB, known content
    (tmp_path / "b.tif").write_bytes(b"x" * 1000)
    return tmp_path


@pytest.fixture
def server(files: Path) -> Iterator[CogServer]:
    with CogServer(files) as s:
        yield s
