"""A raw read of identifiers cut with the log's unprotected tail still counts for mixed
exposure (red team 19; red team 18 counted what the log shows a subject read raw, but a read
is not an ending, so it waited for the next checkpoint in the tail).

The attack (an admin's token, two stewards who approve what they are asked, and SQL on the
database, not the key files):

1. bob is given `users.user_id` raw (reviewed) and reads it: user ids and regions.
2. Before the next checkpoint the insider deletes that read event and everything after it and
   resets the head to the event before: a consistent chain, which the next checkpoint signs.
3. bob's raw rule is removed (a narrowing, applied at once); he reads `users` masked and zips
   the two reads (one version, one row order) into a pseudonym dictionary.
4. He asks for `engagements` (its `user_id` granted masked) and two stewards approve: the log no
   longer shows his raw read, so no mixed exposure is found, and the dictionary re-links every
   engagement to its raw user.

What must hold: no re-link. A read that returns an identifier or entity column unmasked is
checkpointed at once (as an ending is), so the cut is a chain shorter than its signed
checkpoint, refused (503) at the next request until an operator runs `verify`; a read kept
whole keeps counting, and a masked read is not checkpointed.
"""

from __future__ import annotations

from typing import Any

from tests.access.conftest import Access
from tests.access.test_masked_grant_after_a_raw_read_is_refused import (
    MASKED,
    RAW,
    relink_after_narrowing,
)
from tests.sealed_rows import one, sql
from warden.audit.checkpoints import CheckpointStore


def _checkpointed_seqs(access: Access) -> list[int]:
    return [c.seq for c in CheckpointStore.for_settings(access.w.settings).read().checkpoints]


def _cut_from(access: Access, event_id: str) -> None:
    """The event and everything after it deleted, the head reset to the event before."""
    seq = one(access.w, "SELECT seq FROM audit_event WHERE id = :i", i=event_id)[0]
    sql(access.w, "UPDATE audit_head SET seq = :s, hash = (SELECT hash FROM audit_event"
        " WHERE seq = :s)", "DELETE FROM audit_event WHERE seq > :s", s=seq - 1)  # fmt: skip


def _attack(access: Access, cut: bool) -> tuple[int, Any]:
    """bob's raw read (cut with the tail when `cut`), the narrowing, his masked read, and his
    request for engagements: (engagements re-linked, the second steward's answer)."""
    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    raw_read = access.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    raw = access.frame(raw_read)
    if cut:
        _cut_from(access, raw_read.headers["x-warden-audit-event"])
    return relink_after_narrowing(access, raw)


def test_a_raw_read_cut_with_the_tail_is_refused(access: Access) -> None:
    relinked, answer = _attack(access, cut=True)
    assert relinked == 0, f"bob re-linked {relinked} engagements to raw user ids"
    assert answer.status_code == 503, answer.text
    assert "checkpoint" in answer.json()["detail"], answer.text


def test_a_raw_read_is_checkpointed_at_once(access: Access) -> None:
    access.add_person("bob", [])
    access.reviewed_rules([RAW, *MASKED], reason="bob studies users")
    raw = access.read("bob", "users", purpose="analytics", columns=["user_id", "region"])
    seq = one(access.w, "SELECT seq FROM audit_event WHERE id = :i",
              i=raw.headers["x-warden-audit-event"])[0]  # fmt: skip
    assert max(_checkpointed_seqs(access)) >= seq, "the raw read waits in the tail"
    before = _checkpointed_seqs(access)
    masked = access.read("bob", "users", purpose="analytics", columns=["region"])
    assert masked.status_code == 200
    assert _checkpointed_seqs(access) == before, "a read of no identifier paid a checkpoint"


def test_a_raw_read_kept_whole_still_refuses_the_masked_grant(access: Access) -> None:
    relinked, answer = _attack(access, cut=False)
    assert relinked == 0
    assert answer.status_code == 403, answer.text
    assert "read raw in audit event" in answer.json()["detail"]
