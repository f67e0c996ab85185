"""A workspace: one row per named tree; the files live under the data dir (see service.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from warden.db.base import Base, IdMixin, TimestampMixin
from warden.db.sealed import Sealed


class Workspace(Sealed, IdMixin, TimestampMixin, Base):
    __tablename__ = "workspace"
    # whose it is and who may mount it (db/sealed.py): re-owned or shared in SQL, refused
    __sealed__ = ("id", "tenant_id", "tenant", "owner_id", "owner", "name", "shared")
    __table_args__ = (
        UniqueConstraint("tenant_id", "owner_id", "name", name="uq_workspace_tenant_owner_name"),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), index=True)
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    # Shared with the owner's tenant (people there who may use app-dev sandboxes).
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    # As of the last upload (a sandbox may have changed the tree since).
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    byte_size: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
