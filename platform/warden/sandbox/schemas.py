"""Request and response bodies of /v1/sandboxes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from warden.sandbox.models import Sandbox


class SandboxCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment: str = Field("ml", max_length=32)
    command: list[str] = Field(default_factory=list, max_length=256)
    datasets: list[str] = Field(default_factory=list, max_length=64)
    purpose: str | None = Field(None, max_length=32)
    timeout: int | None = Field(None, ge=1, description="Wall-clock limit in seconds")
    memory: str | None = Field(None, max_length=16, description="e.g. 512m, 4g")
    cpus: float | None = Field(None, gt=0)
    env: dict[str, str] = Field(default_factory=dict, max_length=32)
    interactive: bool = Field(False, description="A TTY for `warden sandbox shell` (app-dev)")


class SandboxOut(BaseModel):
    id: str
    job: str
    segment: str
    status: str
    launcher: str
    image: str
    image_digest: str
    command: list[str]
    datasets: list[str]
    purpose: str | None
    network: str
    limits: dict[str, Any]
    mounts: list[dict[str, Any]]
    interactive: bool
    container_id: str | None
    exit_code: int | None
    oom_killed: bool
    timed_out: bool
    reason: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def of(cls, row: Sandbox) -> SandboxOut:
        return cls(
            id=row.id,
            job=row.actor_name,
            segment=row.segment,
            status=row.status,
            launcher=row.launcher,
            image=row.image,
            image_digest=row.image_digest,
            command=list(row.command),
            datasets=list(row.datasets or []),
            purpose=row.purpose,
            network=row.network,
            limits=dict(row.limits or {}),
            mounts=list(row.mounts or []),
            interactive=row.interactive,
            container_id=row.container_id,
            exit_code=row.exit_code,
            oom_killed=row.oom_killed,
            timed_out=row.timed_out,
            reason=row.reason,
            created_at=row.created_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
        )
