"""`warden jobs …` and `warden models …` as a person types them, against a real server and a
real ML sandbox (SQLite only: the database is not what is under test)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.conftest import WardenHarness
from tests.jobs.conftest import sqlite_only
from tests.jobs.test_jobs_sandbox import READ_ONCE
from warden.cli.main import app
from warden.config import get_settings
from warden.jobs.worker import JobWorker

db_url = sqlite_only
runner = CliRunner()


def cli(live: WardenHarness, who: str, *args: str):  # type: ignore[no-untyped-def]
    get_settings.cache_clear()
    try:
        return runner.invoke(app, list(args), env={"WARDEN_TOKEN": live.tokens[who]})
    finally:
        get_settings.cache_clear()


def test_run_show_logs_and_lineage_from_the_cli(
    live_warden: WardenHarness, worker: JobWorker
) -> None:
    queued = cli(live_warden, "alice", "jobs", "run", "train", "-d", "pins", "--seed", "3",
                 "--", "python3", "-c", READ_ONCE)  # fmt: skip
    assert queued.exit_code == 0, queued.output
    job_id = queued.stdout.strip().splitlines()[-1]
    assert worker.run_once() == job_id

    shown = cli(live_warden, "alice", "jobs", "show", job_id, "--format", "json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["state"] == "succeeded"
    logs = cli(live_warden, "alice", "jobs", "logs", job_id)
    assert "progress: read" in logs.output and "succeeded" in logs.output
    listed = cli(live_warden, "alice", "jobs", "list")
    assert job_id in listed.output

    lineage = cli(live_warden, "alice", "models", "lineage", "domain-tower")
    assert lineage.exit_code == 0, lineage.output
    assert "datasets read" in lineage.output and "pins" in lineage.output
    assert "image digest" in lineage.output and "sha256:" in lineage.output
    # this job wrote no report; asking for one is a clear error, not a traceback
    missing = cli(live_warden, "alice", "models", "report", "domain-tower")
    assert missing.exit_code == 2 and "no report" in missing.output


def test_bad_job_requests_are_refused_with_a_reason(live_warden: WardenHarness) -> None:
    bad_kind = cli(live_warden, "alice", "jobs", "run", "deploy", "-d", "pins")
    assert bad_kind.exit_code != 0 and "train, infer or eval" in bad_kind.output
    nproc = cli(live_warden, "alice", "jobs", "run", "eval", "-d", "gold", "--nproc", "2")
    assert nproc.exit_code == 2 and "nproc" in nproc.output
    nobody = cli(live_warden, "mallory", "jobs", "run", "train", "-d", "pins")
    assert nobody.exit_code == 2 and "may not run ML jobs" in nobody.output
    assert cli(live_warden, "alice", "jobs", "show", "nope").exit_code == 2
