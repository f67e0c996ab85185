"""Request and response bodies of /v1/sandboxes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from warden.db.rows import Mapping, Records, RowOut, Strings


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
    workspace: str | None = Field(
        None, max_length=129, description="A workspace (NAME or OWNER/NAME), app-dev only"
    )


class SandboxExec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(min_length=1, max_length=256)


class SandboxOut(RowOut):
    id: str
    job: str = Field(validation_alias="actor_name")
    segment: str
    status: str
    launcher: str
    image: str
    image_digest: str
    command: Strings
    datasets: Strings
    purpose: str | None
    network: str
    limits: Mapping
    mounts: Records
    interactive: bool
    container_id: str | None
    exit_code: int | None
    oom_killed: bool
    timed_out: bool
    reason: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
