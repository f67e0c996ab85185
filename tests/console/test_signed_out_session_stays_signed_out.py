"""A console session signed out stays signed out whatever its row says (red team 14,
finding 9, medium).

Attack (write access to the database, and the cookie of a session its owner signed out of:
a shared laptop, a proxy's log): `UPDATE console_session SET ended_at = NULL` revived the
session, and moving `created_at` / `last_seen_at` forward outlived its idle and absolute
lifetimes: only the session's id, principal and token were sealed.

Now its times and how it ended are sealed with it: a row edited so opens nothing; and a row
written back whole to its live self (seal and all, copied before the sign-out) opens nothing
either: each process holds the `console.sign_out` events of the log (identity/revocations.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tests.sealed_rows import sql
from warden.identity.console_sessions import ConsoleSession

SIGNED_IN = '<strong id="signed-in-as">admin</strong>'


def _signed_in(warden: Any) -> tuple[TestClient, str]:
    browser = TestClient(warden.app, follow_redirects=False)
    page = browser.get("/console/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = browser.post(
        "/console/sign-in",
        data={"csrf": csrf, "token": warden.tokens["admin"], "next": "/console/audit"},
    )
    assert r.status_code == 303, r.text
    assert SIGNED_IN in browser.get("/console/audit").text
    cookie = browser.cookies.get("warden_console")
    assert cookie
    return browser, cookie


def _thief(warden: Any, cookie: str) -> TestClient:
    thief = TestClient(warden.app, follow_redirects=False)
    thief.cookies.set("warden_console", cookie)
    return thief


def test_a_signed_out_console_session_revived_in_sql_is_refused(warden: Any) -> None:
    browser, cookie = _signed_in(warden)
    csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/console/audit").text)
    out = browser.post("/console/sign-out", data={"csrf": csrf.group(1)})  # type: ignore[union-attr]
    assert out.status_code in (200, 303), out.text
    assert _thief(warden, cookie).get("/console/audit").status_code != 200

    sql(warden, "UPDATE console_session SET ended_at = NULL, end_reason = NULL,"
        " last_seen_at = :n", n=datetime.now(UTC))  # fmt: skip
    again = _thief(warden, cookie).get("/console/audit")
    assert SIGNED_IN not in again.text and again.status_code != 200, "a signed-out session answered"


@pytest.mark.parametrize("column", ["created_at", "last_seen_at"])
def test_a_console_session_whose_lifetime_is_moved_in_sql_is_refused(
    warden: Any, column: str
) -> None:
    """Its start (absolute lifetime) or last use (idle lifetime) moved forward in SQL."""
    _, cookie = _signed_in(warden)
    later = datetime.now(UTC) + timedelta(hours=12)
    sql(warden, f"UPDATE console_session SET {column} = :t", t=later)
    page = _thief(warden, cookie).get("/console/audit")
    assert SIGNED_IN not in page.text and page.status_code != 200, f"{column} moved: still open"


def test_a_signed_out_session_written_back_whole_is_refused(warden: Any) -> None:
    browser, cookie = _signed_in(warden)
    table = ConsoleSession.__table__
    with warden.state.engine.connect() as conn:
        live = [dict(r) for r in conn.execute(select(table)).mappings()]
    csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/console/audit").text)
    out = browser.post("/console/sign-out", data={"csrf": csrf.group(1)})  # type: ignore[union-attr]
    assert out.status_code in (200, 303), out.text
    with warden.state.engine.begin() as conn:  # the row as it was, seal and all
        for row in live:
            conn.execute(update(table).where(table.c.id == row["id"]).values(**row))
    again = _thief(warden, cookie).get("/console/audit")
    assert SIGNED_IN not in again.text and again.status_code != 200, (
        "a session written back answered"
    )
