"""Asset URLs: signing, and keeping tokens out of messages, logs and provenance."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from ..errors import InvalidInputError

__all__ = ["Signer", "make_signer", "planetary_computer_signer", "redact", "service_of", "strip_query"]

#: Asset URL signer: takes an href, returns the href to read (possibly with a token).
Signer = Callable[[str], str]

_QUERY_RE = re.compile(r"(?i)\b((?:https?|s3|gs|az)://[^\s'\"?#]*)[?#][^\s'\"]*")


def strip_query(href: str) -> str:
    """``href`` without its query string and fragment (where signing tokens live)."""
    parts = urlsplit(href)
    if not parts.scheme or parts.scheme == "file" or len(parts.scheme) == 1:
        return href.split("?", 1)[0]
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def redact(text: str) -> str:
    """``text`` with the query string of every URL in it removed (tokens never leak into messages)."""
    return _QUERY_RE.sub(r"\1", str(text))


def service_of(href: str) -> str:
    """A short, token-free name of where ``href`` lives: ``host[:port]`` or ``local file``."""
    parts = urlsplit(href)
    if parts.scheme in ("http", "https") and parts.netloc:
        return parts.netloc.rsplit("@", 1)[-1]
    if parts.scheme and len(parts.scheme) > 1 and parts.scheme != "file":
        return f"{parts.scheme}://{parts.netloc}"
    return "local file"


def is_remote(href: str) -> bool:
    """Whether ``href`` has a URL scheme (``http://``, ``s3://``, ...), not a path or a drive letter."""
    scheme = urlsplit(href).scheme
    return bool(scheme) and len(scheme) > 1


def _is_azure_blob(href: str) -> bool:
    host = urlsplit(href).hostname or ""
    return host.endswith(".blob.core.windows.net")


def planetary_computer_signer(href: str) -> str:
    """Sign an Azure blob href with ``planetary_computer.sign``; leave every other href alone.

    The package fetches (and caches) a SAS token per storage container; set
    ``PC_SDK_SUBSCRIPTION_KEY`` for higher rate limits.
    """
    if not _is_azure_blob(href):
        return href
    import planetary_computer

    return str(planetary_computer.sign(href))


def _identity(href: str) -> str:
    return href


def make_signer(spec: str | Signer | None) -> Signer:
    """The signer for ``Settings.signer`` (``"planetary-computer"`` or ``"none"``) or a callable."""
    if spec is None or spec == "none":
        return _identity
    if spec == "planetary-computer":
        return planetary_computer_signer
    if callable(spec):
        return spec
    raise InvalidInputError(f"unknown signer {spec!r}; use 'planetary-computer', 'none' or a callable href -> href")
