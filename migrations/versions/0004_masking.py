"""masking: per-tenant mask key versions, column entities, dataset lineage (derived_from)

Revision ID: 0004_masking
Revises: 0003_identity_lifecycle
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_masking"
down_revision: str | None = "0002_audit_keyed_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mask_key_version",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_mask_key_version_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mask_key_version")),
        sa.UniqueConstraint("tenant_id", "version", name="uq_mask_key_version_tenant_version"),
    )
    with op.batch_alter_table("mask_key_version", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mask_key_version_tenant_id"), ["tenant_id"], unique=False
        )
    # A plain ADD COLUMN with a default (no table rebuild: SQLite cannot rebuild `dataset`
    # under the foreign keys that point at it once it holds rows).
    op.add_column(
        "dataset",
        sa.Column("derived_from", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    )
    with op.batch_alter_table("dataset_column", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entity", sa.String(length=32), nullable=True))
    _backfill_seeded_catalog()


# The seeded taste graph's id columns and lineage, for deployments seeded before this
# revision: `warden data seed` writes the same on a fresh install.
_ENTITIES = {
    "user_id": "user",
    "pin_id": "pin",
    "pin_a": "pin",
    "pin_b": "pin",
    "query_pin_id": "pin",
    "target_pin_id": "pin",
    "board_id": "board",
    "engagement_id": "engagement",
}


def _backfill_seeded_catalog() -> None:
    for column, entity in _ENTITIES.items():
        op.execute(
            sa.text("UPDATE dataset_column SET entity = :entity WHERE name = :column").bindparams(
                entity=entity, column=column
            )
        )
    op.execute(
        "UPDATE dataset SET derived_from = '[\"engagements\"]' WHERE name IN ('pin_pairs', 'gold')"
        " AND EXISTS (SELECT 1 FROM dataset e WHERE e.tenant_id = dataset.tenant_id"
        " AND e.name = 'engagements')"
    )
    # pin_pairs was registered public: it takes the class of what it is built from
    op.execute(
        "UPDATE dataset SET classification = 'pii' WHERE name IN ('pin_pairs', 'gold') AND"
        " EXISTS (SELECT 1 FROM dataset e WHERE e.tenant_id = dataset.tenant_id"
        " AND e.name = 'engagements' AND e.classification = 'pii')"
    )


def downgrade() -> None:
    with op.batch_alter_table("dataset_column", schema=None) as batch_op:
        batch_op.drop_column("entity")
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("derived_from")
    with op.batch_alter_table("mask_key_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mask_key_version_tenant_id"))
    op.drop_table("mask_key_version")
