"""imagery/chip.py: the chip's metadata is plain JSON and token-free."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from imagery.helpers import SECRET, library_log, read_scenario

from terramind_nyc.sensors import S2_BANDS
from terramind_nyc.settings import Settings


def test_metadata_is_json_and_token_free(fixture_catalog: Any, local_settings: Settings,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        chip = read_scenario(fixture_catalog, "tile_edge", local_settings)
    md = chip.metadata()
    text = json.dumps(md)  # plain JSON types only
    assert json.loads(text) == md
    assert SECRET not in text and "http" not in text and str(fixture_catalog.catalog.root) not in text
    assert SECRET not in library_log(caplog) and "127.0.0.1" in library_log(caplog)
    assert set(md) >= {"grid", "window", "modalities", "bands", "valid_fraction", "provenance", "missing", "notes"}
    assert md["bands"]["S2L2A"] == list(S2_BANDS)
    assert md["window"] == ["2024-05-01T00:00:00Z", "2024-07-31T23:59:59Z"]
    for m, p in md["provenance"].items():
        assert p["modality"] == m and p["item_ids"] and all(d.endswith("Z") for d in p["datetimes"])
