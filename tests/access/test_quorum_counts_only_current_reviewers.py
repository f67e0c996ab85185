"""An approval counts only while its reviewer could still give it.

Found by red-team round 13 (low), now refused. A pii request needs two approvers:

1. alice asks for `users` (pii, quorum 2) for analytics. Steward sam approves.
2. sam is found colluding (or leaves): an admin disables him, or takes his steward role
   away, or both (narrowing; no review).
3. Any one other steward (tess) approves. `duties.counting` used to re-check only that
   earlier approvers were people and not beneficiaries or their keepers, so sam's approval
   made the quorum and the grant was issued on a single eligible person's word.

Fix (`access.duties.counting`): when a quorum is counted, only approvers who are enabled and
still hold the review right (`rights.may_review` on the dataset for requests,
`may_review_changes` for reviewed changes) count.
"""

from __future__ import annotations

import pytest

from tests.access.conftest import Access


@pytest.mark.parametrize("lose", [("disable",), ("unrole",), ("disable", "unrole")])
def test_an_approval_by_a_reviewer_since_disabled_or_unroled_no_longer_counts(
    access: Access, lose: tuple[str, ...]
) -> None:
    req = access.ask("alice", dataset="users", purpose="analytics", duration="1d")
    assert req["quorum"] == 2
    access.approve("sam", req["id"])
    admin = access.as_("admin")
    if "disable" in lose:
        off = access.http.post("/v1/principals/sam/disable", headers=admin)
        assert off.status_code == 200, off.text
    if "unrole" in lose:
        gone = access.http.delete("/v1/principals/sam/roles/steward", headers=admin)
        assert gone.status_code == 200, gone.text
    assert access.show("admin", req["id"])["state"] == "pending"
    done = access.review("tess", req["id"], "approve", "ok")
    assert done.status_code == 200, done.text
    state = done.json()["state"]
    assert state == "pending", (
        f"request {state} with approvals {done.json()['approvals']}: sam ({lose}) still "
        "made the quorum"
    )
    assert access.read("alice", "users", purpose="analytics").status_code == 403
    # a second current steward still completes it: the quorum is two eligible people
    access.add_person("stu", ["steward"])
    last = access.review("stu", req["id"], "approve", "ok")
    assert last.status_code == 200, last.text
    assert last.json()["state"] == "approved"
