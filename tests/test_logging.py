"""terramind_nyc/logging.py: no signing token in log output, the dependencies' DEBUG included."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from terramind_nyc.logging import THIRD_PARTY_LOGGERS, RedactSecretsFilter, quiet_third_party, redact_secrets
from terramind_nyc.settings import Settings

FMT = "%(levelname)s %(name)s: %(message)s"


def _sas(token: str) -> str:
    """A query string shaped like an Azure SAS token whose signature is ``token``."""
    return f"st=2024-07-01T00%3A00%3A00Z&se=2024-07-02T00%3A00%3A00Z&sp=rl&sv=2024-05-04&sr=c&skoid=ab12&sig={token}"


def _record(msg: Any, *args: Any, exc_info: Any = None, name: str = "rasterio._base") -> logging.LogRecord:
    return logging.LogRecord(name, logging.DEBUG, __file__, 1, msg, args or None, exc_info)


def _format(record: logging.LogRecord) -> str:
    assert RedactSecretsFilter().filter(record) is True  # never drops a record
    return logging.Formatter(FMT).format(record)


# ----------------------------------------------------------------------------------------
# The filter on single records
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("msg, args", [
    ("Dataset %r is started.", ("<open DatasetReader name='https://a.blob.core.windows.net/c/B04.tif?{q}'>",)),
    ("%s://%s:%s \"%s %s %s\" %s %s", ("https", "a.blob.core.windows.net", 443, "GET", "/c/B04.tif?{q}",
                                       "HTTP/1.1", 206, 1024)),
    ("opening %(url)s", {"url": "/vsicurl/https://a.blob.core.windows.net/c/B04.tif?{q}"}),
    ("token %s for /c/B04.tif", ("{q}",)),
    ("request headers: %s for /c/B04.tif", ({"Ocp-Apim-Subscription-Key": "{t}", "Authorization": "Bearer {t}"},)),
])
def test_filter_renders_and_redacts_args(msg: str, args: Any) -> None:
    token = uuid.uuid4().hex
    fill = {"q": _sas(token), "t": token}
    if isinstance(args, dict):
        args = {k: v.format(**fill) for k, v in args.items()}
        rec = _record(msg, args)
    else:
        args = tuple(a.format(**fill) if isinstance(a, str) else
                     {k: v.format(**fill) for k, v in a.items()} if isinstance(a, dict) else a for a in args)
        rec = _record(msg, *args)
    assert token in rec.getMessage()  # the test is not vacuous
    out = _format(rec)
    assert token not in out and "B04.tif" in out
    assert rec.args is None and rec.msg == rec.getMessage() and token not in rec.getMessage()


def test_filter_redacts_a_logged_exception_and_keeps_its_traceback() -> None:
    token = uuid.uuid4().hex
    buf = io.StringIO()
    log = logging.getLogger("test_logging.exc")
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter(FMT))
    handler.addFilter(RedactSecretsFilter())
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        try:
            raise OSError(f"HTTP response code on https://h/x/B8A.tif?{_sas(token)}: 403")
        except OSError:
            log.exception("reading %s failed", f"https://h/x/B8A.tif?sig={token}")
            log.debug("again", exc_info=True, stack_info=True)
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
        log.propagate = True
    out = buf.getvalue()
    assert token not in out
    assert out.count("Traceback (most recent call last)") == 2
    assert "OSError: HTTP response code on https://h/x/B8A.tif: 403" in out
    assert "Stack (most recent call last)" in out and "B8A.tif" in out


def test_filter_survives_a_bad_format_string_and_is_idempotent() -> None:
    token = uuid.uuid4().hex
    rec = _record("%s and %s", f"?sig={token}")  # one argument short: getMessage() raises
    out = _format(rec)
    assert token not in out and "%s and %s" in out
    again = _record("GET /x.tif?sig=%s", token)
    first = _format(again)
    assert _format(again) == first and token not in first


def test_redact_secrets_filters_every_handler_once() -> None:
    log = logging.getLogger("test_logging.install")
    handlers = [logging.StreamHandler(io.StringIO()) for _ in range(2)]
    for h in handlers:
        log.addHandler(h)
    try:
        flt = redact_secrets(log)
        assert isinstance(flt, RedactSecretsFilter)
        assert all(flt in h.filters for h in handlers)
        redact_secrets("test_logging.install")  # by name; a second call adds nothing
        assert all(len(h.filters) == 1 for h in handlers)
    finally:
        for h in handlers:
            log.removeHandler(h)


def test_a_filter_on_a_logger_misses_its_children_hence_handlers() -> None:
    """Why redact_secrets filters handlers: a logger's own filter never sees a child's records."""
    token = uuid.uuid4().hex
    parent, child = logging.getLogger("test_logging.parent"), logging.getLogger("test_logging.parent.child")
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    parent.addHandler(handler)
    parent.setLevel(logging.DEBUG)
    parent.propagate = False
    on_logger = RedactSecretsFilter()
    parent.addFilter(on_logger)
    try:
        child.debug("GET /x.tif?sig=%s", token)
        assert token in buf.getvalue()  # propagated past the logger's filter
        buf.truncate(0)
        redact_secrets(parent)
        child.debug("GET /x.tif?sig=%s", token)
        assert token not in buf.getvalue() and "GET /x.tif" in buf.getvalue()
    finally:
        parent.removeFilter(on_logger)
        parent.removeHandler(handler)
        parent.setLevel(logging.NOTSET)
        parent.propagate = True


def test_quiet_third_party_sets_and_returns_levels() -> None:
    assert {"rasterio", "pystac_client", "urllib3", "fiona", "botocore", "fsspec", "huggingface_hub", "PIL",
            "matplotlib", "numba"} <= set(THIRD_PARTY_LOGGERS)
    old = quiet_third_party(logging.WARNING)
    try:
        assert set(old) == set(THIRD_PARTY_LOGGERS)
        assert all(logging.getLogger(n).level == logging.WARNING for n in THIRD_PARTY_LOGGERS)
        assert not logging.getLogger("rasterio._base").isEnabledFor(logging.DEBUG)
    finally:
        for name, level in old.items():
            logging.getLogger(name).setLevel(level)


# ----------------------------------------------------------------------------------------
# A real signed fetch at DEBUG
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")  # the random-weight checkpoint needs the torch extra
    from terramind_nyc.testing.model import make_tiny_artifact

    return make_tiny_artifact(tmp_path_factory.mktemp("logging") / "artifact")


@pytest.fixture
def debug_capture() -> Iterator[io.StringIO]:
    """The root logger at DEBUG (the dependencies too) into a StringIO, redact_secrets() installed."""
    root = logging.getLogger()
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter(FMT))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    old = quiet_third_party(logging.NOTSET)  # whatever set them before: DEBUG from rasterio & co.
    flt = redact_secrets()
    try:
        yield buf
    finally:
        for h in root.handlers:
            h.removeFilter(flt)
        root.removeHandler(handler)
        root.setLevel(level)
        for name, lv in old.items():
            logging.getLogger(name).setLevel(lv)


def _assert_no_token_but_paths(text: str, token: str, fx: Any) -> None:
    item = fx.catalog.expected["clear"]["s2_ids"][0]
    assert token not in text
    assert f"/{item}/B04.tif" in text  # asset paths survive, only the query goes
    # rasterio's own DEBUG records, naming the datasets by URL, went through the filter
    datasets = [ln for ln in text.splitlines() if ln.startswith("DEBUG rasterio") and ".tif" in ln]
    assert datasets, "no rasterio DEBUG record naming a dataset was captured"
    assert any("127.0.0.1" in ln for ln in datasets)


def test_debug_log_of_a_signed_fetch_has_no_token(fixture_catalog: Any, local_settings: Settings,
                                                  tiny_artifact: Path, debug_capture: io.StringIO) -> None:
    from terramind_nyc import fetch
    from terramind_nyc.imagery.catalog import get_catalog
    from terramind_nyc.imagery.reader import read_chip
    from terramind_nyc.pipeline import Pipeline, use_pipeline

    fx = fixture_catalog
    token = f"SASSIG{uuid.uuid4().hex}"
    signed = get_catalog(local_settings, signer=lambda href: f"{href}?{_sas(token)}" if "://" in href else href)

    def reader(grid: Any, start: Any, end: Any, settings: Settings, deadline: Any) -> Any:
        return read_chip(grid, when=(start, end), settings=settings, deadline=deadline, catalog=signed)

    lat, lon = fx.catalog.points["clear"]
    with use_pipeline(Pipeline(reader=reader)):
        r = fetch(lat, lon, when=fx.catalog.when("clear"), settings=local_settings.replace(checkpoint=str(tiny_artifact)))
    assert r.provenance.imagery["S2L2A"]["item_ids"]
    # the reads really were signed: the COG server saw the token
    assert any(token in q.query for q in fx.cog_server.requests)
    _assert_no_token_but_paths(debug_capture.getvalue(), token, fx)


def _presigned_items(fx: Any, tmp_path: Path, token: str) -> Path:
    """The fixture items with every asset href already signed (a catalog that signs its answers)."""
    items = fx.catalog.items()
    for it in items:
        for a in it["assets"].values():
            a["href"] = f"{a['href']}?{_sas(token)}"
    p = tmp_path / "signed-items.json"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return p


def test_cli_debug_logging_has_no_token(fixture_catalog: Any, tiny_artifact: Path, tmp_path: Path) -> None:
    from terramind_nyc.cli import cli

    fx = fixture_catalog
    token = f"SASSIG{uuid.uuid4().hex}"
    env = {"TERRAMIND_NYC_CATALOG_PROVIDER": "local",
           "TERRAMIND_NYC_CATALOG_PATH": str(_presigned_items(fx, tmp_path, token)),
           "TERRAMIND_NYC_SIGNER": "none", "TERRAMIND_NYC_CHECKPOINT": str(tiny_artifact),
           "TERRAMIND_NYC_CACHE_ENABLED": "false", "TERRAMIND_NYC_HTTP_RETRIES": "1"}
    lat, lon = fx.catalog.points["clear"]
    start, end = fx.catalog.when("clear")
    args = ["fetch", str(lat), str(lon), "--when", f"{start}/{end}", "--json"]
    runner = CliRunner()
    rasterio_level = logging.getLogger("rasterio").level

    res = runner.invoke(cli, ["-vv", *args], env=env)
    assert res.exit_code == 0, res.output
    assert any(token in q.query for q in fx.cog_server.requests)
    err = res.stderr
    assert token not in err and token not in res.stdout
    assert "DEBUG terramind_nyc.imagery.warp: read S2L2A" in err and "B04.tif" in err  # -vv: the library's DEBUG
    assert "DEBUG rasterio" not in err  # -vv: the dependencies stay at WARNING

    res = runner.invoke(cli, ["-vvv", *args], env=env)
    assert res.exit_code == 0, res.output
    assert token not in res.stderr
    _assert_no_token_but_paths(res.stderr, token, fx)  # -vvv: everything at DEBUG, still redacted
    assert logging.getLogger("rasterio").level == rasterio_level  # the CLI put the levels back
