"""iceberg: a dataset version is an Iceberg snapshot; pyiceberg's SQL catalog tables

Revision ID: 0008i_iceberg
Revises: 0008_change_generation
Create Date: 2026-12-02 15:10:00

The catalog's two tables are pyiceberg's `SqlCatalogBaseTable` (v1 schema, with
`iceberg_type`), created here rather than by pyiceberg so that migrations stay the schema
(warden.catalog.models declares them; the drift test watches them). Versions registered
before keep a null snapshot and read their Parquet file as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008i_iceberg"
down_revision: str | None = "0008_change_generation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "iceberg_tables",
        sa.Column("catalog_name", sa.String(length=255), nullable=False),
        sa.Column("table_namespace", sa.String(length=255), nullable=False),
        sa.Column("table_name", sa.String(length=255), nullable=False),
        sa.Column("metadata_location", sa.String(length=1000), nullable=True),
        sa.Column("previous_metadata_location", sa.String(length=1000), nullable=True),
        sa.Column("iceberg_type", sa.String(length=5), nullable=True),
        sa.PrimaryKeyConstraint(
            "catalog_name", "table_namespace", "table_name", name=op.f("pk_iceberg_tables")
        ),
    )
    op.create_table(
        "iceberg_namespace_properties",
        sa.Column("catalog_name", sa.String(length=255), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("property_key", sa.String(length=255), nullable=False),
        sa.Column("property_value", sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint(
            "catalog_name",
            "namespace",
            "property_key",
            name=op.f("pk_iceberg_namespace_properties"),
        ),
    )
    with op.batch_alter_table("dataset_version") as batch:
        batch.add_column(sa.Column("snapshot_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("table_metadata", sa.String(length=1000), nullable=True))
        batch.create_index(batch.f("ix_dataset_version_snapshot_id"), ["snapshot_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dataset_version") as batch:
        batch.drop_index(batch.f("ix_dataset_version_snapshot_id"))
        batch.drop_column("table_metadata")
        batch.drop_column("snapshot_id")
    op.drop_table("iceberg_namespace_properties")
    op.drop_table("iceberg_tables")
