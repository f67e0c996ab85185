"""experiments and the serving default (online serving, A/B, cutover, rollback)

Revision ID: 0008o_experiments
Revises: 0008i_iceberg
Create Date: 2026-12-02 15:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008o_experiments"
down_revision: str | None = "0008i_iceberg"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "experiment",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("control_id", sa.String(length=12), nullable=False),
        sa.Column("challenger_id", sa.String(length=12), nullable=False),
        sa.Column("shadow_id", sa.String(length=12), nullable=True),
        sa.Column("split", sa.Float(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_experiment_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["control_id"], ["model.id"], name=op.f("fk_experiment_control_id_model")
        ),
        sa.ForeignKeyConstraint(
            ["challenger_id"], ["model.id"], name=op.f("fk_experiment_challenger_id_model")
        ),
        sa.ForeignKeyConstraint(
            ["shadow_id"], ["model.id"], name=op.f("fk_experiment_shadow_id_model")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_experiment_tenant_name"),
    )
    op.create_index(op.f("ix_experiment_tenant_id"), "experiment", ["tenant_id"], unique=False)
    op.create_table(
        "serving_default",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=12), nullable=False),
        sa.Column("previous_id", sa.String(length=12), nullable=True),
        sa.Column("experiment_id", sa.String(length=32), nullable=True),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_serving_default_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["model.id"], name=op.f("fk_serving_default_model_id_model")
        ),
        sa.ForeignKeyConstraint(
            ["previous_id"], ["model.id"], name=op.f("fk_serving_default_previous_id_model")
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_serving_default_experiment_id_experiment"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serving_default")),
    )
    op.create_index(
        op.f("ix_serving_default_tenant_id"), "serving_default", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_serving_default_tenant_id"), table_name="serving_default")
    op.drop_table("serving_default")
    op.drop_index(op.f("ix_experiment_tenant_id"), table_name="experiment")
    op.drop_table("experiment")
