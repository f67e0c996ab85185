#!/usr/bin/env bash
# The test command: lint, types, then the whole suite on SQLite and (when present) PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
# PostgreSQL: a throwaway cluster of the suite's own (tests/pg_cluster.py: fsync off, since no
# test's data must survive a crash of the machine), stopped and deleted when the suite ends.
# The machine's own cluster (scripts/postgres-up.sh) stays durable for benchmarks and data.
# A WARDEN_TEST_POSTGRES_URL already set is used as it is.
basetemp=""
cleanup() {
    local rc=$?
    if [ -n "${WARDEN_TEST_POSTGRES_DIR:-}" ] && [ -n "${own_cluster:-}" ]; then
        .venv/bin/python -m tests.pg_cluster stop "$WARDEN_TEST_POSTGRES_DIR"
    fi
    if [ -n "$basetemp" ] && [ "$rc" -eq 0 ]; then
        rm -rf "$basetemp"
    elif [ -n "$basetemp" ]; then  # only the failed tests' files are left: kept to look at
        echo "note: the failed tests' files are in $basetemp (memory: delete it when done)" >&2
    fi
}
trap cleanup EXIT
if [ -z "${WARDEN_TEST_POSTGRES_URL:-}" ]; then
    if cluster=$(.venv/bin/python -m tests.pg_cluster start); then
        eval "$cluster"
        own_cluster=1
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
# The tests' files (each test's copy of the seeded database and data folder, SQLite's fsyncs)
# on tmpfs where it has 4 GiB free: on a busy disk, writing and deleting them took 14-39% of
# a folder's wall time. A --basetemp given to this script wins (pytest takes the last one).
if [ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -1)" -gt 4194304 ] 2>/dev/null; then
    basetemp=$(mktemp -d /dev/shm/warden-tests.XXXXXX)
fi
# The 25 slowest steps close the report: where the suite's time goes, in every CI log.
.venv/bin/pytest -n 2 --dist loadgroup --durations=25 ${basetemp:+--basetemp="$basetemp"} "$@"
