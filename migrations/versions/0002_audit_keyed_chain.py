"""audit: keyed chain (chain version and key id per event)

Existing events keep chain version 1 (unkeyed SHA-256) and verify as before; new events are
version 2 (HMAC-SHA256 under a chain key that is not in the database).

Revision ID: 0002_audit_keyed_chain
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_audit_keyed_chain"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_v", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_column("key_id")
        batch_op.drop_column("chain_v")
