"""change generation: one counter bumped by triggers on every change a governed read looks up

Revision ID: 0008_change_generation
Revises: 0007_workspaces
Create Date: 2026-12-02 15:10:00

See warden/db/generation.py for why. SQLite: AFTER triggers (one writer at a time). PostgreSQL:
deferred constraint triggers, so the counter's row lock is the last lock a transaction takes;
an UPDATE that changes nothing (a row lock taken as `SET x = x`) bumps nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_change_generation"
down_revision: str | None = "0007_workspaces"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every table whose rows a governed read caches (token → caller, dataset view, mask keys).
WATCHED = (
    "tenant",
    "principal",
    "api_token",
    "dataset",
    "dataset_version",
    "dataset_column",
    "mask_key_version",
)
BUMP = "UPDATE change_generation SET value = value + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "change_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_change_generation_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_generation")),
    )
    op.execute("INSERT INTO change_generation (id, value) VALUES (1, 1)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION warden_bump_generation() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
        for table in WATCHED:
            for event, when in (
                ("INSERT", ""),
                ("DELETE", ""),
                ("UPDATE", " WHEN (OLD::text IS DISTINCT FROM NEW::text)"),
            ):
                op.execute(
                    f"CREATE CONSTRAINT TRIGGER wg_{table}_{event.lower()} AFTER {event}"
                    f" ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW{when}"
                    " EXECUTE FUNCTION warden_bump_generation()"
                )
            # TRUNCATE has no row triggers, and constraint triggers are row triggers.
            op.execute(
                f"CREATE TRIGGER wg_{table}_truncate AFTER TRUNCATE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION warden_bump_generation()"
            )
    else:
        for table in WATCHED:
            for event in ("INSERT", "UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER wg_{table}_{event.lower()} AFTER {event} ON {table}"
                    f" FOR EACH ROW BEGIN {BUMP}; END"
                )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in WATCHED:
        events = ("insert", "update", "delete") + (("truncate",) if postgres else ())
        for event in events:
            op.execute(
                f"DROP TRIGGER IF EXISTS wg_{table}_{event}" + (f" ON {table}" if postgres else "")
            )
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS warden_bump_generation()")
    op.drop_table("change_generation")
