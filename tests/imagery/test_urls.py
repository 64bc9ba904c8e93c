"""imagery/urls.py: tokens never leak (strip_query, redact), signers."""

from __future__ import annotations

import pytest

from terramind_nyc.errors import InvalidInputError
from terramind_nyc.imagery.urls import make_signer, planetary_computer_signer, redact, strip_query


def test_urls_lose_their_tokens() -> None:
    signed = "https://acct.blob.core.windows.net/c/x/B04.tif?st=2024&se=2025&sig=SECRET%2B"
    assert strip_query(signed) == "https://acct.blob.core.windows.net/c/x/B04.tif"
    assert strip_query("/data/B04.tif") == "/data/B04.tif"
    msg = f"'/vsicurl/{signed}' not recognized; HTTP error for {signed}."
    assert "SECRET" not in redact(msg) and "B04.tif" in redact(msg)


def test_signers() -> None:
    # planetary-computer signs only Azure blob hosts: anything else is returned untouched, with
    # no network call (the test session blocks non-loopback connections)
    for href in ("http://127.0.0.1:8000/cogs/B04.tif", "https://example.org/x.tif", "/data/x.tif"):
        assert planetary_computer_signer(href) == href
        assert make_signer("planetary-computer")(href) == href
        assert make_signer("none")(href) == href

    def mine(h: str) -> str:
        return h + "?k=1"

    assert make_signer(mine) is mine
    with pytest.raises(InvalidInputError):
        make_signer("aws")


@pytest.mark.parametrize("text, keep", [
    # an Azure SAS token on a URL, in /vsicurl/, in a quoted repr, before punctuation
    ("https://a.blob.core.windows.net/c/B04.tif?st=2024&se=2025&sp=rl&sig=SECRET%2B", "/c/B04.tif"),
    ("'/vsicurl/https://a.blob.core.windows.net/c/B04.tif?sv=1&sig=SECRET' not recognized", "/c/B04.tif' not"),
    ("HTTP response code on https://h/c/B04.tif?sig=SECRET: 403", "/c/B04.tif: 403"),
    ("GetFileSize(http://127.0.0.1:8080/c/B04.tif?sig=SECRET)=5000", "/c/B04.tif)=5000"),
    # a bare query string: urllib3's request line, GDAL's file name without the scheme
    ('127.0.0.1 "GET /c/B04.tif?st=2024&se=2025&sig=SECRET HTTP/1.1" 206 -', '"GET /c/B04.tif HTTP/1.1" 206'),
    ("B04.tif?st=2024&sig=SECRET&x=1, band 1: IReadBlock failed", "B04.tif, band 1"),
    # other token forms
    ("https://h/c/B04.tif?token=SECRET", "/c/B04.tif"),
    ("https://h/api?subscription-key=SECRET", "https://h/api"),
    ("s3://bucket/B04.tif?X-Amz-Credential=SECRET&X-Amz-Signature=SECRET", "s3://bucket/B04.tif"),
    ("https://login/cb?code=SECRET&state=1", "https://login/cb"),
    ("gs://bucket/B04.tif#SECRET", "gs://bucket/B04.tif"),
    # secret parameters cut from their URL, a SAS token on its own
    ("token st=2024&se=2025&sig=SECRET for c", "se=2025&sig=<redacted> for c"),
    ("X-Amz-Signature=SECRET&X-Amz-Credential=SECRET", "X-Amz-Signature=<redacted>"),
    ("then &code=SECRET&state=1", "&code=<redacted>&state=1"),
    ("subscription-key=SECRET, token=SECRET", "subscription-key=<redacted>"),
    # secret headers and mapping entries
    ("{'User-Agent': 'x', 'Ocp-Apim-Subscription-Key': 'SECRET'}", "'User-Agent': 'x'"),
    ("Authorization: Bearer SECRET", "Authorization: <redacted>"),
    ('{"token": "st=2024&sig=SECRET", "msft:expiry": "2025"}', '"msft:expiry": "2025"'),
])
def test_redact_removes_every_token_form(text: str, keep: str) -> None:
    out = redact(text)
    assert "SECRET" not in out and keep in out, out
    assert redact(out) == out  # idempotent


@pytest.mark.parametrize("text", [
    "HTTP response code: 404", "exit code=1", "searching sentinel-2-l2a at stac-api (127.0.0.1:8080) failed",
    "reading S2L2A asset 'B04' of item S2B_X from 127.0.0.1:8080 failed (RasterioIOError: Read failed.)",
    "/data/S2B/B04.tif", "key=value without a question mark",
])
def test_redact_leaves_token_free_text_alone(text: str) -> None:
    assert redact(text) == text
