"""Response bodies of /v1/models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from warden.registry.models import Model


class ModelOut(BaseModel):
    id: str
    name: str
    version: int
    ref: str
    job_id: str
    launcher: str
    kind: str
    step: str
    metrics: dict[str, Any]
    artifacts: list[dict[str, Any]]
    reports: list[str]
    lineage: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: Model) -> ModelOut:
        return cls(
            id=row.id,
            name=row.name,
            version=row.version,
            ref=row.ref,
            job_id=row.job_id,
            launcher=row.launcher,
            kind=row.kind,
            step=row.step,
            metrics=dict(row.metrics),
            artifacts=list(row.artifacts),
            reports=list(row.reports),
            lineage=dict(row.lineage),
            created_at=row.created_at,
        )


class LineageOut(BaseModel):
    model: ModelOut
    # The chain back to the data: each ancestor's ref, job and lineage, nearest first.
    ancestors: list[ModelOut]
