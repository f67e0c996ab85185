"""TEMPORARY: a throwaway SQLite database for the policy tests, built with create_all.

Warden's tests build schemas with `alembic upgrade head`; this helper stands in only until
the shared conftest provides database fixtures. Delete it then and use those fixtures.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from warden.db.base import Base
from warden.db.session import make_engine
from warden.policy import store


def temporary_policy_db(directory: Path) -> Engine:
    """A fresh SQLite file holding only the policy tables (casbin_rule, policy_state)."""
    engine = make_engine(f"sqlite:///{directory / 'policy.db'}")
    tables = [store.CasbinRule.__table__, store.PolicyState.__table__]
    Base.metadata.create_all(engine, tables=tables)
    return engine
