"""Separation of duties, with no admin bypass: nobody reviews or signs off their own access,
and only holders of the review right review at all. Every refusal changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.access.conftest import Access


def test_a_requester_never_approves_their_own_request_even_as_steward(access: Access) -> None:
    access.add_person("stella", ["steward", "ml_engineer"])
    req = access.ask("stella", dataset="pins", purpose="analytics", duration="1d")
    before = access.fingerprint()
    for decision in ("approve", "deny"):
        r = access.review("stella", req["id"], decision)
        assert r.status_code == 403
        assert r.json() == {
            "error": "Forbidden",
            "detail": "a requester never reviews their own request, whatever their roles",
        }
    assert access.fingerprint() == before
    assert req["id"] not in {
        x["id"] for x in access.get("stella", "/requests", reviewable=True).json()["requests"]
    }


def test_the_admin_who_owns_every_dataset_cannot_approve_their_own_request(
    access: Access,
) -> None:
    req = access.ask("admin", dataset="users", purpose="analytics", duration="1d")
    before = access.fingerprint()
    assert access.review("admin", req["id"], "approve").status_code == 403
    assert access.fingerprint() == before
    # The admin is still a reviewer of everyone else's requests (as the datasets' owner).
    other = access.ask("alice", dataset="users", purpose="analytics", duration="1d")
    assert access.approve("admin", other["id"])["approvals"] == ["admin"]
    # And two other reviewers can still approve the admin's own request.
    access.approve("sam", req["id"])
    assert access.approve("tess", req["id"])["state"] == "approved"


def test_the_admin_cannot_sign_off_their_own_break_glass(access: Access) -> None:
    r = access.post(
        "admin", "/break-glass", {"dataset": "pins", "purpose": "training", "reason": "x"}
    )
    assert r.status_code == 201  # admins hold sys:* rights, break glass included
    before = access.fingerprint()
    refused = access.post("admin", f"/grants/{r.json()['id']}/sign-off", {})
    assert refused.status_code == 403
    assert access.fingerprint() == before


def test_reviewing_without_the_review_right_is_forbidden(access: Access) -> None:
    req = access.ask("admin", dataset="pins", purpose="analytics", duration="1d")
    before = access.fingerprint()
    for who in ("mallory", "erin", "alice"):
        for decision in ("approve", "deny"):
            r = access.review(who, req["id"], decision)
            assert r.status_code == 403, (who, r.text)
            assert r.json()["error"] == "Forbidden"
    assert access.fingerprint() == before


def test_a_reviewer_counts_once(access: Access) -> None:
    req = access.ask("alice", dataset="users", purpose="analytics", duration="1d")
    access.approve("sam", req["id"])
    before = access.fingerprint()
    again = access.review("sam", req["id"], "approve")
    assert again.status_code == 409
    assert "counts once" in again.json()["detail"]
    assert access.review("sam", req["id"], "deny").status_code == 409
    assert access.fingerprint() == before
    assert access.show("alice", req["id"])["approvals"] == ["sam"]


def test_a_dataset_specific_reviewer_reviews_only_that_dataset(access: Access) -> None:
    access.add_person("rita", [])
    access.reviewed_rules(["p, rita, acme, pins, *, *, review, allow, ,"])
    pins = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    users = access.ask("alice", dataset="users", purpose="analytics", duration="1d")
    assert access.review("rita", users["id"], "approve").status_code == 403
    assert access.approve("rita", pins["id"])["state"] == "approved"


def test_job_tokens_take_no_part_in_access(access: Access) -> None:
    from warden.identity.service import Caller

    job = Caller("alice", "job", "acme", "x", on_behalf_of="alice", job_id="j1", segment="ml")
    from warden.access import service
    from warden.access.schemas import RequestCreate
    from warden.errors import Forbidden

    with access.w.state.sessions() as db, pytest.raises(Forbidden):
        body = RequestCreate(dataset="pins", purpose="training", duration="1d", justification="x")
        service.create_request(db, access.w.state, job, body)


def test_every_refused_review_is_audited_with_who_and_where(access: Access) -> None:
    """A self-approval or a review without the right changes nothing but leaves a record:
    the requester, the route, the status and why (the edge's `http.refused`)."""
    req = access.ask("alice", dataset="users", purpose="analytics", duration="1d")
    assert access.review("alice", req["id"], "approve").status_code == 403
    assert access.review("mallory", req["id"], "approve").status_code == 403
    refused = [
        e for e in access.w.audit_events(action="http.refused") if e["details"].get("status") == 403
    ]
    by_actor = {e["actor"]: e for e in refused}
    assert set(by_actor) >= {"alice", "mallory"}
    alice = by_actor["alice"]
    assert alice["decision"] == "deny" and alice["reason"].startswith("Forbidden: ")
    assert alice["details"]["route"] == "/v1/access/requests/{request_id}/review"
    assert alice["details"]["method"] == "POST"


def test_a_quorum_lowered_in_the_database_is_refused(access: Access) -> None:
    """A database writer sets a pending pii request's quorum to 1: one approval must still
    not grant it (found by a red-team review). The quorum is sealed with the request now: the
    request is refused (503) until an operator checks it; the review also holds the quorum to
    the dataset's terms."""
    req = access.ask(
        "alice", dataset="users", purpose="training", columns=["region"], duration=3600
    )
    assert req["quorum"] == 2
    with access.w.state.engine.begin() as conn:
        conn.execute(text("UPDATE access_request SET quorum = 1 WHERE id = :i"), {"i": req["id"]})
    assert access.review("sam", req["id"], "approve").status_code == 503
    assert access.review("tess", req["id"], "approve").status_code == 503  # nor once more


def test_an_approval_written_in_the_database_never_counts(access: Access) -> None:
    """A review row inserted in SQL (an eligible steward's "approve") carries no valid seal:
    the one real approval does not meet a quorum of two."""
    req = access.ask(
        "alice", dataset="users", purpose="training", columns=["region"], duration=3600
    )
    with access.w.state.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO access_review (request_id, reviewer_id, reviewer, decision, comment,"
                " created_at, seal) SELECT :r, id, 'sam', 'approve', '', :t, :s FROM principal"
                " WHERE name = 'sam'"
            ),
            {"r": req["id"], "t": access.clock.now, "s": "0" * 64},
        )
    assert access.approve("tess", req["id"])["state"] == "pending"


def test_an_approval_does_not_carry_over_to_a_request_edited_in_the_database(
    access: Access,
) -> None:
    """sam approves `region`; the request's columns are then widened in SQL: the request no
    longer matches its seal, so nothing is decided on it (and were it resealed, sam's approval
    was for what he saw: it would not count)."""
    req = access.ask(
        "alice", dataset="users", purpose="training", columns=["region"], duration=3600
    )
    access.approve("sam", req["id"])
    with access.w.state.engine.begin() as conn:
        conn.execute(
            text("UPDATE access_request SET columns = :c WHERE id = :i"),
            {"c": '["region", "signup_day"]', "i": req["id"]},
        )
    refused = access.review("tess", req["id"], "approve", "ok")
    assert refused.status_code == 503 and refused.json()["error"] == "RowTampered"
    read = access.read("alice", "users", purpose="training", columns=["signup_day"])
    assert read.status_code != 200
