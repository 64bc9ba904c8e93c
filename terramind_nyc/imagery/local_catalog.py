"""A local catalog: a STAC ItemCollection file or a folder of item JSON files, searched in-process.

Relative asset hrefs resolve against the folder of the file that holds the item; the files are
read again when one of them changes (size or modification time).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..deadline import Deadline
from ..errors import CatalogError
from .items import absolute_hrefs, client_filter

__all__ = ["LocalBackend"]


class LocalBackend:
    """Raw item dicts from an ItemCollection file or a folder of item JSON files."""

    provider = "local"

    def __init__(self, path: str) -> None:
        p = Path(path).expanduser()
        self.source = f"local ({p.name or path})"
        self.path = p
        self._lock = threading.Lock()
        self._loaded: tuple[Any, list[dict[str, Any]]] | None = None

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if self.path.is_dir():
            return sorted(q for q in self.path.rglob("*.json") if q.is_file())
        raise CatalogError(
            f"local catalog {self.path.name!r} does not exist; set `catalog_path` to an ItemCollection file "
            "or a folder of item JSON files"
        )

    def _items(self) -> list[dict[str, Any]]:
        files = self._files()
        sig = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        with self._lock:
            if self._loaded is not None and self._loaded[0] == sig:
                return self._loaded[1]
            items: list[dict[str, Any]] = []
            for f in files:
                try:
                    doc = json.loads(f.read_text())
                except (OSError, ValueError) as exc:
                    raise CatalogError(f"local catalog file {f.name!r} is not readable JSON ({exc}); fix or remove it") \
                        from None
                feats = doc.get("features") if isinstance(doc, dict) and "features" in doc else [doc]
                for d in feats or []:
                    if isinstance(d, dict) and d.get("type") == "Feature":
                        items.append(absolute_hrefs(d, f.parent))
            if not items:
                raise CatalogError(f"local catalog {self.path.name!r} holds no STAC items")
            self._loaded = (sig, items)
            return items

    def search_dicts(self, collection: str, bbox: Sequence[float], start: datetime | None, end: datetime | None,
                     cloud_lt: float | None, limit: int, deadline: Deadline) -> list[dict[str, Any]]:
        deadline.check(f"searching {collection}", self.source)
        return client_filter(self._items(), collection, bbox, start, end, cloud_lt)[:limit]

    def __repr__(self) -> str:
        return f"<LocalBackend {self.source}>"
