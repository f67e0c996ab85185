"""audit: keyed chain (chain version and key id per event)

Existing events keep chain version 1 (unkeyed SHA-256) and verify as before; new events are
version 2 (HMAC-SHA256 under a chain key that is not in the database).

Revision ID: 0002_audit_keyed_chain
Revises: 0003_identity_lifecycle
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_audit_keyed_chain"
# Follows 0003 (identity landed first); 0004_masking follows this one.
down_revision: str | None = "0003_identity_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy of what may be a large table).
    op.add_column(
        "audit_event", sa.Column("chain_v", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column("audit_event", sa.Column("key_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_event", "key_id")
    op.drop_column("audit_event", "chain_v")
