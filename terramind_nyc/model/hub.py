"""Files of a Hugging Face model repo, through huggingface_hub's cache, failing fast when offline.

huggingface_hub retries a failed connection for about 25 s per file. :func:`download_file` asks
once, without retries, whether the hub answers at all (:func:`hub_reachable`, remembered for
:data:`PROBE_TTL_S` per endpoint) and, when it does not, reads only the local cache. So offline
use of a cached checkpoint is immediate, and an uncached one fails with a message that says the
hub could not be reached. huggingface_hub is imported only when a repo id is used.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from pathlib import Path

from ..errors import CheckpointNotFoundError
from .files import CHECKPOINT_HINT

__all__ = ["PROBE_TTL_S", "clear_probes", "download_file", "hub_reachable", "transport_errors"]

log = logging.getLogger(__name__)

#: Seconds a probe's answer (reachable or not) is reused for the same endpoint.
PROBE_TTL_S = 30.0
_probes: dict[str, tuple[bool, float]] = {}  # endpoint -> (reachable, valid until)
_probes_lock = threading.Lock()


def clear_probes() -> None:
    """Forget every probe's answer (the next hub access probes again)."""
    with _probes_lock:
        _probes.clear()


def transport_errors() -> tuple[type[BaseException], ...]:
    """The exception types meaning "no answer from the server" in huggingface_hub's HTTP stack."""
    errors: list[type[BaseException]] = [OSError]  # requests' ConnectionError / Timeout are OSErrors
    for name in ("httpx2", "httpx"):  # huggingface_hub 2.x / 1.x
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def hub_reachable(repo_id: str, filename: str, revision: str | None) -> bool:
    """False when the hub gives no answer at all (offline mode, DNS, refused, timeout), from one
    HEAD request without retries. The answer is kept for :data:`PROBE_TTL_S` per endpoint, so
    the files of one load cost one probe. Any HTTP answer, errors included, counts as reachable
    (the download then reports it)."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = constants.ENDPOINT
    with _probes_lock:
        known = _probes.get(endpoint)
    if known is not None and known[1] > time.monotonic():
        return known[0]
    reachable = True
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=10)
    except HfHubHTTPError:  # an HTTP answer (404, 401, 5xx, ...): an OSError too, so caught first
        pass
    except transport_errors() as exc:
        log.info("the Hugging Face hub at %s is not reachable (%s); using the local cache only",
                 endpoint, type(exc).__name__)
        reachable = False
    except Exception:  # noqa: BLE001 - anything else (a malformed id, ...): hf_hub_download reports it
        pass
    with _probes_lock:
        _probes[endpoint] = (reachable, time.monotonic() + PROBE_TTL_S)
    return reachable


def download_file(repo_id: str, filename: str, revision: str | None) -> Path:
    """One file of a hub repo through huggingface_hub's cache (offline use works once cached).

    Raises CheckpointNotFoundError naming the cause (no such repo or revision, no such file,
    hub unreachable and the file not cached).
    """
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    where = f"{repo_id}@{revision}" if revision else repo_id
    offline = not hub_reachable(repo_id, filename, revision)
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision,
                                                    local_files_only=offline))
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as exc:
        raise CheckpointNotFoundError(
            f"checkpoint {where!r} is not a local directory and the Hugging Face hub has no such "
            f"{'revision' if isinstance(exc, hf_errors.RevisionNotFoundError) else 'repository'} "
            f"({type(exc).__name__}); {CHECKPOINT_HINT}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - offline, timeouts, HTTP errors: all mean "not available"
        # LocalEntryNotFoundError (offline or the hub unreachable, the file not cached) derives
        # from EntryNotFoundError in some huggingface_hub versions: it is not "the repo lacks it".
        no_answer = isinstance(exc, hf_errors.LocalEntryNotFoundError)
        if isinstance(exc, hf_errors.EntryNotFoundError) and not no_answer:
            reason = f"the Hugging Face hub has no {filename} in it"
        elif no_answer:
            reason = (f"{filename} is not in the local Hugging Face cache and the hub could not be reached "
                      "(offline, HF_HUB_OFFLINE=1, or a network error)")
        else:
            reason = (f"{filename} is not in the local Hugging Face cache and could not be downloaded "
                      f"({type(exc).__name__}: {str(exc)[:200]})")
        raise CheckpointNotFoundError(f"checkpoint {where!r}: {reason}; {CHECKPOINT_HINT}") from None
