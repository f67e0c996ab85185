"""A policy row filter's value is read as the column's type strictly, or the read is refused
(403, audited): never as another value than the rule says.

Red team 16a: a row filter's value is text in the rule (`p2, erin, acme, flags, active, eq,
yes`); the planner read every value of a Boolean column but `true` as false, so a filter an
auditor reads as "only active rows" gave erin the inactive ones, and `1` meant false too. A
value an integer column could not parse (`1.0`) failed the read with a 500 that left no
audit event of the attempt."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select

from tests.serving import add_rules_as_admin, register_as_admin
from warden.audit.models import AuditEvent
from warden.catalog.service import ColumnInfo


def _flags(warden: Any, row_filter: tuple[str, str, str]) -> None:
    """A dataset `flags` (id, active) that erin reads whole for analytics, under one filter."""
    source = Path(warden.state.settings.data_dir) / "src-flags.parquet"
    pl.DataFrame({"id": [1, 2, 3, 4], "active": [True, False, True, False]}).write_parquet(source)
    column, op, value = row_filter
    columns = [ColumnInfo("id", "Int64", "internal"), ColumnInfo("active", "Boolean", "public")]
    register_as_admin(warden, "flags", source, columns, allowed_purposes=["analytics"])
    add_rules_as_admin(
        warden,
        [
            ("p", ("erin", "acme", "flags", "*", "analytics", "read", "allow", "", "")),
            ("p2", ("erin", "acme", "flags", column, op, value)),
        ],
    )


def _last_read(warden: Any) -> AuditEvent:
    with warden.state.sessions() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.action == "dataset.read"))
        return list(rows)[-1]


@pytest.mark.parametrize(
    "row_filter",
    [
        ("active", "eq", "yes"),
        ("active", "eq", "1"),
        ("active", "in", "true|on"),
        ("id", "eq", "1.0"),
        ("id", "in", "1|two"),
    ],
)
def test_a_row_filter_value_the_column_cannot_hold_is_refused(
    warden: Any, row_filter: tuple[str, str, str]
) -> None:
    _flags(warden, row_filter)
    r = warden.read("erin", "flags", purpose="analytics")
    assert r.status_code == 403, (r.status_code, r.text[:200])
    assert r.json()["error"] == "Forbidden"
    event = _last_read(warden)
    assert (event.decision, event.actor, event.dataset) == ("deny", "erin", "flags")
    assert "row filter" in (event.reason or "")


@pytest.mark.parametrize(
    ("row_filter", "active"),
    [(("active", "eq", "true"), {True}), (("active", "eq", "FALSE"), {False})],
)
def test_a_boolean_row_filter_reads_what_it_says(
    warden: Any, row_filter: tuple[str, str, str], active: set[bool]
) -> None:
    _flags(warden, row_filter)
    r = warden.read("erin", "flags", purpose="analytics")
    assert r.status_code == 200, r.text
    assert set(pl.read_ipc_stream(io.BytesIO(r.content))["active"]) == active
