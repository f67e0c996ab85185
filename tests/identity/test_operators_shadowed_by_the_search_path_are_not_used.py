"""Warden's PostgreSQL connections resolve operators and functions in `pg_catalog` first
(red team 21).

The attack (an insider of acme with SQL and DDL on the database, not the key files nor the
checkpoint folder): PostgreSQL resolves an unqualified operator or function along the search
path, and `pg_catalog` is searched first only where the path does not name it later. So the
insider creates a schema of their own with an `=` for text, and `ALTER DATABASE … SET
search_path = evil, pg_catalog, public`: every connection Warden opens from then on (a pool
recycled, a restart, a backend the insider terminated) compares text with the insider's
function.

1. Their `=` also matches the admin's token row to any token hash no row holds: the token
   lookup (`WHERE token_hash = …`) returns the admin's row for a made-up bearer token, whose
   seal is the admin's own and checks out. Anyone is the admin.
2. Their `=` never matches `actor = 'alice'`: an auditor's search for alice's events (the API
   and the console's) finds none, and `verify`, whose check for a log that is not a plain
   table calls `to_regclass`, is told what another function of theirs answers.

What must hold: a made-up token authenticates nobody, and the auditor finds alice's read. Every
connection puts `pg_catalog` first in its search path, and the token row a lookup returns must
hold the presented token's hash (one compare in Python, whatever the SQL answered).
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.sealed_rows import one, sql


@pytest.fixture
def postgres(warden: Any) -> Any:
    if not warden.settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite has no operators or functions SQL can create")
    return warden


def shadow_text_equality(w: Any, function_body: str) -> None:
    """The insider's `=` for text, first on the database's search path; Warden's next
    connections are new ones (a pool recycled, a restart)."""
    sql(w, "CREATE SCHEMA evil",
        "CREATE FUNCTION evil.eq(a text, b text) RETURNS boolean LANGUAGE sql STABLE AS"
        f" $$ SELECT {function_body} $$",
        "CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq)",
        "CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE sql AS"
        " $$ SELECT 'pg_class'::regclass $$")  # fmt: skip
    database = one(w, "SELECT current_database()")[0]
    sql(w, f'ALTER DATABASE "{database}" SET search_path = evil, pg_catalog, public')
    w.state.engine.dispose()


def test_a_made_up_token_is_not_the_admin(postgres: Any) -> None:
    w = postgres
    admin = one(w, "SELECT t.token_hash FROM api_token t JOIN principal p"
                   " ON p.id = t.principal_id WHERE p.name = 'admin'")[0]  # fmt: skip
    shadow_text_equality(
        w,
        "a OPERATOR(pg_catalog.=) b OR (a OPERATOR(pg_catalog.=) "
        f"'{admin}' AND NOT EXISTS (SELECT 1 FROM public.api_token t"
        " WHERE t.token_hash OPERATOR(pg_catalog.=) b))",
    )
    forged = {"authorization": "Bearer wdn_made-up-by-mallory"}
    answer = w.http.get("/v1/policy/rules", headers=forged)
    assert answer.status_code == 401, f"a made-up token read the rules as the admin: {answer.text}"


def test_an_auditor_finds_alices_read(postgres: Any) -> None:
    w = postgres
    read = w.read("alice", "engagements", purpose="training", columns=["action"], limit=3)
    assert read.status_code == 200, read.text
    shadow_text_equality(w, "a OPERATOR(pg_catalog.=) b AND b OPERATOR(pg_catalog.<>) 'alice'")
    found = w.audit_events(actor="alice", action="dataset.read")
    assert read.headers["x-warden-audit-event"] in {e["id"] for e in found}, (
        "alice's read is hidden from the auditor's search"
    )


def test_the_audit_group_writer_runs_none_of_the_insiders_functions(postgres: Any) -> None:
    """Red team 22: the audit log's group commits go over a connection of their own
    (audit/pg_group.py), opened past the pool and its connect hook, so it kept the database's
    search path: its `WHERE id = 1` ran the insider's `=` for integers inside every append's
    transaction, where it can do what Warden's own session may (say, create a temporary
    `audit_event` that takes the next inserts: a read served, its event gone at
    disconnect)."""
    w = postgres
    sql(w, "CREATE SCHEMA evil", "CREATE TABLE evil.calls (q text)")
    for kind in ("smallint", "integer", "bigint"):  # however the driver types a parameter
        sql(w, f"CREATE FUNCTION evil.eq(a integer, b {kind}) RETURNS boolean LANGUAGE plpgsql"
            " AS $$ BEGIN INSERT INTO evil.calls VALUES (current_query());"
            " RETURN a OPERATOR(pg_catalog.=) b; END $$",
            f"CREATE OPERATOR evil.= (LEFTARG = integer, RIGHTARG = {kind},"
            " FUNCTION = evil.eq)")  # fmt: skip
    database = one(w, "SELECT current_database()")[0]
    sql(w, f'ALTER DATABASE "{database}" SET search_path = evil, pg_catalog, public')
    w.state.engine.dispose()  # closes the group writer's connection too: the next one is new
    read = w.read("alice", "engagements", purpose="training", columns=["action"], limit=3)
    assert read.status_code == 200, read.text
    called = one(w, "SELECT count(*), min(q) FROM evil.calls")
    assert called[0] == 0, f"the insider's `=` ran in Warden's session: {called[1]}"
