"""reviewed changes: proposals that widen access, their reviews; principal owner and creator;
token issuer

Revision ID: 0005_reviewed_changes
Revises: 0004_masking
Create Date: 2026-12-02 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_reviewed_changes"
down_revision: str | None = "0004_masking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, no foreign key (no batch copy): SQLite cannot drop a table that others
    # reference, and adding a constraint there means copying principal. Principals are never
    # deleted, so these ids always name one.
    for table, column in (
        ("principal", "owner_id"),
        ("principal", "created_by_id"),
        ("api_token", "issued_by_id"),
    ):
        op.add_column(table, sa.Column(column, sa.String(length=32), nullable=True))

    op.create_table(
        "reviewed_change",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("widening", sa.JSON(), nullable=False),
        sa.Column("beneficiary_ids", sa.JSON(), nullable=False),
        sa.Column("proposer_id", sa.String(length=32), nullable=False),
        sa.Column("proposer", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pending_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("break_glass", sa.Boolean(), nullable=False),
        sa.Column("needs_review", sa.Boolean(), nullable=False),
        sa.Column("signed_off_by", sa.String(length=64), nullable=True),
        sa.Column("signed_off_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["proposer_id"], ["principal.id"], name=op.f("fk_reviewed_change_proposer_id_principal")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_reviewed_change_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviewed_change")),
    )
    with op.batch_alter_table("reviewed_change", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reviewed_change_proposer_id"), ["proposer_id"], unique=False
        )
        batch_op.create_index(
            "ix_reviewed_change_tenant_state", ["tenant_id", "state"], unique=False
        )

    op.create_table(
        "change_review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.String(length=32), nullable=False),
        sa.Column("reviewer_id", sa.String(length=32), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["change_id"],
            ["reviewed_change.id"],
            name=op.f("fk_change_review_change_id_reviewed_change"),
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["principal.id"], name=op.f("fk_change_review_reviewer_id_principal")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_review")),
        sa.UniqueConstraint("change_id", "reviewer_id", name="uq_change_review_change_reviewer"),
    )
    with op.batch_alter_table("change_review", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_change_review_change_id"), ["change_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("change_review", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_change_review_change_id"))
    op.drop_table("change_review")
    with op.batch_alter_table("reviewed_change", schema=None) as batch_op:
        batch_op.drop_index("ix_reviewed_change_tenant_state")
        batch_op.drop_index(batch_op.f("ix_reviewed_change_proposer_id"))
    op.drop_table("reviewed_change")
    for table, column in (
        ("api_token", "issued_by_id"),
        ("principal", "created_by_id"),
        ("principal", "owner_id"),
    ):
        op.drop_column(table, column)
