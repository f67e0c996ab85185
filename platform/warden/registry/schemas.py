"""Response bodies of /v1/models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from warden.db.rows import Mapping, Records, RowOut, Strings


class ModelOut(RowOut):
    id: str
    name: str
    version: int
    ref: str
    job_id: str
    launcher: str
    kind: str
    step: str
    metrics: Mapping
    artifacts: Records
    reports: Strings
    lineage: Mapping
    created_at: datetime


class LineageOut(BaseModel):
    model: ModelOut
    # The chain back to the data: each ancestor's ref, job and lineage, nearest first.
    ancestors: list[ModelOut]
