"""What a reviewer reads before approving, rewritten in SQL, is approved by nobody (red team
15, finding 3, low; left open by red team 14).

Attack (admin, proposer, with write access to the database): she proposes a rule that lets
mallory read `pins` and rewrites the change's `summary`, `widening` and `reason` in SQL to
"remove mallory's access to pins (narrowing)": the payload applied is sealed, but what the
reviewer reads and approves on is not, so a reviewer approves a widening they were told is
a narrowing. The same for an access request's `justification` (and its `classification`,
shown beside it): a requester rewrites why she asks after asking.

Now what a reviewer reads is sealed with the row: rewritten, the change or request is
refused (503) to every reviewer, and nothing is granted.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from tests.access.conftest import Access, bootstrap_people
from warden.access.models import AccessRequest, ReviewedChange

NARROWING = {
    "summary": "remove mallory's read of pins",
    "widening": [],
    "reason": "offboarding mallory",
}


@pytest.mark.parametrize("field", sorted(NARROWING))
def test_a_reviewed_changes_text_rewritten_in_sql_is_refused(access: Access, field: str) -> None:
    bootstrap_people(access.w, {"pat": ["admin"]})
    rule = "p, mallory, acme, pins, *, analytics, read, allow, ,"
    proposed = access.propose("admin", [rule], reason="mallory helps on pins")
    assert proposed.status_code == 202, proposed.text
    change_id = proposed.json()["change"]["id"]
    with access.w.state.engine.begin() as conn:
        conn.execute(
            update(ReviewedChange)
            .where(ReviewedChange.id == change_id)
            .values({field: NARROWING[field]})
        )
    approved = access.http.post(
        f"/v1/policy/changes/{change_id}/approve", json={"comment": "ok"}, headers=access.as_("ada")
    )
    assert approved.status_code == 503, f"a rewritten change was approved: {approved.text}"
    assert access.read("mallory", "pins", purpose="analytics").status_code in (403, 404)


@pytest.mark.parametrize(
    "values", [{"justification": "the regulator asked"}, {"classification": "internal"}]
)
def test_a_requests_justification_rewritten_in_sql_is_refused(
    access: Access, values: dict[str, Any]
) -> None:
    req = access.ask("alice", dataset="users", purpose="analytics", duration="7d")
    with access.w.state.engine.begin() as conn:
        conn.execute(update(AccessRequest).where(AccessRequest.id == req["id"]).values(**values))
    assert access.review("sam", req["id"], "approve").status_code == 503
