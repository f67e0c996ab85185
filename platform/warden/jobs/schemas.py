"""Request and response bodies of /v1/jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from warden.db.rows import Mapping, RowOut, Strings

Kind = Literal["train", "infer", "eval"]
# torchrun processes in one sandbox; more than the CPUs given only adds contention.
MAX_NPROC = 8


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    step: str | None = Field(None, max_length=32, description="Default: the kind's only step")
    name: str | None = Field(None, max_length=64, description="Model name to register under")
    datasets: dict[str, str] = Field(
        default_factory=dict, max_length=8, description="Role → catalog dataset name"
    )
    purpose: str | None = Field(None, max_length=32, description="Default: by kind")
    params: dict[str, Any] = Field(default_factory=dict, max_length=64)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    model_in: Any = Field(
        None,
        description='Registry references: "NAME[@V][:FILE]", a list, or {role: ref | [refs]}',
    )
    command: list[str] | None = Field(
        None,
        max_length=64,
        description="Run this instead of `python -m warden_ml STEP --spec /out/spec.json --out"
        " /out` (the same rights apply)",
    )
    nproc: int = Field(
        1, ge=1, le=MAX_NPROC, description="train-domain only: data-parallel CPU processes"
    )
    timeout: int | None = Field(None, ge=1, description="Wall-clock limit in seconds")
    memory: str | None = Field(None, max_length=16)
    cpus: float | None = Field(None, gt=0)


class JobOut(RowOut):
    """A job as its viewer may see it: `last_line` (a failed workload's last line) only for
    whoever may read its log, as the workload may have printed data."""

    id: str
    kind: str
    step: str
    name: str
    state: str
    reason: str | None
    last_line: str | None = None
    launcher: str
    datasets: Strings
    purpose: str
    spec: Mapping
    model_in: Strings
    sandbox_id: str | None
    worker_id: str | None
    attempt: int
    model_id: str | None
    outputs: Strings
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def shown(cls, row: Any, *, with_output: bool) -> JobOut:
        out = cls.of(row)
        if not with_output:
            out.last_line = None
        return out

    @computed_field  # type: ignore[prop-decorator]
    @property
    def actor(self) -> str | None:
        """Who the job's reads are audited as."""
        return f"job-{self.sandbox_id}" if self.sandbox_id else None
