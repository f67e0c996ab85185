"""Every query on the job table. Claiming is the queue: PostgreSQL hands each worker a
different row (FOR UPDATE SKIP LOCKED); on SQLite the guarded UPDATE's row count decides."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from warden.db.queries import where_given
from warden.jobs.models import Job
from warden.sandbox.models import Sandbox

CLAIM_TRIES = 5


def claim(db: Session, worker_id: str, now: datetime) -> Job | None:
    """Take the oldest queued job for this worker (state → running), or None."""
    postgres = db.get_bind().dialect.name == "postgresql"
    for _ in range(CLAIM_TRIES):
        query = select(Job.id).where(Job.state == "queued").order_by(Job.created_at, Job.id)
        if postgres:
            query = query.with_for_update(skip_locked=True)
        job_id = db.scalars(query.limit(1)).first()
        if job_id is None:
            return None
        # Guarded on state either way: exactly one worker's UPDATE can match.
        result = db.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == "queued")
            .values(
                state="running",
                worker_id=worker_id,
                attempt=Job.attempt + 1,
                started_at=now,
                heartbeat_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            db.flush()
            return db.get(Job, job_id, populate_existing=True)
    return None


def finish(
    db: Session, job_id: str, worker_id: str, state: str, reason: str | None, **values: Any
) -> bool:
    """End a running job this worker holds; False when it was ended meanwhile (cancelled)."""
    result = db.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == "running", Job.worker_id == worker_id)
        .values(state=state, reason=reason, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def heartbeat(db: Session, job_id: str, worker_id: str, now: datetime, **values: Any) -> str:
    """Record that the worker is alive; returns the job's state (cancelled: stop it)."""
    db.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.state == "running")
        .values(heartbeat_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    state = db.scalar(select(Job.state).where(Job.id == job_id))
    return str(state)


def stale(db: Session, now: datetime, after_s: float) -> list[Job]:
    """Running jobs whose worker has not been heard from for `after_s` seconds."""
    cutoff = now - timedelta(seconds=after_s)
    return list(
        db.scalars(select(Job).where(Job.state == "running", Job.heartbeat_at < cutoff).limit(100))
    )


def list_jobs(
    db: Session,
    tenant: str,
    launcher: str | None,
    state: str | None,
    kind: str | None,
    limit: int,
) -> list[Job]:
    query = where_given(
        select(Job).where(Job.tenant == tenant),
        (Job.launcher, launcher),
        (Job.state, state or None),
        (Job.kind, kind or None),
    )
    return list(db.scalars(query.order_by(Job.created_at.desc(), Job.id).limit(limit)))


def job_state(db: Session, job_id: str) -> str:
    return str(db.scalar(select(Job.state).where(Job.id == job_id)))


def sandbox_status(db: Session, sandbox_id: str) -> str | None:
    """The status of the sandbox a job runs in (the worker watches it end)."""
    return db.scalar(select(Sandbox.status).where(Sandbox.id == sandbox_id))
