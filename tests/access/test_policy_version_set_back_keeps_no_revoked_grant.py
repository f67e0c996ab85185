"""A grant revoked through one process stays revoked on another, whatever the stored policy
version is set back to in SQL (red team 20).

The attack (an insider of acme with SQL on the database, not the key files): erin holds a
grant on `pins`, approved by a steward; two API processes serve the tenant. A steward revokes
the grant through process B: its rules go, the policy version moves from V to V+1. Before
process A's next read, the insider writes the `policy_state` row back to what it was at V
(version, rule sum and seal together: a state Warden sealed itself). Each read asks the
stored version first, and A's snapshot is at V, so A keeps serving the snapshot that still
holds the grant's rules: erin reads on, on A, after the revocation, until the next policy
change (a trigger that keeps the row at V does the same without a race).

What must hold: revocation on the very next read, on every process. A revocation is now an
ending held to the log (checkpointed at once, read by every process sharing the folder), and
each process refuses to decide (503) on a stored policy older than a version the log named.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from tests.access.conftest import Access
from tests.sealed_rows import one, sql
from warden.api.app import create_app

BODY = {"purpose": "analytics", "columns": ["pin_id"], "limit": 1}


def _read(client: TestClient, access: Access) -> Any:
    return client.post("/v1/datasets/pins/read", json=BODY, headers=access.as_("erin"))


def _granted(access: Access) -> str:
    access.clock.now = datetime.now(UTC)  # the second process runs on real time
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d", columns=["pin_id"])
    grant_id = access.approve("sam", req["id"])["grant_id"]
    assert isinstance(grant_id, str)
    return grant_id


def test_a_revoked_grant_is_not_read_on_a_process_whose_policy_was_set_back(
    access: Access,
) -> None:
    grant_id = _granted(access)
    a = TestClient(create_app(access.w.settings))  # a second process, its own snapshot
    try:
        assert _read(a, access).status_code == 200  # A's snapshot holds the grant
        saved = one(access.w, "SELECT version, rules_sum, seal FROM policy_state")
        revoked = access.post("sam", f"/grants/{grant_id}/revoke", {"reason": "incident"})
        assert revoked.status_code == 200, revoked.text
        sql(access.w, "UPDATE policy_state SET version = :v, rules_sum = :s, seal = :seal",
            v=saved.version, s=saved.rules_sum, seal=saved.seal)  # fmt: skip
        after = _read(a, access)
        assert after.status_code != 200, "erin read on a revoked grant on the other process"
        assert after.status_code == 503, after.text
    finally:
        a.close()


def test_a_narrowing_is_not_undone_on_a_process_whose_policy_was_set_back(
    access: Access,
) -> None:
    """The same with a narrowing applied at once (a deny for erin) instead of a revocation."""
    _granted(access)
    a = TestClient(create_app(access.w.settings))
    try:
        assert _read(a, access).status_code == 200
        saved = one(access.w, "SELECT version, rules_sum, seal FROM policy_state")
        deny = access.propose("admin", ["p, erin, acme, pins, *, *, *, deny, ,"], reason="stop")
        assert deny.status_code == 200 and deny.json()["state"] == "applied", deny.text
        sql(access.w, "UPDATE policy_state SET version = :v, rules_sum = :s, seal = :seal",
            v=saved.version, s=saved.rules_sum, seal=saved.seal)  # fmt: skip
        after = _read(a, access)
        assert after.status_code == 503, f"erin read past the deny ({after.status_code})"
    finally:
        a.close()


def test_a_revoked_grant_is_refused_on_both_processes_when_nothing_is_set_back(
    access: Access,
) -> None:
    grant_id = _granted(access)
    a = TestClient(create_app(access.w.settings))
    try:
        assert _read(a, access).status_code == 200
        revoked = access.post("sam", f"/grants/{grant_id}/revoke", {"reason": "incident"})
        assert revoked.status_code == 200, revoked.text
        for client in (a, access.http):
            refused = _read(client, access)
            assert refused.status_code == 403 and "ended" in refused.json()["detail"]
    finally:
        a.close()
