"""The model table: one registered result (model, inference output, report) per finished job."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from warden.db.base import Base, TimestampMixin
from warden.db.sealed import Sealed


def new_model_id() -> str:
    return secrets.token_hex(6)


class Model(Sealed, TimestampMixin, Base):
    __tablename__ = "model"
    # who may use it (its lineage) and the files its routes serve
    __sealed__ = ("id", "tenant_id", "tenant", "name", "version", "job_id", "launcher", "kind",
                  "step", "artifacts", "reports", "lineage")  # fmt: skip
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", "version", name="uq_model_tenant_name_version"),
    )

    id: Mapped[str] = mapped_column(String(12), primary_key=True, default=new_model_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str] = mapped_column(ForeignKey("job.id"), index=True)
    launcher: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    step: Mapped[str] = mapped_column(String(32))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # [{"name", "path" (relative to the data directory), "bytes", "sha256"}]
    artifacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reports: Mapped[list[str]] = mapped_column(JSON, default=list)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"
