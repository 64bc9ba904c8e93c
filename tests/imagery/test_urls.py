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
