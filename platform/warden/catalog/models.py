"""Tables for datasets, their content-addressed versions and classified columns."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from warden.db.base import Base, IdMixin, TimestampMixin


class Dataset(IdMixin, TimestampMixin, Base):
    __tablename__ = "dataset"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_dataset_tenant_name"),)

    name: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("principal.id"))
    description: Mapped[str] = mapped_column(Text, default="")
    classification: Mapped[str] = mapped_column(String(16))  # strictest column class
    allowed_purposes: Mapped[list[str]] = mapped_column(JSON)
    identifier_columns: Mapped[list[str]] = mapped_column(JSON)
    current_version: Mapped[str] = mapped_column(String(71))  # "sha256:<hex>"


class DatasetVersion(IdMixin, TimestampMixin, Base):
    __tablename__ = "dataset_version"
    __table_args__ = (UniqueConstraint("dataset_id", "digest", name="uq_dataset_version_digest"),)

    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset.id"), index=True)
    digest: Mapped[str] = mapped_column(String(71))
    # Path relative to the data directory's datasets folder, never taken from a caller.
    path: Mapped[str] = mapped_column(String(255))
    row_count: Mapped[int] = mapped_column(BigInteger)
    byte_size: Mapped[int] = mapped_column(BigInteger)


class DatasetColumn(IdMixin, Base):
    __tablename__ = "dataset_column"
    __table_args__ = (UniqueConstraint("dataset_id", "name", name="uq_dataset_column_name"),)

    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    dtype: Mapped[str] = mapped_column(String(64))
    classification: Mapped[str] = mapped_column(String(16))  # public | internal | pii
    position: Mapped[int] = mapped_column(Integer)
