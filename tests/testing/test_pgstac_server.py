"""PgstacServer: availability (the full stack is exercised in tests/test_pgstac.py)."""

from __future__ import annotations

from terramind_nyc.testing import PgstacServer


def test_pgstac_reports_what_is_missing() -> None:
    missing = PgstacServer.missing()
    assert isinstance(missing, list) and all(isinstance(m, str) for m in missing)
    assert PgstacServer.available() == (not missing)
