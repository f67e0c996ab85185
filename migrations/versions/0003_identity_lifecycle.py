"""identity lifecycle: the installation tenant, who revoked a token and when it was last used,
no token without expiry

Revision ID: 0003_identity_lifecycle
Revises: 0001
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0003_identity_lifecycle"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tokens issued before lifetimes existed never expired; they get this long to be replaced.
LEGACY_TOKEN_GRACE = timedelta(days=30)


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy): SQLite cannot drop a table others reference.
    op.add_column(
        "tenant", sa.Column("installation", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("api_token", sa.Column("revoked_by", sa.String(length=64), nullable=True))
    op.add_column("api_token", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    tenant = sa.table(
        "tenant",
        sa.column("id", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("installation", sa.Boolean()),
    )
    conn = op.get_bind()
    # An existing installation's first tenant is the one `warden init` made.
    first = conn.execute(
        sa.select(tenant.c.id).order_by(tenant.c.created_at, tenant.c.id).limit(1)
    ).scalar()
    if first is not None:
        conn.execute(tenant.update().where(tenant.c.id == first).values(installation=True))
    token = sa.table("api_token", sa.column("expires_at", sa.DateTime(timezone=True)))
    op.execute(
        token.update()
        .where(token.c.expires_at.is_(None))
        .values(expires_at=datetime.now(UTC) + LEGACY_TOKEN_GRACE)
    )


def downgrade() -> None:
    op.drop_column("api_token", "last_used_at")
    op.drop_column("api_token", "revoked_by")
    op.drop_column("tenant", "installation")
