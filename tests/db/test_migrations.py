"""Migrations are the schema: upgrade head builds it, no autogenerate drift, downgrade works."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from warden.db.migrate import downgrade, upgrade
from warden.db.models import Base
from warden.db.session import make_engine


def test_upgrade_head_builds_every_table(engine) -> None:  # type: ignore[no-untyped-def]
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_autogenerate_finds_no_drift(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_downgrade_to_base_and_back(db_url: str) -> None:
    downgrade(db_url, "base")
    engine = make_engine(db_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_constraint_names_follow_the_naming_convention(engine) -> None:  # type: ignore[no-untyped-def]
    inspector = inspect(engine)
    for table in Base.metadata.tables:
        pk = inspector.get_pk_constraint(table)
        if engine.dialect.name == "postgresql":
            assert pk["name"] == f"pk_{table}"
