"""Console session rows are sealed (warden/db/sealed.py): found by a red-team round, one
INSERT (a cookie secret the writer chose, anyone's token id) signed the writer in as that
token's principal, and a session moved to another token spoke for it; neither opens
anything now, and a session's token must speak for the session's own principal."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.sealed_rows import live_token_id, sql


def test_forged_console_session_row_signs_in_as_admin(warden: Any) -> None:
    with warden.state.engine.begin() as conn:
        admin_token, admin_id = conn.execute(
            text(
                "SELECT t.id, p.id FROM api_token t JOIN principal p ON p.id=t.principal_id"
                " WHERE p.name='admin' AND t.revoked_at IS NULL"
            )
        ).first()
        secret = "attacker-chosen-secret"
        now = datetime.now(UTC)
        conn.execute(
            text(
                "INSERT INTO console_session (id, principal_id, token_id, created_at,"
                " last_seen_at) VALUES (:id, :p, :t, :n, :n)"
            ),
            {
                "id": hashlib.sha256(secret.encode()).hexdigest(),
                "p": admin_id,
                "t": admin_token,
                "n": now,
            },
        )
    browser = TestClient(warden.app, follow_redirects=False)
    browser.cookies.set("warden_console", secret)
    page = browser.get("/console/audit")
    assert '<strong id="signed-in-as">admin</strong>' not in page.text
    # secure: a row written past Warden opens no session (sign-in redirect or 401/503)
    assert page.status_code != 200, "forged console session row was accepted as admin"


def test_console_session_moved_to_another_token(warden: Any) -> None:
    """mallory signs in honestly, then points her session row at admin's token."""
    browser = TestClient(warden.app, follow_redirects=False)
    page = browser.get("/console/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = browser.post(
        "/console/sign-in",
        data={"csrf": csrf, "token": warden.tokens["mallory"], "next": "/console/reviews"},
    )
    assert r.status_code == 303, r.text
    assert '<strong id="signed-in-as">mallory</strong>' in browser.get("/console/reviews").text
    sql(warden, "UPDATE console_session SET token_id=:t", t=live_token_id(warden, "admin"))
    page = browser.get("/console/audit")
    assert '<strong id="signed-in-as">admin</strong>' not in page.text, "session speaks for admin"
