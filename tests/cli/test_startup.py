"""The CLI starts light: a command that talks to the API never pays for importing the
database layer, the data stack or the server (they take most of a second to import; the
operator commands that need them import them when they run)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "sqlalchemy",
    "polars",
    "pyarrow",
    "numpy",
    "fastapi",
    "uvicorn",
    "casbin",
    "docker",
    "torch",
    "opentelemetry",
    "pyiceberg",
)


def test_the_cli_starts_without_the_database_data_or_server_stack() -> None:
    probe = (
        "import json, sys, warden.cli.main;"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed probe
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []
