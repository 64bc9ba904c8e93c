"""atomic.py: whole files or none, the old file kept on any failure, no temporary file left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from terramind_nyc.atomic import atomic_path, atomic_write_bytes, atomic_write_text, destination, new_file_mode, publish
from terramind_nyc.errors import InvalidInputError

OLD = b"the good old file\n" * 100


class Boom(Exception):
    pass


@pytest.fixture
def old(tmp_path: Path) -> Path:
    p = tmp_path / "out.tif"
    p.write_bytes(OLD)
    return p


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("error", [Boom("mid-write"), KeyboardInterrupt(), SystemExit(3)],
                         ids=["exception", "keyboard-interrupt", "system-exit"])
def test_a_writer_failing_mid_write_keeps_the_old_file_and_leaves_no_temp(old: Path, error: BaseException) -> None:
    with pytest.raises(type(error)), atomic_path(old) as tmp:
        with tmp.open("wb") as fh:
            fh.write(b"half a new fi")
        raise error
    assert old.read_bytes() == OLD
    assert _leftovers(old.parent) == []


def test_success_replaces_whole_and_keeps_the_suffix_on_the_temp_name(old: Path) -> None:
    seen = []
    with atomic_path(old) as tmp:
        seen.append(tmp)
        assert tmp.parent == old.parent and tmp.name.startswith(".out.tif.") and tmp.name.endswith(".tmp.tif")
        assert tmp.exists() and old.read_bytes() == OLD  # nothing visible before the block ends
        tmp.write_bytes(b"new")
    assert old.read_bytes() == b"new" and not seen[0].exists()
    assert _leftovers(old.parent) == []


def test_the_new_file_has_the_mode_of_a_plain_new_file(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        assert new_file_mode() == 0o640
        p = atomic_write_text(tmp_path / "a" / "b" / "x.json", "{}")  # parents created
        assert stat.S_IMODE(p.stat().st_mode) == 0o640
        plain = tmp_path / "plain"
        plain.write_text("")
        assert stat.S_IMODE(plain.stat().st_mode) == stat.S_IMODE(p.stat().st_mode)
    finally:
        os.umask(previous)


def test_write_helpers_return_the_destination(tmp_path: Path) -> None:
    assert atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01") == tmp_path / "b.bin"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert atomic_write_text(str(tmp_path / "t.txt"), "é") == tmp_path / "t.txt"
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "é"


def test_a_failed_publish_removes_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "x.txt"
    dest.write_text("old")

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk said no")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk said no"):
        atomic_write_text(dest, "new")
    assert dest.read_text() == "old" and _leftovers(tmp_path) == []


def test_publish_moves_a_private_temp_file_with_the_normal_mode(tmp_path: Path) -> None:
    tmp = tmp_path / ".x.tmp"
    tmp.write_text("data")
    tmp.chmod(0o600)
    publish(tmp, tmp_path / "x")
    assert not tmp.exists() and stat.S_IMODE((tmp_path / "x").stat().st_mode) == new_file_mode()


@pytest.mark.parametrize("make", [
    pytest.param(lambda d: d, id="a-directory"),
    pytest.param(lambda d: "", id="empty-string"),
    pytest.param(lambda d: (d / "file.txt").write_text("x") and d / "file.txt" / "inner.tif", id="under-a-file"),
    pytest.param(lambda d: 42, id="not-a-path"),
])
def test_bad_destinations_are_invalid_input(tmp_path: Path, make) -> None:
    dest = make(tmp_path)
    with pytest.raises(InvalidInputError):
        destination(dest)
    with pytest.raises(InvalidInputError):
        atomic_write_text(dest, "x")
    assert _leftovers(tmp_path) == []


def test_a_directory_destination_says_so(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is a directory"):
        atomic_write_text(tmp_path, "x")
