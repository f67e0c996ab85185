"""Tables for tenants, principals and hashed API tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from warden.db.base import Base, IdMixin, TimestampMixin
from warden.db.sealed import Sealed


class Tenant(Sealed, IdMixin, TimestampMixin, Base):
    __tablename__ = "tenant"
    __sealed__ = ("id", "name", "installation")

    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The tenant `warden init` created: its admins are the platform admins who create tenants.
    installation: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Principal(Sealed, IdMixin, TimestampMixin, Base):
    __tablename__ = "principal"
    __sealed__ = ("id", "name", "kind", "tenant_id", "disabled", "owner_id", "created_by_id")

    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "person" | "service"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), index=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The person answerable for a service account (required for those); who created it.
    # Approvals from principals the requester owns or created never count.
    # Principal ids with no foreign key (SQLite could add one only by copying this table);
    # principals are never deleted.
    owner_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_by_id: Mapped[str | None] = mapped_column(String(32), nullable=True)

    tenant: Mapped[Tenant] = relationship(lazy="raise")


class ApiToken(IdMixin, TimestampMixin, Base):
    __tablename__ = "api_token"

    principal_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), index=True)
    # Only a SHA-256 of the secret is stored; the secret is shown once at creation.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(64), default="")
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Who issued it (None: the bootstrap). A token someone else minted speaks for its issuer
    # as much as for its principal, so it never approves what its issuer asked for.
    issued_by_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # a principal id
    # A token minted for someone else (not their own service account) is refused until a
    # second person approves this reviewed change (access.changes, kind "token").
    pending_change_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # To the hour (identity.service.LAST_USED_RESOLUTION): one write per token per hour at most.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # identity.caller.token_seal over the columns above that decide whom it speaks for
    seal: Mapped[str | None] = mapped_column(String(64), nullable=True)
