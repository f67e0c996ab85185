"""policy seal: the stored rule set's keyed sum and its seal (warden.policy.seal)

Revision ID: 0009_policy_seal
Revises: 0008r_deployment_keys
Create Date: 2026-12-03 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_policy_seal"
down_revision: str | None = "0008r_deployment_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Empty here: the seal needs the audit chain key, which is not the migration's to know.
    # A deployment with rules stored before this revision is sealed once by an operator who
    # has checked them (`warden policy seal`, audited); until then every decision denies.
    with op.batch_alter_table("policy_state") as batch:
        batch.add_column(sa.Column("rules_sum", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("seal", sa.String(length=96), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("policy_state") as batch:
        batch.drop_column("seal")
        batch.drop_column("rules_sum")
