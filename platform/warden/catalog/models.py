"""Tables for datasets, their content-addressed versions and classified columns."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from warden.db.base import Base, IdMixin, TimestampMixin, utcnow


class Dataset(IdMixin, TimestampMixin, Base):
    __tablename__ = "dataset"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_dataset_tenant_name"),)

    name: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("principal.id"))
    description: Mapped[str] = mapped_column(Text, default="")
    # strictest of its columns' classes and of the classes of the datasets it derives from
    classification: Mapped[str] = mapped_column(String(16))
    allowed_purposes: Mapped[list[str]] = mapped_column(JSON)
    identifier_columns: Mapped[list[str]] = mapped_column(JSON)
    current_version: Mapped[str] = mapped_column(String(71))  # "sha256:<hex>"
    # names of the datasets (same tenant) this one was built from; their class flows down
    derived_from: Mapped[list[str]] = mapped_column(JSON, default=list)
    # keyed MAC of the fields above and of the columns (catalog/seal.py); null: never sealed
    seal: Mapped[str | None] = mapped_column(String(64), default=None)


class DatasetVersion(IdMixin, TimestampMixin, Base):
    __tablename__ = "dataset_version"
    __table_args__ = (UniqueConstraint("dataset_id", "digest", name="uq_dataset_version_digest"),)

    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset.id"), index=True)
    digest: Mapped[str] = mapped_column(String(71))
    # Path relative to the data directory's datasets folder, never taken from a caller.
    path: Mapped[str] = mapped_column(String(255))
    row_count: Mapped[int] = mapped_column(BigInteger)
    byte_size: Mapped[int] = mapped_column(BigInteger)
    # The Iceberg snapshot this version is (catalog/tables.py) and the table metadata file
    # written with it; null for a version registered before datasets were Iceberg tables.
    snapshot_id: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)
    table_metadata: Mapped[str | None] = mapped_column(String(1000), default=None)
    # keyed MAC of the fields above (catalog/seal.py); null: never sealed
    seal: Mapped[str | None] = mapped_column(String(64), default=None)


class DatasetColumn(IdMixin, Base):
    __tablename__ = "dataset_column"
    __table_args__ = (UniqueConstraint("dataset_id", "name", name="uq_dataset_column_name"),)

    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    dtype: Mapped[str] = mapped_column(String(64))
    classification: Mapped[str] = mapped_column(String(16))  # public | internal | pii
    position: Mapped[int] = mapped_column(Integer)
    # the entity an identifier column identifies (user, pin, board…); null for other columns
    entity: Mapped[str | None] = mapped_column(String(32), default=None)


class MaskKeyVersion(IdMixin, TimestampMixin, Base):
    """A tenant's mask key version and the time from which reads use it. Only the version is
    stored: the key itself is derived from the master key (see warden.gateway.keys)."""

    __tablename__ = "mask_key_version"
    __table_args__ = (
        UniqueConstraint("tenant_id", "version", name="uq_mask_key_version_tenant_version"),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")


class DeploymentKey(Base):
    """A keyed fingerprint of a key every host of the deployment must hold, never the key
    (today one row, `mask`: the master mask key; see warden.gateway.keys.fingerprint)."""

    __tablename__ = "deployment_key"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# pyiceberg's SQL catalog keeps its tables in Warden's database (catalog/tables.py). They are
# declared here, as pyiceberg's `SqlCatalogBaseTable` declares them (v1 schema), so the
# migration creates them and the drift test watches them; pyiceberg never creates tables.


class IcebergTable(Base):
    __tablename__ = "iceberg_tables"

    catalog_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    table_namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    metadata_location: Mapped[str | None] = mapped_column(String(1000))
    previous_metadata_location: Mapped[str | None] = mapped_column(String(1000))
    iceberg_type: Mapped[str | None] = mapped_column(String(5))


class IcebergNamespaceProperty(Base):
    __tablename__ = "iceberg_namespace_properties"

    catalog_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    property_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    property_value: Mapped[str] = mapped_column(String(1000))
