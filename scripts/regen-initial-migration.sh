#!/usr/bin/env bash
# Regenerates migrations/versions/0001_initial.py from the models (only while no release exists).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f migrations/versions/0001_initial.py
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from warden.db.migrate import alembic_config
cfg = alembic_config(f"sqlite:///{sys.argv[1]}/gen.db")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
PY
mv migrations/versions/0001_initial_schema.py migrations/versions/0001_initial.py
.venv/bin/ruff format -q migrations/versions/0001_initial.py
.venv/bin/ruff check -q --fix migrations/versions/0001_initial.py || true
rm -rf "$tmp"
echo "regenerated migrations/versions/0001_initial.py"
