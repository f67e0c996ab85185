#!/usr/bin/env bash
# The test command: lint, types, then the whole suite on SQLite and (when present) PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${WARDEN_TEST_POSTGRES_URL:-}" ]; then
    WARDEN_TEST_POSTGRES_URL=$(bash scripts/postgres-up.sh || true)
    export WARDEN_TEST_POSTGRES_URL
fi
if [ -z "$WARDEN_TEST_POSTGRES_URL" ]; then
    echo "note: no PostgreSQL here; tests run on SQLite only" >&2
    unset WARDEN_TEST_POSTGRES_URL
fi
bash scripts/docker-up.sh >/dev/null 2>&1 || echo "note: no Docker Engine here; sandbox tests skip" >&2
.venv/bin/ruff check platform tests migrations
.venv/bin/ruff format --check platform tests migrations
.venv/bin/mypy
# Two workers (pytest-xdist); tests sharing the Docker Engine, the browser or the object
# store run in one of them, in order (tests/conftest.py groups them).
.venv/bin/pytest -n 2 --dist loadgroup "$@"
