"""Concurrent reviews through a real server: the request row is locked (SELECT … FOR UPDATE
on PostgreSQL; the write lock, taken first, on SQLite) and (request, reviewer) is unique, so
two approvals at once give exactly one transition and one grant, and one reviewer's double
click counts once."""

from __future__ import annotations

import threading
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.access.conftest import Access
from warden.access.models import AccessGrant, AccessReview, AccessTransition
from warden.policy.store import CasbinRule

ROUNDS = 5


def at_once(url: str, calls: list[tuple[str, str, dict[str, Any]]]) -> list[int]:
    """POST every (token, path, body) at the same moment, each on its own connection."""
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = [0] * len(calls)

    def run(i: int, token: str, path: str, body: dict[str, Any]) -> None:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}) as client:
            client.get("/healthz")  # connect first, so the posts leave together
            barrier.wait()
            statuses[i] = client.post(path, json=body, timeout=30).status_code

    threads = [threading.Thread(target=run, args=(i, *c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def counts(access: Access, request_id: str) -> dict[str, int]:
    with access.w.state.sessions() as db:
        approved = db.scalar(
            select(func.count()).where(
                AccessTransition.subject_id == request_id, AccessTransition.event == "approved"
            )
        )
        grants = list(db.scalars(select(AccessGrant).where(AccessGrant.request_id == request_id)))
        reviews = db.scalar(select(func.count()).where(AccessReview.request_id == request_id))
        ids = [g.id for g in grants]
        rules = db.scalar(select(func.count()).where(CasbinRule.v7.in_(ids))) if ids else 0
    return {
        "approved": approved or 0,
        "grants": len(grants),
        "reviews": reviews or 0,
        "rules": rules or 0,
    }


def _review(access: Access, who: str, request_id: str) -> tuple[str, str, dict[str, Any]]:
    return (
        access.w.tokens[who],
        f"/v1/access/requests/{request_id}/review",
        {"decision": "approve"},
    )


def test_two_reviewers_at_once_on_a_one_approval_request(live_warden: Any, access: Access) -> None:
    for _ in range(ROUNDS):
        req = access.ask(
            "erin",
            dataset="pins",
            purpose="analytics",
            duration="1d",
            columns=["pin_id", "category"],
        )
        statuses = at_once(
            live_warden.url, [_review(access, "sam", req["id"]), _review(access, "tess", req["id"])]
        )
        assert sorted(statuses) == [200, 409]
        assert counts(access, req["id"]) == {"approved": 1, "grants": 1, "reviews": 1, "rules": 2}


def test_two_reviewers_at_once_on_a_two_approval_request(live_warden: Any, access: Access) -> None:
    for _ in range(ROUNDS):
        req = access.ask("alice", dataset="users", purpose="analytics", duration="1d")
        statuses = at_once(
            live_warden.url, [_review(access, "sam", req["id"]), _review(access, "tess", req["id"])]
        )
        assert statuses == [200, 200]
        assert counts(access, req["id"]) == {"approved": 1, "grants": 1, "reviews": 2, "rules": 3}
        assert access.show("alice", req["id"])["state"] == "approved"


def test_one_reviewer_approving_twice_at_once_counts_once(live_warden: Any, access: Access) -> None:
    for _ in range(ROUNDS):
        req = access.ask("alice", dataset="users", purpose="analytics", duration="1d")
        statuses = at_once(live_warden.url, [_review(access, "sam", req["id"])] * 2)
        assert sorted(statuses) == [200, 409]
        assert counts(access, req["id"]) == {"approved": 0, "grants": 0, "reviews": 1, "rules": 0}
        shown = access.show("alice", req["id"])
        assert (shown["state"], shown["approvals"]) == ("pending", ["sam"])
