"""Asset URLs: signing, and keeping tokens out of messages, logs and provenance."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from ..errors import InvalidInputError

__all__ = ["Signer", "make_signer", "planetary_computer_signer", "redact", "service_of", "strip_query"]

#: Asset URL signer: takes an href, returns the href to read (possibly with a token).
Signer = Callable[[str], str]

#: Characters that end a URL or a query string inside free text (quotes, brackets, whitespace).
_END = r"\s'\"<>()\[\]{}`"
#: A URL with a scheme (``/vsicurl/https://...`` included): its query string and fragment go.
#: The rest of a query string: up to the end of the URL, less trailing punctuation (``...?sig=x: 403``).
_REST = rf"[^{_END}]*?(?=[:.,;]*(?:[{_END}]|$))"
_QUERY_RE = re.compile(rf"(?i)\b((?:https?|s3|gs|az|abfss?|wasbs?)://[^{_END}?#]*)[?#]{_REST}")
#: A bare query string (``GET /x.tif?st=...&sig=... HTTP/1.1``, ``?token=...``): it goes too.
_BARE_QUERY_RE = re.compile(rf"\?[\w.~%+-]+={_REST}")
#: Query parameters that carry a secret, wherever they stand (``&sig=...`` of a token cut from
#: its URL, a SAS token on its own): their value becomes ``<redacted>``.
_SECRET_PARAMS = ("sig", "signature", "token", "access_token", "id_token", "refresh_token", "subscription-key",
                  "subscription_key", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
                  "x-goog-signature", "x-goog-credential", "api_key", "api-key", "apikey", "client_secret",
                  "password")
_PARAM_RE = re.compile(rf"(?i)((?<![\w-])(?:{'|'.join(map(re.escape, _SECRET_PARAMS))})=)[^&;{_END},]+")
#: ``code=`` only inside a query string (an OAuth code): ``exit code=1`` is no secret.
_CODE_RE = re.compile(r"(?i)((?<=[?&])code=)[^&\s'\"<>()\[\]{}`,]+")
#: Headers and mapping entries that carry a secret (``Ocp-Apim-Subscription-Key: ...``,
#: ``'Authorization': 'Bearer ...'``, ``"token": "st=...&sig=..."``): their value goes.
_SECRET_KEYS = ("ocp-apim-subscription-key", "subscription-key", "authorization", "proxy-authorization", "cookie",
                "set-cookie", "x-api-key", "x-amz-security-token", "x-ms-copy-source-authorization", "token",
                "access_token", "sas_token", "sas-token", "password", "client_secret")
_HEADER_RE = re.compile(
    rf"(?i)(['\"]?\b(?:{'|'.join(map(re.escape, _SECRET_KEYS))})['\"]?\s*:\s*)"
    r"(?:(['\"])[^'\"\n]*\2|[^\s,;}\]]+(?:[ \t]+[^\s,;}\]'\"]+)?)")


def strip_query(href: str) -> str:
    """``href`` without its query string and fragment (where signing tokens live)."""
    parts = urlsplit(href)
    if not parts.scheme or parts.scheme == "file" or len(parts.scheme) == 1:
        return href.split("?", 1)[0]
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def redact(text: object) -> str:
    """``str(text)`` with every signing token removed, for messages, logs and provenance.

    Removes the query string and fragment of every URL (``https://``, ``s3://``, ``gs://``,
    ``az://``, also inside ``/vsicurl/...``) and every bare query string (``/x.tif?st=...&sig=...``
    in a request line); replaces with ``<redacted>`` the value of a secret parameter left on
    its own (``sig=``, ``token=``, ``subscription-key=``, ``X-Amz-Signature=``, ``code=`` in a
    query, ...) and of a secret header or mapping entry (``Authorization: ...``,
    ``Ocp-Apim-Subscription-Key: ...``, ``'token': '...'``). Paths, hosts and everything else stay.
    """
    out = _QUERY_RE.sub(r"\1", str(text))
    out = _BARE_QUERY_RE.sub("", out)
    out = _PARAM_RE.sub(r"\1<redacted>", out)
    out = _CODE_RE.sub(r"\1<redacted>", out)
    return _HEADER_RE.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}<redacted>{m.group(2) or ''}", out)


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
