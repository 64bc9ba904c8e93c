"""Every file the library writes goes through here: whole or not at all, never half a file.

    with atomic_path("out/map.tif") as tmp:      # for writers that open by name (rasterio, savefig)
        write_something(tmp)
    atomic_write_text("out/polygons.geojson", text)
    atomic_write_bytes("cache/chip.npz", data)

The new content goes to a temporary file in the destination's own folder (so the final
:func:`os.replace` stays on one file system and is atomic), named ``.<name>.<random>.tmp<suffix>``:
hidden, recognisable, and ending in the destination's suffix, since GDAL and matplotlib pick a
format from it. On success the temporary file is flushed to disk, given the mode a plain
``open(dest, "w")`` would give a new file (``0o666`` less the umask; :mod:`tempfile` creates
``0600``) and moved over ``dest``. On any failure, including ``KeyboardInterrupt``, it is
removed and ``dest`` is left as it was: old readers see the old file, new readers the whole new
one. The parent folder is created when missing. A destination that is a folder, or whose
parent is a file, is an :class:`~terramind_nyc.errors.InvalidInputError`; other ``OSError``\\s
(permission, disk full) pass through unchanged.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import InvalidInputError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "destination", "new_file_mode", "publish"]

_umask_lock = threading.Lock()


def new_file_mode() -> int:
    """The permission bits a newly created file gets: ``0o666`` less the process umask.

    Read from ``/proc/self/status`` where it is there (Linux): setting the umask to read it back
    changes it, for a moment, for every thread of the process.
    """
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Umask:"):
                        return 0o666 & ~int(line.split()[1], 8)
        except (OSError, ValueError, IndexError):
            pass
    with _umask_lock:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def destination(dest: str | os.PathLike[str]) -> Path:
    """``dest`` as a Path to write; InvalidInputError when it is no path, a folder, or under a file."""
    if not isinstance(dest, (str, os.PathLike)):
        raise InvalidInputError(f"an output path must be a str or os.PathLike, got {type(dest).__name__}")
    path = Path(os.fspath(dest)).expanduser()
    if not os.fspath(dest) or path.is_dir():
        raise InvalidInputError(f"{str(path)!r} is a directory: give the name of the file to write in it")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InvalidInputError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder")
            break
    return path


def publish(tmp: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Give a finished temporary file the mode of a new file, then move it over ``dest`` atomically.

    ``tmp`` must be in ``dest``'s folder (same file system). For callers that make their own
    temporary file; :func:`atomic_path` does all of this itself.
    """
    os.chmod(tmp, new_file_mode())
    os.replace(tmp, dest)


def _sync(path: Path) -> None:
    """Flush ``path``'s data to disk, so the rename never publishes a file the disk does not hold."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system without fsync (some network mounts): the rename still holds
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success it replaces ``dest`` atomically.

    The temporary file exists (empty) when yielded; the writer may overwrite or recreate it.
    It is removed when the block raises anything (``KeyboardInterrupt`` included), and
    ``dest`` is then untouched.
    """
    path = destination(dest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a parent turned out to be a file
        raise InvalidInputError(f"cannot write {str(path)!r}: a parent folder is a file") from None
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _sync(tmp)
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` as the whole of ``dest``, atomically (see :func:`atomic_path`); return ``dest``."""
    path = destination(dest)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_text(dest: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` as the whole of ``dest``, atomically (see :func:`atomic_path`); return ``dest``."""
    return atomic_write_bytes(dest, text.encode(encoding))
