"""A request or reviewed change set back to "pending" in SQL never counts its old approvals
again (red team 14, finding 5, medium).

Attack (alice, requester, with write access to the database): her pii request (quorum 2) is
approved by sam and tess, then revoked; `UPDATE access_request SET state='pending', ...` puts
it back in the queue with both old approvals still sealed over its unchanged terms, and one
new approval (olga) re-granted it. The same for a reviewed change applied, then undone.

Now a request's and a change's state, deadline and resolution are sealed with it: one
reopened (or whose deadline is moved) in SQL is refused (503), whatever is approved on it.
And its row written back whole to its pending self (seal and all, copied while it was
pending) is refused too: the log says it was resolved (identity/revocations.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, text, update

from tests.access.conftest import Access, bootstrap_people
from warden.access.models import AccessRequest, ReviewedChange


def _snapshot(access: Access, model: Any, row_id: str) -> dict[str, Any]:
    table = model.__table__
    with access.w.state.engine.connect() as conn:
        found = conn.execute(select(table).where(table.c.id == row_id)).mappings().first()
    assert found is not None
    return dict(found)


def _write_back(access: Access, model: Any, snapshot: dict[str, Any]) -> None:
    table = model.__table__
    with access.w.state.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == snapshot["id"]).values(**snapshot))


def _approved_then_revoked(access: Access) -> dict[str, Any]:
    req = access.ask("alice", dataset="users", purpose="analytics", duration="7d")
    assert req["quorum"] == 2, req
    access.approve("sam", req["id"])
    grant_id = access.approve("tess", req["id"])["grant_id"]
    assert access.read("alice", "users", purpose="analytics").status_code == 200
    revoked = access.post("sam", f"/grants/{grant_id}/revoke", {"reason": "misuse"})
    assert revoked.status_code == 200, revoked.text
    assert access.read("alice", "users", purpose="analytics").status_code in (403, 404)
    return req


def test_a_request_set_back_to_pending_in_sql_is_refused(access: Access) -> None:
    req = _approved_then_revoked(access)
    with access.w.state.engine.begin() as conn:
        conn.execute(
            update(AccessRequest)
            .where(AccessRequest.id == req["id"])
            .values(
                state="pending",
                pending_until=access.clock() + timedelta(days=1),
                resolved_at=None,
                grant_id=None,
            )
        )
    third = access.review("olga", req["id"], "approve", "looks fine")
    assert third.status_code == 503, f"a reopened request was reviewed: {third.text}"
    assert access.read("alice", "users", purpose="analytics").status_code != 200


def test_a_pending_request_kept_alive_in_sql_is_refused(access: Access) -> None:
    """Its deadline moved past the pending lifetime, or its quorum lowered: refused."""
    for values in ({"pending_until": access.clock() + timedelta(days=90)}, {"quorum": 1}):
        req = access.ask("alice", dataset="users", purpose="analytics", duration="7d")
        with access.w.state.engine.begin() as conn:
            conn.execute(
                update(AccessRequest).where(AccessRequest.id == req["id"]).values(**values)
            )
        assert access.review("sam", req["id"], "approve").status_code == 503, values


def test_an_expired_request_is_resealed_and_stays_final(access: Access) -> None:
    req = access.ask("alice", dataset="users", purpose="analytics", duration="7d")
    access.clock.advance(days=30)
    assert access.post("admin", "/tidy").status_code == 200
    shown = access.show("alice", req["id"])  # the expiry's UPDATE carried the seal along
    assert shown["state"] == "expired", shown
    assert access.review("sam", req["id"], "approve").status_code == 409


def test_a_reviewed_change_set_back_to_pending_in_sql_is_refused(access: Access) -> None:
    bootstrap_people(access.w, {"pat": ["admin"]})  # a second, independent change reviewer
    rule = "p, mallory, acme, pins, *, analytics, read, allow, ,"
    proposed = access.propose("admin", [rule], reason="mallory helps on pins")
    assert proposed.status_code == 202, proposed.text
    change_id = proposed.json()["change"]["id"]
    assert access.approve_change("ada", change_id)["state"] == "applied"
    undone = access.propose("admin", remove=[rule], reason="done")  # narrowing: at once
    assert undone.json()["state"] == "applied", undone.text
    assert access.read("mallory", "pins", purpose="analytics").status_code in (403, 404)

    with access.w.state.engine.begin() as conn:
        conn.execute(
            update(ReviewedChange)
            .where(ReviewedChange.id == change_id)
            .values(state="pending", pending_until=access.clock() + timedelta(days=1))
        )
        conn.execute(text("UPDATE reviewed_change SET resolved_at = NULL WHERE id = :id"),
                     {"id": change_id})  # fmt: skip
    again = access.http.post(
        f"/v1/policy/changes/{change_id}/approve", json={"comment": "ok"}, headers=access.as_("pat")
    )
    assert again.status_code == 503, f"a reopened change was reviewed: {again.text}"
    assert access.read("mallory", "pins", purpose="analytics").status_code in (403, 404)


def test_a_request_written_back_whole_to_pending_is_refused(access: Access) -> None:
    """Its row copied (seal and all) while pending, written back after it was approved and
    revoked: the seal matches, the log says it was approved."""
    req = access.ask("alice", dataset="users", purpose="analytics", duration="7d")
    access.approve("sam", req["id"])
    pending = _snapshot(access, AccessRequest, req["id"])
    grant_id = access.approve("tess", req["id"])["grant_id"]
    assert access.post("sam", f"/grants/{grant_id}/revoke", {"reason": "x"}).status_code == 200
    _write_back(access, AccessRequest, pending)
    third = access.review("olga", req["id"], "approve", "looks fine")
    assert third.status_code == 503, f"a request written back to pending was reviewed: {third.text}"
    assert access.read("alice", "users", purpose="analytics").status_code != 200


def test_a_reviewed_change_written_back_whole_to_pending_is_refused(access: Access) -> None:
    bootstrap_people(access.w, {"pat": ["admin"]})
    rule = "p, mallory, acme, pins, *, analytics, read, allow, ,"
    change_id = access.propose("admin", [rule], reason="pins").json()["change"]["id"]
    pending = _snapshot(access, ReviewedChange, change_id)
    assert access.approve_change("ada", change_id)["state"] == "applied"
    assert access.propose("admin", remove=[rule], reason="done").json()["state"] == "applied"
    _write_back(access, ReviewedChange, pending)
    again = access.http.post(
        f"/v1/policy/changes/{change_id}/approve", json={"comment": "ok"}, headers=access.as_("pat")
    )
    assert again.status_code == 503, f"a change written back to pending was reviewed: {again.text}"
    assert access.read("mallory", "pins", purpose="analytics").status_code in (403, 404)
