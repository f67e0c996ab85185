"""`serve --workers N` warns when N processes could ask PostgreSQL for more connections than it
allows (each keeps a pool and opens more under load: "too many clients" would fail reads)."""

from __future__ import annotations

from sqlalchemy import Engine, text

from warden.db.session import (
    AUDIT_CONNECTIONS,
    LOOP_CONNECTIONS,
    POOL_OVERFLOW,
    POOL_SIZE,
    connection_shortfall,
)


def test_workers_that_fit_pass_and_too_many_are_named(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        assert connection_shortfall(engine, 64) is None  # SQLite: no connections to count
        return
    with engine.connect() as conn:
        allowed = int(conn.execute(text("SHOW max_connections")).scalar_one())
        reserved = int(conn.execute(text("SHOW superuser_reserved_connections")).scalar_one())
    per_process = POOL_SIZE + POOL_OVERFLOW + LOOP_CONNECTIONS + AUDIT_CONNECTIONS
    fits = (allowed - reserved) // per_process
    if fits >= 1:
        assert connection_shortfall(engine, fits) is None
    said = connection_shortfall(engine, fits + 1)
    assert said is not None
    assert f"up to {(fits + 1) * per_process} PostgreSQL connections" in said
    assert "raise max_connections or run fewer workers" in said
