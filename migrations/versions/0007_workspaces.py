"""workspaces: a person's named project trees for app-dev sandboxes; sandbox sessions

Revision ID: 0007_workspaces
Revises: 0006_console_sessions
Create Date: 2026-12-02 12:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_workspaces"
down_revision: str | None = "0006_console_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workspace",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["principal.id"], name=op.f("fk_workspace_owner_id_principal")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_workspace_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace")),
        sa.UniqueConstraint("tenant_id", "owner_id", "name", name="uq_workspace_tenant_owner_name"),
    )
    op.create_index(op.f("ix_workspace_owner_id"), "workspace", ["owner_id"], unique=False)
    op.create_index(op.f("ix_workspace_tenant_id"), "workspace", ["tenant_id"], unique=False)

    op.create_table(
        "sandbox_session",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sandbox_id", sa.String(length=12), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.String(length=32), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("commands", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("wall_s", sa.Float(), nullable=True),
        sa.Column("cpu_s", sa.Float(), nullable=True),
        sa.Column("egress", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sandbox_id"], ["sandbox.id"], name=op.f("fk_sandbox_session_sandbox_id_sandbox")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_session")),
    )
    for column in ("person", "sandbox_id", "tenant"):
        op.create_index(
            op.f(f"ix_sandbox_session_{column}"), "sandbox_session", [column], unique=False
        )


def downgrade() -> None:
    for column in ("person", "sandbox_id", "tenant"):
        op.drop_index(op.f(f"ix_sandbox_session_{column}"), table_name="sandbox_session")
    op.drop_table("sandbox_session")
    op.drop_index(op.f("ix_workspace_tenant_id"), table_name="workspace")
    op.drop_index(op.f("ix_workspace_owner_id"), table_name="workspace")
    op.drop_table("workspace")
