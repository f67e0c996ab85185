"""Cancelling a job stops its own sandbox, never one its row was pointed at in SQL (red team
15b, low: a denial of service across people and tenants).

The attack (a person who may run ML jobs, with write access to the database): `job.sandbox_id`
is the worker's note, not sealed. Set on her own running job to another person's live sandbox
(another tenant's too), `POST /v1/jobs/{id}/cancel` stopped that sandbox in her name. Now a
cancel stops only a sandbox whose sealed row is a launch of the job's launcher in its tenant.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no container runs here
from tests.sealed_rows import finished_job, sandbox_of, sql
from warden.db.session import unit_of_work
from warden.identity.service import Caller, get_principal
from warden.jobs import service as jobs


class _Runtime:
    """Stands in for the process's sandbox runtime: every sandbox is live here."""

    def __init__(self) -> None:
        self.stopped: list[str] = []

    def is_live_here(self, sandbox_id: str) -> bool:
        return True

    def stop(self, sandbox_id: str, by: Any, reason: str) -> None:
        self.stopped.append(sandbox_id)


def _running_job(w: WardenHarness, sandbox_id: str) -> tuple[str, Caller]:
    with unit_of_work(w.state.sessions) as db:
        job = finished_job(
            db, kind="train", step="swap", name="mine", datasets=["pins"], purpose="training"
        )
        job.state, job.sandbox_id = "running", sandbox_id
        alice = get_principal(db, "alice")
        return job.id, Caller("alice", "person", "acme", alice.id)


def test_cancel_of_a_job_pointed_at_another_sandbox_is_refused(warden: WardenHarness) -> None:
    own = sandbox_of(warden, "alice", ["pins"], "training")
    theirs = sandbox_of(warden, "admin", ["engagements"], "training")
    job, alice = _running_job(warden, own)
    sql(warden, "UPDATE job SET sandbox_id=:s WHERE id=:j", s=theirs, j=job)
    runtime = _Runtime()
    cancelled = jobs.cancel(warden.state, alice, job, runtime)
    assert cancelled.state == "cancelled"
    assert runtime.stopped == []


def test_cancel_stops_the_jobs_own_sandbox(warden: WardenHarness) -> None:
    own = sandbox_of(warden, "alice", ["pins"], "training")
    job, alice = _running_job(warden, own)
    runtime = _Runtime()
    jobs.cancel(warden.state, alice, job, runtime)
    assert runtime.stopped == [own]
