"""Migration 0003 on an installation that predates token lifetimes: its first tenant becomes the
installation tenant, and its never-expiring tokens get an expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from warden.db.migrate import downgrade, upgrade
from warden.db.session import make_engine


def test_upgrade_marks_the_first_tenant_and_expires_legacy_tokens(db_url: str) -> None:
    downgrade(db_url, "0001")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            for i, name in enumerate(["acme", "globex"]):
                conn.execute(
                    text("INSERT INTO tenant (id, name, created_at) VALUES (:id, :n, :at)"),
                    {"id": f"t{i}", "n": name, "at": datetime(2026, 1, 1 + i, tzinfo=UTC)},
                )
            conn.execute(
                text(
                    "INSERT INTO principal (id, name, kind, tenant_id, disabled, created_at)"
                    " VALUES ('p0', 'admin', 'person', 't0', false, :at)"
                ),
                {"at": datetime(2026, 1, 1, tzinfo=UTC)},
            )
            conn.execute(
                text(
                    "INSERT INTO api_token (id, principal_id, token_hash, label, created_at)"
                    " VALUES ('k0', 'p0', :h, 'init', :at)"
                ),
                {"h": "0" * 64, "at": datetime(2026, 1, 1, tzinfo=UTC)},
            )
    finally:
        engine.dispose()
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            marked = dict(conn.execute(text("SELECT name, installation FROM tenant")).all())
            (expires,) = conn.execute(text("SELECT expires_at FROM api_token")).one()
    finally:
        engine.dispose()
    assert {k: bool(v) for k, v in marked.items()} == {"acme": True, "globex": False}
    if isinstance(expires, str):
        expires = datetime.fromisoformat(expires)
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)


def test_downgrade_with_data_and_back(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO tenant (id, name, created_at) VALUES ('t0', 'acme', :at)"),
                {"at": datetime(2026, 1, 1, tzinfo=UTC)},
            )
            conn.execute(
                text(
                    "INSERT INTO principal (id, name, kind, tenant_id, disabled, created_at)"
                    " VALUES ('p0', 'admin', 'person', 't0', false, :at)"
                ),
                {"at": datetime(2026, 1, 1, tzinfo=UTC)},
            )
    finally:
        engine.dispose()
    downgrade(db_url, "0001")
    upgrade(db_url)
