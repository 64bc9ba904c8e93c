#!/usr/bin/env bash
# System packages for the PostGIS-backed STAC tests (tests/test_pgstac.py): PostgreSQL 15 +
# PostGIS 3 from Debian. Idempotent; skipped (the pgstac tests then skip) when not root or
# without apt-get. The Python side (stac-fastapi-pgstac, pypgstac, uvicorn) is in the dev extra.
set -uo pipefail
if ls /usr/lib/postgresql/*/lib/postgis-3.so >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_system: not root or no apt-get; PostGIS tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq postgresql-15-postgis-3 >/dev/null 2>&1 \
  || echo "setup_system: could not install postgresql-15-postgis-3; PostGIS tests will be skipped" >&2
exit 0
