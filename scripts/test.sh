#!/usr/bin/env bash
# The test command: lint, types, then the whole suite on SQLite and (when present) PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
# PostgreSQL: a throwaway cluster of the suite's own (tests/pg_cluster.py: fsync off, since no
# test's data must survive a crash of the machine), stopped and deleted when the suite ends.
# The machine's own cluster (scripts/postgres-up.sh) stays durable for benchmarks and data.
# A WARDEN_TEST_POSTGRES_URL already set is used as it is.
if [ -z "${WARDEN_TEST_POSTGRES_URL:-}" ]; then
    if cluster=$(.venv/bin/python -m tests.pg_cluster start); then
        eval "$cluster"
        trap '.venv/bin/python -m tests.pg_cluster stop "$WARDEN_TEST_POSTGRES_DIR"' EXIT
    else
        echo "note: no PostgreSQL here; tests run on SQLite only" >&2
    fi
fi
bash scripts/docker-up.sh >/dev/null 2>&1 || echo "note: no Docker Engine here; sandbox tests skip" >&2
.venv/bin/ruff check platform tests migrations
.venv/bin/ruff format --check platform tests migrations
.venv/bin/mypy
# Two workers (pytest-xdist); the sandbox tests, the jobs in ML sandboxes, the browser tests
# and the object store's tests each run in one of them, in order (tests/conftest.py groups
# them).
.venv/bin/pytest -n 2 --dist loadgroup "$@"
