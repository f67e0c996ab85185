"""A real Warden for benchmarks: a data directory, `warden init`, people, data, and the API
served by uvicorn in its own process (so client and server don't share a GIL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.serving import bound_engine, serve_env, serve_process
from warden.api.background import free_port
from warden.config import Settings
from warden.core.filesystem import restrict_umask
from warden.db.session import make_sessionmaker, unit_of_work
from warden.identity.bootstrap import initialize
from warden.identity.service import Caller, create_principal, get_principal, get_tenant, issue_token
from warden.policy.changes import apply_change

PG_ADMIN_URL = os.environ.get(
    "WARDEN_TEST_POSTGRES_URL", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)


__all__ = ["free_port", "postgres_database", "prepare", "served"]


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"warden_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, query = PG_ADMIN_URL.partition("?")
    try:
        yield f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare(data_dir: Path, database_url: str | None) -> tuple[Settings, str]:
    """Initialise Warden and create alice (ml_engineer); returns settings and her token. Under
    the private umask every Warden process sets: `warden serve` refuses data others can read."""
    restrict_umask()
    settings = Settings(
        data_dir=data_dir, config_dir=data_dir / "config", database_url=database_url
    )
    done = initialize(settings)
    engine = bound_engine(settings)
    with unit_of_work(make_sessionmaker(engine)) as db:
        alice = create_principal(db, "alice", "person", get_tenant(db, "acme"))
        token = issue_token(db, alice)
        admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
        apply_change(db, admin, add=[("g", ("alice", "role:ml_engineer", "acme"))])
    engine.dispose()
    del done
    return settings, token


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    with serve_process(serve_env(settings)) as (_, url):
        yield url
