"""policy seal: the stored rule set's keyed sum and its seal (warden.policy.seal); keyed token
hashes (warden.identity.token_keys); review seals (warden.access.duties.review_seal)

Revision ID: 0009_policy_seal
Revises: 0008r_deployment_keys
Create Date: 2026-12-03 10:30:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

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
    # Reviews written before carry no seal and no longer count: a pending request or change
    # approved in part before the upgrade needs those approvals again.
    for table in ("access_review", "change_review"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("seal", sa.String(length=64), nullable=True))
    with op.batch_alter_table("api_token") as batch:
        batch.add_column(sa.Column("seal", sa.String(length=64), nullable=True))
    # Token hashes are keyed from now on. With no token stored yet there is nothing to rekey:
    # say so; otherwise an operator rekeys the stored ones once (`warden data rekey-tokens`).
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT id FROM api_token LIMIT 1")).first() is None:
        marker = sa.table(
            "deployment_key",
            sa.column("name", sa.String),
            sa.column("fingerprint", sa.String),
            sa.column("recorded_by", sa.String),
            sa.column("recorded_at", sa.DateTime(timezone=True)),
        )
        op.bulk_insert(
            marker,
            [
                {
                    "name": "token_hashes",
                    "fingerprint": "keyed-v1",
                    "recorded_by": "migration 0009_policy_seal",
                    "recorded_at": datetime.now(UTC),
                }
            ],
        )


def downgrade() -> None:
    op.execute("DELETE FROM deployment_key WHERE name = 'token_hashes'")
    with op.batch_alter_table("api_token") as batch:
        batch.drop_column("seal")
    for table in ("access_review", "change_review"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("seal")
    with op.batch_alter_table("policy_state") as batch:
        batch.drop_column("seal")
        batch.drop_column("rules_sum")
