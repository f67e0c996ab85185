"""A real SeaweedFS for the object-storage tests, started (or reused) by scripts/seaweedfs-up.sh.

Where it cannot start, the tests that need it skip with a note, unless WARDEN_REQUIRE_S3=1
(CI) makes that a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def seaweedfs() -> dict[str, str]:
    """The settings that point Warden at the bucket: WARDEN_STORAGE_URL and WARDEN_S3_*."""
    env = {**os.environ, "WARDEN_VENV": os.environ.get("WARDEN_VENV", sys.prefix)}
    try:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "seaweedfs-up.sh")],  # noqa: S607
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        problem = None if done.returncode == 0 else done.stderr.strip()[-1500:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        done, problem = None, str(exc)
    if problem is not None or done is None:
        if os.environ.get("WARDEN_REQUIRE_S3") == "1":
            pytest.fail(f"SeaweedFS is required here (WARDEN_REQUIRE_S3=1): {problem}")
        pytest.skip(f"no SeaweedFS here (scripts/seaweedfs-up.sh failed): {problem}")
    found = {}
    for line in done.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        found[name] = value
    return found
