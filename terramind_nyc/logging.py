"""Keeping signing tokens out of log output: a redacting filter, and quiet third-party loggers.

Asset URLs carry their signature in the query string (an Azure SAS token ``?st=...&se=...&sig=...``,
``token=``, ``subscription-key=``, ``X-Amz-Signature=``, ...). The library never logs one, but its
dependencies do at DEBUG: rasterio names each dataset by its full URL, urllib3 logs every
request line, pystac-client its requests. An application that logs at DEBUG installs the filter
on its handlers::

    import logging
    from terramind_nyc.logging import quiet_third_party, redact_secrets

    logging.basicConfig(level=logging.DEBUG)
    redact_secrets()            # every handler of the root logger: no token reaches the output
    quiet_third_party()         # rasterio, urllib3, pystac-client, ... back at WARNING

The filter goes on *handlers*, not loggers: a filter on a logger sees only the records logged
through that very logger, never those propagated from its children (``rasterio._base`` to the
root), while a handler's filter sees every record the handler writes. A handler added later
needs :func:`redact_secrets` again (or ``handler.addFilter(RedactSecretsFilter())``).
"""

from __future__ import annotations

import logging
import traceback

from .imagery.urls import redact

__all__ = ["THIRD_PARTY_LOGGERS", "RedactSecretsFilter", "quiet_third_party", "redact_secrets"]

#: The dependencies' loggers that are noisy at DEBUG (and print URLs with their tokens).
THIRD_PARTY_LOGGERS: tuple[str, ...] = (
    "rasterio", "fiona", "pystac", "pystac_client", "urllib3", "requests", "botocore", "boto3", "s3transfer",
    "fsspec", "aiohttp", "huggingface_hub", "filelock", "planetary_computer", "PIL", "matplotlib", "numba",
)


class RedactSecretsFilter(logging.Filter):
    """A handler filter that removes signing tokens from every record it passes.

    The message is rendered (``record.getMessage()``: ``msg % args``), redacted with
    :func:`terramind_nyc.imagery.urls.redact` (URL query strings, bare query strings, secret
    parameters and headers) and stored back as ``record.msg`` with ``record.args = None``, so
    every formatter after it sees the redacted text. An exception is formatted into a redacted
    ``record.exc_text`` and ``record.exc_info`` is dropped (the exception object holds the URL
    too); ``stack_info`` is redacted as well. Records are never rejected. Redaction is
    idempotent, so a record passing two filtered handlers is unchanged by the second.

    Records are shared between handlers: the filter rewrites the record itself, so handlers
    that run after a filtered one get the redacted record even without a filter of their own;
    those before it do not, hence :func:`redact_secrets` filters every handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            text = f"{record.msg!s} {record.args!r}"
        record.msg = redact(text)
        record.args = None
        if getattr(record, "message", None) is not None:  # formatted already by an earlier handler
            record.message = record.msg
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_secrets(logger: logging.Logger | str | None = None) -> RedactSecretsFilter:
    """Install a :class:`RedactSecretsFilter` on every handler of ``logger`` (default: the root
    logger) that has none yet, and return it.

    On handlers because a filter on a logger does not apply to the records propagated to it from
    child loggers. Handlers added to ``logger`` afterwards are not covered; call again.
    """
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    flt = RedactSecretsFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RedactSecretsFilter) for f in handler.filters):
            handler.addFilter(flt)
    return flt


def quiet_third_party(level: int | str = logging.WARNING,
                      names: tuple[str, ...] = THIRD_PARTY_LOGGERS) -> dict[str, int]:
    """Set the level of the dependencies' loggers (:data:`THIRD_PARTY_LOGGERS`) to ``level``.

    Returns each logger's previous level, so a caller can put them back
    (``for n, lv in old.items(): logging.getLogger(n).setLevel(lv)``).
    """
    old: dict[str, int] = {}
    for name in names:
        lg = logging.getLogger(name)
        old[name] = lg.level
        lg.setLevel(level)
    return old
