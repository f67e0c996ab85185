"""The job table: one row per job, and the queue itself (workers claim `queued` rows)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from warden.db.base import Base, LaunchedMixin, TimestampMixin
from warden.db.sealed import Sealed

KINDS = ("train", "infer", "eval")
# queued → running → succeeded | failed | cancelled | timed_out (queued may go to cancelled)
LIVE_STATES = ("queued", "running")
END_STATES = ("succeeded", "failed", "cancelled", "timed_out")
STATES = LIVE_STATES + END_STATES


def new_job_id() -> str:
    return secrets.token_hex(6)


class Job(Sealed, LaunchedMixin, TimestampMixin, Base):
    __tablename__ = "job"
    # what the worker runs, as whom, on what, decided at launch (jobs/worker.py)
    __sealed__ = ("id", "tenant_id", "tenant", "launcher_id", "launcher", "kind", "step", "name",
                  "spec", "datasets", "purpose", "model_in", "timeout_s", "memory", "cpus",
                  "decisions")  # fmt: skip

    id: Mapped[str] = mapped_column(String(12), primary_key=True, default=new_job_id)
    launcher: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    step: Mapped[str] = mapped_column(String(32))
    # The model name its result is registered under (a new version each time).
    name: Mapped[str] = mapped_column(String(64))
    # What the workload gets as /out/spec.json, with model_in still as registry references.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    datasets: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(32))
    model_in: Mapped[list[str]] = mapped_column(JSON, default=list)  # parent model ids
    timeout_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    memory: Mapped[str | None] = mapped_column(String(16), nullable=True)
    cpus: Mapped[float | None] = mapped_column(nullable=True)
    # Launch-time decisions: policy version and grant ids per dataset (lineage uses them).
    decisions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # Warden's own words
    # A failed workload's last line: it may print data, so it is shown only with its log
    # (jobs/service.may_see_output), never in the reason or the audit log.
    last_line: Mapped[str | None] = mapped_column(String(500), nullable=True, default=None)
    sandbox_id: Mapped[str | None] = mapped_column(String(12), nullable=True, index=True)
    worker_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(12), nullable=True)
    outputs: Mapped[list[str]] = mapped_column(JSON, default=list)  # datasets it registered
