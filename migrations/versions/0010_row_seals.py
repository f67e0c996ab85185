"""row seals: a keyed MAC on each dataset's terms and each version (warden.catalog.seal) and on
the rows decisions trust: tenants, principals, sandboxes, jobs, models (warden.db.sealed); a
failed job's last line kept apart from its reason (warden.jobs.models.Job.last_line)

Revision ID: 0010_row_seals
Revises: 0009_policy_seal
Create Date: 2026-12-03 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_row_seals"
down_revision: str | None = "0009_policy_seal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SEALED = (
    "dataset", "dataset_version", "tenant", "principal", "sandbox", "job_token", "job", "model",
    "reviewed_change", "access_request", "access_grant", "experiment", "serving_default",
    "console_session", "webhook_delivery", "workspace", "access_setting",
)  # fmt: skip


def upgrade() -> None:
    # Empty here: the seal needs the audit chain key, which is not the migration's to know.
    # Rows stored before this revision count again once an operator who has checked them
    # seals them (`warden data seal`, audited); until then `serve` refuses to start.
    # Plain ADD COLUMN (no batch copy): SQLite cannot drop a table others reference.
    for table in SEALED:
        op.add_column(table, sa.Column("seal", sa.String(length=64), nullable=True))
    # Reasons written before keep the workload's last line in them; nothing splits them.
    op.add_column("job", sa.Column("last_line", sa.String(length=500), nullable=True))


def downgrade() -> None:
    op.drop_column("job", "last_line")
    for table in reversed(SEALED):
        op.drop_column(table, "seal")
