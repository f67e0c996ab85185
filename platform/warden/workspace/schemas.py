"""What the workspace API answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from warden.workspace.models import Workspace


class WorkspaceCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class WorkspaceShare(BaseModel):
    shared: bool = True


class WorkspaceOut(BaseModel):
    id: str
    name: str
    owner: str
    ref: str  # how others name it: OWNER/NAME
    shared: bool
    file_count: int
    byte_size: int
    created_at: datetime
    updated_at: datetime | None

    @classmethod
    def of(cls, row: Workspace) -> WorkspaceOut:
        return cls(
            id=row.id,
            name=row.name,
            owner=row.owner,
            ref=f"{row.owner}/{row.name}",
            shared=row.shared,
            file_count=row.file_count,
            byte_size=row.byte_size,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
