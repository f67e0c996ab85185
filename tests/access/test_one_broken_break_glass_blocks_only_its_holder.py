"""Red team 16b: one break-glass grant whose seal breaks refuses break-glass to its holder
only, not to everyone in its tenant.

The attack (low, a denial of service by a database writer): a grant whose seal does not match
counts as not signed off, and since whose it is may be forged too, every maybe-break-glass
grant of the tenant whose seal broke refused every break-glass of the tenant (409) until an
operator resealed it. One `UPDATE access_grant SET purpose = 'x'` on any break-glass grant
ever made, and nobody in the tenant could break glass in an emergency.

Now whose a break-glass grant is comes from the log (its `access.grant.created` event, keyed
and chained, names its holder), and so does its sign-off: its holder is refused until a
sign-off is logged, whatever its row now says (moved to someone else, its id changed,
deleted), and a broken row refuses only the principal it names; everyone else breaks glass.
`warden data seal --check` lists the broken row, as it lists every other.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.access.conftest import Access, link_role
from tests.sealed_rows import sql

BODY = {"dataset": "users", "purpose": "analytics", "reason": "incident 1"}
ERINS = {"dataset": "pins", "purpose": "analytics", "reason": "incident at erin's"}


WRITES = {
    "edited": "UPDATE access_grant SET purpose = 'training' WHERE id = :id",
    "moved_to_sam": "UPDATE access_grant SET needs_review = :f, principal_id ="
    " (SELECT id FROM principal WHERE name = 'sam'), principal = 'sam' WHERE id = :id",
    "renamed": "UPDATE access_grant SET id = 'grt_0000000000000000000000000000', needs_review"
    " = :f, break_glass = :f WHERE id = :id",
    "deleted": "DELETE FROM access_grant WHERE id = :id",
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_broken_break_glass_grant_refuses_only_its_holder(access: Access, write: str) -> None:
    access.allow_break_glass()
    link_role(access.w, "erin", "ml_engineer")  # a second person who may break glass
    first = access.post("alice", "/break-glass", BODY)
    assert first.status_code == 201, first.text
    grant_id = first.json()["id"]
    sql(access.w, WRITES[write], f=False, id=grant_id)
    access.clock.advance(minutes=61)

    again = access.post("alice", "/break-glass", {**BODY, "reason": "incident 2"})
    assert again.status_code == 409, f"alice broke glass again: {again.text}"
    assert grant_id in again.text, again.text
    erins = access.post("erin", "/break-glass", ERINS)
    assert erins.status_code == 201, f"alice's broken grant refused erin too: {erins.text}"


def test_a_forged_sign_off_event_releases_nobody(access: Access) -> None:
    """The log decides: an event row written past the chain (no valid keyed hash) signs off
    nothing."""
    access.allow_break_glass()
    first = access.post("alice", "/break-glass", BODY)
    grant_id = first.json()["id"]
    with access.w.state.engine.begin() as conn:
        top = conn.execute(text("SELECT max(seq) FROM audit_event")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO audit_event (seq, id, ts, actor, actor_kind, tenant, action,"
                " decision, columns, masked_columns, row_filter, grant_ids, details, prev_hash,"
                " hash, chain_v) VALUES (:seq, 'forged', CURRENT_TIMESTAMP, 'sam', 'person',"
                " 'acme', 'access.grant.signed_off', 'allow', '[]', '[]', '[]', :g, '{}',"
                " 'x', 'y', 2)"
            ),
            {"seq": top + 1000, "g": f'["{grant_id}"]'},
        )
    sql(access.w, "UPDATE access_grant SET needs_review = :f WHERE id = :id", f=False, id=grant_id)
    access.clock.advance(minutes=61)
    again = access.post("alice", "/break-glass", {**BODY, "reason": "incident 2"})
    assert again.status_code == 409, again.text
