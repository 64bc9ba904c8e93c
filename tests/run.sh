#!/usr/bin/env bash
# The project's test command (README step 2; .ci/run calls it too).
# Installs the system packages the PostGIS-backed STAC tests need when it can (root + apt),
# then type-checks the package, checks its import layers (import-linter contracts in
# pyproject.toml) and runs the whole suite, slow tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "no .venv: run README step 1 first" >&2
  exit 2
fi
if [ -f tests/setup_system.sh ]; then
  bash tests/setup_system.sh
fi
"$PY" -m mypy
.venv/bin/lint-imports --no-cache
"$PY" -m pytest "$@"
