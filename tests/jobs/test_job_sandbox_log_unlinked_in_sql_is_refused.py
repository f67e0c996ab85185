"""A data sandbox's log is its launcher's; a job's log, anyone else's only through the job
(red team 15b, medium).

The attack (an admin who may read `pins` but not `latent_users`, with write access to the
database): alice's infer job on `pins` takes a model built from `latent_users`; its sandbox's
log (what the workload printed: rows of the model's data too) is refused to the admin, since
`/v1/sandboxes/{id}/logs` found the sandbox's job by `job.sandbox_id` and held the viewer to
its parent models' datasets. That column is the worker's note, not sealed: set to NULL (or
moved to another job of alice's on `pins` with no parent), the sandbox looked like a plain one
on `pins` and its log was the admin's. Now no one but its launcher reads a data segment's
sandbox log there; a job's log is `/v1/jobs/{id}/logs`, held to the sealed job row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no container runs here
from tests.experiments.helpers import reads_pins, register_artifact
from tests.sealed_rows import finished_job, sandbox_of, sql
from warden.db.session import unit_of_work
from warden.jobs.models import Job
from warden.registry.models import Model

PRINTED = b"taste_1,taste_2\n0.91,0.09\n"


@pytest.fixture
def jobs_sandbox(warden: WardenHarness, tmp_path: Path) -> tuple[str, str, str]:
    """(job, its sandbox, another job of alice's on pins): the first takes a model built from
    latent_users, and its sandbox printed some of it."""
    reads_pins(warden, "admin")  # admin sees every sandbox of acme; no latent_users
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    register_artifact(warden, "latent-fit", source, read=("pins", "latent_users"))
    sandbox = sandbox_of(warden, "alice", ["pins"], "inference", status="succeeded")
    with unit_of_work(warden.state.sessions) as db:
        parent = db.scalar(select(Model.id).where(Model.name == "latent-fit"))
        job = finished_job(
            db, kind="infer", step="swap", name="scored", datasets=["pins"], purpose="inference"
        )
        job.model_in = [str(parent)]
        job.sandbox_id = sandbox
        other = finished_job(
            db, kind="infer", step="swap", name="plain", datasets=["pins"], purpose="inference"
        )
        ids = (job.id, other.id)
    log = Path(warden.settings.data_dir) / "sandboxes" / sandbox / "logs.txt"  # type: ignore[attr-defined]
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(PRINTED)
    return ids[0], sandbox, ids[1]


def _log(w: WardenHarness, sandbox: str, who: str) -> tuple[int, str]:
    answer = w.http.get(f"/v1/sandboxes/{sandbox}/logs", headers=w.as_(who))
    return answer.status_code, answer.text


def _refused_to_admin(w: WardenHarness, sandbox: str) -> None:
    status, body = _log(w, sandbox, "admin")
    assert status in (403, 404) and "taste_1" not in body, (status, body[:300])


def test_a_jobs_sandbox_log_unlinked_from_its_job_in_sql_is_refused(
    warden: WardenHarness, jobs_sandbox: tuple[str, str, str]
) -> None:
    job, sandbox, _ = jobs_sandbox
    assert warden.read("admin", "latent_users", purpose="evaluation").status_code in (403, 404)
    assert _log(warden, sandbox, "alice") == (200, PRINTED.decode())
    _refused_to_admin(warden, sandbox)
    sql(warden, "UPDATE job SET sandbox_id=NULL WHERE id=:j", j=job)
    _refused_to_admin(warden, sandbox)


def test_a_jobs_sandbox_moved_to_another_job_in_sql_is_refused(
    warden: WardenHarness, jobs_sandbox: tuple[str, str, str]
) -> None:
    job, sandbox, other = jobs_sandbox
    sql(
        warden,
        "UPDATE job SET sandbox_id=NULL WHERE id=:j",
        "UPDATE job SET sandbox_id=:s WHERE id=:o",
        j=job,
        s=sandbox,
        o=other,
    )
    _refused_to_admin(warden, sandbox)
    with warden.state.engine.connect() as conn:
        moved = conn.execute(text("SELECT id FROM job WHERE sandbox_id=:s"), {"s": sandbox})
        assert [r[0] for r in moved] == [other]
    with unit_of_work(warden.state.sessions) as db:
        assert db.get(Job, other) is not None
