"""console sessions: an API token exchanged for a server-side browser session

Revision ID: 0006_console_sessions
Revises: 0006_token_review
Create Date: 2026-12-02 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_console_sessions"
down_revision: str | None = "0006_token_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.String(length=32), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principal.id"],
            name=op.f("fk_console_session_principal_id_principal"),
        ),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_token.id"], name=op.f("fk_console_session_token_id_api_token")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_session")),
    )
    op.create_index(
        op.f("ix_console_session_principal_id"), "console_session", ["principal_id"], unique=False
    )
    op.create_index(
        op.f("ix_console_session_token_id"), "console_session", ["token_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_console_session_token_id"), table_name="console_session")
    op.drop_index(op.f("ix_console_session_principal_id"), table_name="console_session")
    op.drop_table("console_session")
