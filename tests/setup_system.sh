#!/usr/bin/env bash
# System packages some tests need, from Debian. Each is installed only when missing (idempotent);
# nothing is installed (those tests then skip) when not root or without apt-get; never fails.
# - PostgreSQL 15 + PostGIS 3 for the PostGIS-backed STAC tests (tests/test_pgstac.py). The
#   Python side (stac-fastapi-pgstac, pypgstac, uvicorn) is in the dev extra.
# - Chromium for the headless-browser tests of the HTML map page (tests/maps/test_render.py),
#   which look for `chromium` or `chromium-browser` on PATH.
set -uo pipefail
need_postgis=1
if ls /usr/lib/postgresql/*/lib/postgis-3.so >/dev/null 2>&1; then
  need_postgis=0
fi
need_chromium=1
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  need_chromium=0
fi
if [ "$need_postgis" = 0 ] && [ "$need_chromium" = 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  if [ "$need_postgis" = 1 ]; then
    echo "setup_system: not root or no apt-get; PostGIS tests will be skipped" >&2
  fi
  if [ "$need_chromium" = 1 ]; then
    echo "setup_system: not root or no apt-get; the headless-browser tests will be skipped" >&2
  fi
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
if [ "$need_postgis" = 1 ]; then
  apt-get install -y -qq postgresql-15-postgis-3 >/dev/null 2>&1 \
    || echo "setup_system: could not install postgresql-15-postgis-3; PostGIS tests will be skipped" >&2
fi
if [ "$need_chromium" = 1 ]; then
  apt-get install -y -qq chromium >/dev/null 2>&1 \
    || echo "setup_system: could not install chromium; the headless-browser tests will be skipped" >&2
fi
exit 0
