"""Tables for sandboxes (one row per launch) and their hashed job tokens."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from warden.db.base import Base, LaunchedMixin, TimestampMixin, new_id
from warden.db.sealed import Sealed

LIVE_STATUSES = ("starting", "running")
# succeeded: exit 0 · failed: non-zero (oom_killed says when the memory limit killed it)
# timed_out: killed at its wall-clock limit · stopped: stopped by a person or the platform
# lost: the platform found no container for it
END_STATUSES = ("succeeded", "failed", "timed_out", "stopped", "lost")


def new_sandbox_id() -> str:
    return secrets.token_hex(6)


class Sandbox(Sealed, LaunchedMixin, TimestampMixin, Base):
    __tablename__ = "sandbox"
    # what its job token speaks for, as whom (sandbox/tokens.py), and what it runs
    # and which container it is: exec, forwards and stops act on `container_id`, so one
    # pointed in SQL at another sandbox's (an ML job's) container would exec into that
    __sealed__ = ("id", "tenant_id", "tenant", "launcher_id", "launcher", "segment", "image",
                  "command", "datasets", "purpose", "network", "mounts", "interactive",
                  "container_id")  # fmt: skip

    id: Mapped[str] = mapped_column(String(12), primary_key=True, default=new_sandbox_id)
    launcher: Mapped[str] = mapped_column(String(64))
    segment: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    image: Mapped[str] = mapped_column(String(128))
    image_digest: Mapped[str] = mapped_column(String(80))
    command: Mapped[list[str]] = mapped_column(JSON)
    datasets: Mapped[list[str]] = mapped_column(JSON, default=list)
    purpose: Mapped[str | None] = mapped_column(String(32), nullable=True)
    network: Mapped[str] = mapped_column(String(16))
    limits: Mapped[dict[str, object]] = mapped_column(JSON)
    mounts: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)
    interactive: Mapped[bool] = mapped_column(Boolean, default=False)
    # Which installation (database) owns its container; see Settings.instance.
    instance: Mapped[str] = mapped_column(String(16), index=True)
    container_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # The process that watches it (sandbox/liveness.py) and when it last said so.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    oom_killed: Mapped[bool] = mapped_column(Boolean, default=False)
    timed_out: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def actor_name(self) -> str:
        return f"job-{self.id}"


class SandboxSession(TimestampMixin, Base):
    """One person's use of one sandbox: its run or shell (the launcher), or one exec. What it
    cost, never what was typed: wall time, CPU-seconds (sampled while it runs; for a run or a
    shell, the whole sandbox's), commands started."""

    __tablename__ = "sandbox_session"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    sandbox_id: Mapped[str] = mapped_column(ForeignKey("sandbox.id"), index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    segment: Mapped[str] = mapped_column(String(32))
    person: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # run | shell | exec
    commands: Mapped[int] = mapped_column(Integer, default=1)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    wall_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    cpu_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # host:port destinations its egress proxy let through or refused (a run's or shell's)
    egress: Mapped[list[str]] = mapped_column(JSON, default=list)


class JobToken(Sealed, TimestampMixin, Base):
    __tablename__ = "job_token"
    __sealed__ = ("id", "sandbox_id", "token_hash")  # a token moved to another sandbox: none

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    sandbox_id: Mapped[str] = mapped_column(ForeignKey("sandbox.id"), index=True)
    # Only a SHA-256 of the secret is stored; the secret exists only inside the sandbox.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
