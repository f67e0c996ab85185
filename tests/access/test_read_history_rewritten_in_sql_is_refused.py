"""A change that depends on a subject's read history is refused (503, audited) while that history
holds an event that is not the chain's own (red team 19; red team 18 skipped such an event).

The attack (an admin's token, two stewards who approve what they are asked, and SQL on the
database, not the key files): bob reads `users.user_id` raw; the insider rewrites that
`dataset.read` event in SQL to show `user_id` masked (its keyed hash no longer matches:
`verify` says `rewritten`, but nobody runs it before the approval). bob is narrowed to masked,
reads `users` masked, zips the two reads into a pseudonym dictionary and asks for
`engagements` (its `user_id` granted masked): the log's raw read no longer counts, the stewards
approve, and every engagement is re-linked to its raw user.

What must hold: the approval fails closed (503 in the one error shape, audited as a refusal)
naming the event that is not the chain's own, instead of deciding on a history someone edited.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.access.conftest import Access
from tests.access.test_masked_grant_after_a_raw_read_is_refused import (
    MASKED,
    RAW,
    relink_after_narrowing,
)
from tests.sealed_rows import sql


def _attack(access: Access) -> tuple[int, Any]:
    """bob's raw read rewritten in SQL as masked, the narrowing, his masked read and his request
    for engagements: (engagements re-linked, the first answer that was not a success)."""
    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    raw_read = access.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    raw = access.frame(raw_read)
    access.read("bob", "users", purpose="analytics", columns=["region"])  # the log goes on
    sql(access.w, "UPDATE audit_event SET masked_columns = :m WHERE id = :i",
        m='["user_id"]', i=raw_read.headers["x-warden-audit-event"])  # fmt: skip
    return relink_after_narrowing(access, raw)


def test_a_raw_read_rewritten_as_masked_refuses_the_change(access: Access) -> None:
    relinked, answer = _attack(access)
    assert relinked == 0, f"bob re-linked {relinked} engagements to raw user ids"
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "AuditUnavailable"
    assert "not the chain's own" in answer.json()["detail"]
    refused = access.events("http.refused")
    assert refused and "not the chain's own" in (refused[-1]["reason"] or ""), refused


def test_a_history_of_the_chain_s_own_events_decides_as_before(access: Access) -> None:
    access.add_person("bob", [])
    access.reviewed_rules(MASKED, reason="bob sees user ids masked")
    for _ in range(3):
        read = access.read("bob", "users", purpose="analytics", columns=["user_id"])
        assert read.status_code == 200
    req = access.ask("bob", dataset="engagements", columns=["user_id", "action"],
                     purpose="analytics", duration="1d")  # fmt: skip
    access.approve("sam", req["id"])
    assert access.review("tess", req["id"], "approve", "ok").status_code == 200
    assert access.show("bob", req["id"])["state"] == "approved"


def test_a_raw_read_verified_before_the_rewrite_stays_counted(access: Access) -> None:
    """A process keeps what it verified of a history at or below a signed checkpoint: the raw
    read it saw still counts after its row is rewritten (and the next check reads only what
    came since)."""
    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    raw_read = access.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    assert raw_read.status_code == 200
    narrowed = access.propose("admin", remove=[RAW], reason="bob sees user ids masked now")
    assert narrowed.status_code == 200, narrowed.text  # its check read bob's history
    sql(access.w, "UPDATE audit_event SET masked_columns = :m WHERE id = :i",
        m='["user_id"]', i=raw_read.headers["x-warden-audit-event"])  # fmt: skip
    req = access.ask("bob", dataset="engagements", columns=["user_id", "action"],
                     purpose="analytics", duration="1d")  # fmt: skip
    access.approve("sam", req["id"])
    review = access.review("tess", req["id"], "approve", "ok")
    assert review.status_code == 403, review.text
    assert f"read raw in audit event {raw_read.headers['x-warden-audit-event']}" in review.text


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE audit_event SET actor = 'carol' WHERE id = :i",  # moved out of bob's history
        "UPDATE audit_event SET action = 'dataset.browse' WHERE id = :i",
        "DELETE FROM audit_event WHERE id = :i",  # a gap below a signed checkpoint
    ],
)
@pytest.mark.parametrize("learnt", ["committed here", "met walking to the checkpoint"])
def test_a_raw_read_taken_out_of_the_history_still_counts(
    access: Access, edit: str, learnt: str
) -> None:
    """A raw read is checkpointed at once, and every process sharing the checkpoints keeps it
    (the one that committed it, from the event in hand; another, when it walks the chain to
    that checkpoint): written over or deleted in SQL afterwards, it still counts."""
    from warden.audit.anchor import anchor_for

    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    raw_read = access.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    raw = access.frame(raw_read)
    if learnt != "committed here":  # as if another process had served the read
        held = anchor_for(access.w.state.engine)
        assert held is not None
        with held._lock:
            held._raw_reads.clear()
    access.read("bob", "users", purpose="analytics", columns=["region"])  # the log goes on
    sql(access.w, edit, i=raw_read.headers["x-warden-audit-event"])
    relinked, review = relink_after_narrowing(access, raw)
    assert relinked == 0, f"bob re-linked {relinked} engagements to raw user ids"
    if edit.startswith("DELETE"):
        # the narrowing is checkpointed at once (red team 20): the gap below the signed
        # checkpoint is found there, and this process refuses everything after it
        assert review.status_code == 503 and "tampered" in review.text, review.text
        return
    assert review.status_code == 403, review.text
    assert f"read raw in audit event {raw_read.headers['x-warden-audit-event']}" in review.text
