"""A constraint on the log's table that makes some appends fail is reported by `verify`
(red team 21).

The attack (an insider of acme with SQL and DDL on the database, not the key files nor the
checkpoint folder): a CHECK constraint on `audit_event` (PostgreSQL: `ALTER TABLE … ADD
CONSTRAINT`; SQLite: the table rebuilt with one) that no event of theirs denied may pass. Every
read they try and are refused is answered 503 instead of 403, and no event of it is ever
written, the edge's refusal record included: they probe what they may not read without a
trace, and `warden audit verify` says the chain is whole, since every event that exists is.
A unique or partial index, a foreign key, an index over an expression that raises, or a NOT
NULL on a column Warden leaves empty does the same.

What must hold: `verify` reports the log's tables whenever they carry anything Warden's own do
not (`not_a_table`), as it does a view, a trigger, a rule or row security.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sealed_rows import one, sql

EATS_MALLORYS_REFUSALS = "CHECK (decision <> 'deny' OR actor <> 'mallory')"


def _add_check(w: Any) -> None:
    if w.settings.database_url.startswith("postgresql"):
        sql(w, f"ALTER TABLE audit_event ADD CONSTRAINT tidy {EATS_MALLORYS_REFUSALS}")
        return
    create = one(w, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'audit_event'")
    listed = "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_event'"
    indexes = [r[0] for r in _all(w, listed + " AND sql IS NOT NULL")]
    rebuilt = create[0].rstrip().rstrip(")") + f", {EATS_MALLORYS_REFUSALS})"
    sql(w, "ALTER TABLE audit_event RENAME TO audit_event_old",
        rebuilt, "INSERT INTO audit_event SELECT * FROM audit_event_old",
        "DROP TABLE audit_event_old", *indexes)  # fmt: skip


def _all(w: Any, statement: str) -> list[Any]:
    from sqlalchemy import text

    with w.state.engine.connect() as conn:
        return list(conn.execute(text(statement)))


@pytest.mark.parametrize("narrowing", ["check", "expression_index"])
def test_a_constraint_that_eats_refusals_is_reported(warden: Any, narrowing: str) -> None:
    postgres = warden.settings.database_url.startswith("postgresql")
    if narrowing == "check":
        _add_check(warden)
    elif postgres:  # an index over an expression that fails for mallory's refusals
        sql(warden, "CREATE INDEX tidy ON audit_event ((1 / CASE WHEN actor = 'mallory'"
            " AND decision = 'deny' THEN 0 ELSE 1 END))")  # fmt: skip
    else:
        pytest.skip("SQLite divides by zero into NULL: no expression of an index fails")
    refused = warden.read("mallory", "engagements", purpose="training", limit=3)
    assert refused.status_code == 503, refused.text  # the refusal's own event failed
    assert not [e for e in warden.audit_events() if e["actor"] == "mallory"]
    answer = warden.http.post("/v1/audit/verify", headers=warden.as_("admin")).json()
    kinds = [f["kind"] for f in answer["findings"]]
    assert "not_a_table" in kinds and not answer["ok"], (
        f"verify found nothing of a {narrowing} that eats mallory's refusals: {kinds}"
    )


def test_a_count_narrowed_to_32_bits_is_reported(warden: Any) -> None:
    """A `bigint` column made `integer` (the bytes of a read): every read past 2 GiB would fail
    its own event, so verify must say so before one does."""
    if not warden.settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite keeps any integer in up to 8 bytes, whatever its column says")
    sql(warden, "ALTER TABLE audit_event ALTER COLUMN bytes TYPE integer")
    answer = warden.http.post("/v1/audit/verify", headers=warden.as_("admin")).json()
    found = [f for f in answer["findings"] if f["kind"] == "not_a_table"]
    assert found and "bytes narrowed" in found[0]["detail"], answer["findings"]
