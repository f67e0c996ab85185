"""A break-glass sign-off written in SQL signs off nothing (red team 14, finding 1, medium).

Attack (alice: `sys:break_glass`, and write access to the database but not the key files):
break glass on `users`, then `UPDATE access_grant SET needs_review = false` (or forge the
whole sign-off, or clear `break_glass`, or move the grant to someone else) and break glass
again at once: a renewable lease on pii, and the grant gone from the reviewers' queue.

Now: `needs_review`, `signed_off_by` and `signed_off_at` are sealed with the grant, and a
grant whose seal does not match counts as not signed off: its holder is refused a new
break-glass (409; whose it is and its sign-off the log says too, red team 16b:
`test_one_broken_break_glass_blocks_only_its_holder.py`), it stays in the queue, and a
sign-off on it is refused (503) until an operator checks it (`warden data seal`).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.access.conftest import Access

BODY = {"dataset": "users", "purpose": "analytics", "reason": "incident 1"}


def _broken_glass(access: Access) -> str:
    access.allow_break_glass()
    first = access.post("alice", "/break-glass", BODY)
    assert first.status_code == 201, first.text
    grant_id: str = first.json()["id"]
    assert grant_id in access.get("sam", "/grants", needs_review="true").text
    return grant_id


def _sql(access: Access, statement: str, **params: Any) -> None:
    with access.w.state.engine.begin() as conn:
        conn.execute(text(statement), params)


FORGERIES = {
    "flag": "UPDATE access_grant SET needs_review = :f WHERE id = :id",
    "whole_sign_off": "UPDATE access_grant SET needs_review = :f, signed_off_by = 'sam',"
    " signed_off_at = CURRENT_TIMESTAMP WHERE id = :id",
    "not_break_glass": "UPDATE access_grant SET needs_review = :f, break_glass = :f WHERE id = :id",
    "moved_to_sam": "UPDATE access_grant SET needs_review = :f, principal_id ="
    " (SELECT id FROM principal WHERE name = 'sam') WHERE id = :id",
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_break_glass_sign_off_written_in_sql_is_refused(access: Access, forgery: str) -> None:
    grant_id = _broken_glass(access)
    _sql(access, FORGERIES[forgery], f=False, id=grant_id)

    access.clock.advance(minutes=61)
    again = access.post("alice", "/break-glass", {**BODY, "reason": "incident 2"})
    assert again.status_code == 409, f"broke glass again: {again.text}"
    assert grant_id in again.text and "seal" in again.text, again.text
    queue = access.get("sam", "/grants", needs_review="true")
    assert grant_id in queue.text, f"{grant_id} left the sign-off queue: {queue.text}"
    signed = access.get("sam", "/grants", needs_review="false")
    assert grant_id not in signed.text, signed.text
    # the forged row decides nothing until an operator checks it
    sign_off = access.post("sam", f"/grants/{grant_id}/sign-off", {"comment": "ok"})
    assert sign_off.status_code == 503, sign_off.text


def test_an_honest_sign_off_still_releases_the_next_break_glass(access: Access) -> None:
    grant_id = _broken_glass(access)
    signed = access.post("sam", f"/grants/{grant_id}/sign-off", {"comment": "ok"})
    assert signed.status_code == 200, signed.text
    access.clock.advance(minutes=61)
    tidy = access.post("admin", "/tidy")  # expiry moves the grant's sealed state: resealed
    assert tidy.status_code == 200, tidy.text
    assert access.grant("alice", grant_id)["state"] == "expired"
    assert access.post("alice", "/break-glass", {**BODY, "reason": "incident 2"}).status_code == 201
