"""catalog seal: a keyed MAC on each dataset's terms and on each version (warden.catalog.seal);
a failed job's last line kept apart from its reason (warden.jobs.models.Job.last_line)

Revision ID: 0010_catalog_seal
Revises: 0009_policy_seal
Create Date: 2026-12-03 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_catalog_seal"
down_revision: str | None = "0009_policy_seal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Empty here: the seal needs the audit chain key, which is not the migration's to know.
    # Datasets registered before this revision are read again once an operator who has
    # checked them seals them (`warden data seal-catalog`, audited); until then reads refuse.
    for table in ("dataset", "dataset_version"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("seal", sa.String(length=64), nullable=True))
    # Reasons written before keep the workload's last line in them; nothing splits them.
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("last_line", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.drop_column("last_line")
    for table in ("dataset_version", "dataset"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("seal")
