"""The suite's xdist groups take effect (tests/conftest.py): under `--dist loadgroup`, as
scripts/test.sh runs it, two tests of one group run on one worker under the group's name.
pytest 9.2 with xdist 3.8 silently ignored every group (pytest-xdist#1386)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Two short tests of the sandbox group (by the `docker` mark; they skip without an engine,
# which is enough: a skipped test still runs on its group's worker), one of none. Not the
# compose test: it would bring a whole deployment up a second time inside this one.
GROUPED = [
    "tests/sandbox/test_late_oom_report.py::test_a_plain_kill_is_not_taken_for_a_memory_kill",
    "tests/sandbox/test_reap_race.py",
]
UNGROUPED = "tests/sandbox/test_egress_proxy_config.py"


def test_grouped_tests_run_on_one_worker_under_their_group() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
         "-p", "no:cacheprovider", *GROUPED, UNGROUPED],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=_without_requirements(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    ran = re.findall(r"^\[(gw\d)\] .*? (?:PASSED|SKIPPED|FAILED) (\S+)", done.stdout, re.M)
    docker = {worker for worker, test in ran if test.endswith("@docker")}
    assert len([t for _, t in ran if t.endswith("@docker")]) == 2, done.stdout[-3000:]
    assert len(docker) == 1, ran  # one worker for the group
    assert any(UNGROUPED in test and "@" not in test for _, test in ran), ran


def test_a_grouped_test_runs_without_xdist() -> None:
    """A developer's plain `pytest FILE` (no `-n`) has no worker option to send groups by:
    the conftest once asked for it anyway and every grouped file stopped at collection."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", GROUPED[1]],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=_without_requirements(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "INTERNALERROR" not in done.stdout + done.stderr


def _without_requirements() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_REQUIRE_")}
