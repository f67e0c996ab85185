#!/usr/bin/env bash
# Every benchmark, one after another; each prints its table and writes bench-results/*.json.
# Usage: bash scripts/bench.sh [policy|reload|read|stream|small_reads|grants|sandbox|workspace|model|online|quality ...]
#        (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${WARDEN_TEST_POSTGRES_URL:-}" ]; then
    WARDEN_TEST_POSTGRES_URL=$(bash scripts/postgres-up.sh || true)
    export WARDEN_TEST_POSTGRES_URL
fi
wanted=("$@")
if [ ${#wanted[@]} -eq 0 ]; then
    wanted=(policy reload read stream small_reads grants sandbox workspace model online)
fi
for name in "${wanted[@]}"; do
    module="tests/benchmarks/bench_${name}.py"
    [ -f "$module" ] || { echo "skip: no $module"; continue; }
    echo "=== bench_${name} ==="
    .venv/bin/python -m "tests.benchmarks.bench_${name}"
done
