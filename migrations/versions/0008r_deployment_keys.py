"""deployment keys: a keyed fingerprint of the master mask key, which every host must hold

Revision ID: 0008r_deployment_keys
Revises: 0008o_experiments
Create Date: 2026-12-02 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008r_deployment_keys"
down_revision: str | None = "0008o_experiments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Empty here: the key is not the migration's to know. `warden init` records it, else the
    # first `warden serve`/`worker` of a deployment that has masked nothing yet; one that has
    # already masked reads refuses to start until an operator records it
    # (`warden data record-mask-key`), see warden.gateway.keys.check_master_key.
    op.create_table(
        "deployment_key",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_deployment_key")),
    )


def downgrade() -> None:
    op.drop_table("deployment_key")
