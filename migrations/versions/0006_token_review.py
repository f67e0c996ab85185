"""a token minted for someone else works only once a second person approves it

Revision ID: 0006_token_review
Revises: 0005_reviewed_changes
Create Date: 2026-12-02 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_token_review"
down_revision: str | None = "0005_reviewed_changes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The reviewed change that must be applied before the token authenticates (None: usable).
    op.add_column("api_token", sa.Column("pending_change_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_token") as batch:
        batch.drop_column("pending_change_id")
