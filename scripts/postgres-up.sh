#!/usr/bin/env bash
# Starts this machine's PostgreSQL if it is installed but stopped, and prints a test URL.
# Prints nothing (and exits 0) when there is no PostgreSQL here: tests then run on SQLite only.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then exit 0; fi
version=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
[ -n "$version" ] || exit 0
if ! pg_lsclusters -h | awk '{print $4}' | grep -q online; then
    pg_ctlcluster "$version" main start >&2
fi
for _ in $(seq 1 30); do
    pg_isready -q -h /var/run/postgresql && break
    sleep 0.5
done
user=$(id -un)
if [ "$user" = root ]; then
    su postgres -c "psql -tAc \"select 1 from pg_roles where rolname='root'\"" | grep -q 1 \
        || su postgres -c "psql -qc 'create role root superuser login'" >&2
fi
echo "postgresql+psycopg:///postgres?host=/var/run/postgresql"
