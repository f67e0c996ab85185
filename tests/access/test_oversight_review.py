"""Taking oversight rights (sys:policy, sys:principals, sys:audit, sys:access) from anyone but
the author is a reviewed change, and no change leaves a tenant without an enabled person who
manages policy or reads the audit log (red team 13: one admin stripped every other admin and
auditor with an unreviewed "narrowing" change).

The attack, as found:

Attack (admin, with a second admin ada and an auditor in the tenant):

1. admin posts `p, ada, acme, sys:*, *, *, *, deny` and
   `p, role:auditor, acme, sys:*, *, *, *, deny`. `policy.changes.assess` treats every
   added deny as narrowing, so `change_rules` applies both at once: no second person, no
   proposal anyone could refuse (only a rule naming the admin himself is refused).
2. ada can no longer disable the admin, revoke his tokens, approve or deny changes, sign off
   break-glass, or read the audit log; the auditor is blinded too. Taking the deny away is
   a widening change that only a person with `sys:policy manage` may propose and another
   may approve: nobody but the admin is left, so the tenant stays this way until an
   operator edits the database. (`_set_disabled` refuses to disable the last enabled
   admin, to keep a tenant manageable; the deny does what it refuses, unchecked.)
3. From here on the admin is the tenant's only governance: he breaks glass on pii data as
   often as he likes (no one left to sign off), adds row filters on others that act as
   oracles (see test_row_filter_oracle), and no auditor of the tenant sees any of it.
   The same rule on `role:admin` (his own role, not his name) freezes the tenant for good.

Leak: separation of duties (the second person) removed by one person; audit visibility
removed from the tenant's auditors. Severity: medium.

Suggested fix (`warden/policy/changes.py::assess`, `access/changes.py::change_rules`): a
deny (or a removed allow / role link) on a `sys:*` object that takes a right from another
person is a reviewed change (or needs `sys:break_glass` and a sign-off), and refuse any
change after which fewer than two people of the tenant hold `sys:policy manage` (or no one
holds `sys:audit read` besides the author).
"""

from __future__ import annotations

from tests.access.conftest import Access, bootstrap_people


def test_one_admin_cannot_strip_the_other_admin_and_the_auditors_alone(access: Access) -> None:
    bootstrap_people(access.w, {"audra": ["auditor"]})
    ok = access.http.get("/v1/audit/events", params={"limit": 1}, headers=access.as_("audra"))
    assert ok.status_code == 200, ok.text
    r = access.propose(
        "admin",
        ["p, ada, acme, sys:*, *, *, *, deny, ,", "p, role:auditor, acme, sys:*, *, *, *, deny, ,"],
        reason="tidy up rights",
    )
    applied = r.status_code == 200 and r.json().get("state") == "applied"
    if applied:
        access.w.state.policy.ensure_fresh()
        stopped = access.http.post("/v1/principals/admin/disable", headers=access.as_("ada"))
        blind = access.http.get(
            "/v1/audit/events", params={"limit": 1}, headers=access.as_("audra")
        )
        undo = access.propose("ada", [], remove=["p, ada, acme, sys:*, *, *, *, deny, ,"])
        assert not (
            stopped.status_code == 403 and blind.status_code == 403 and undo.status_code == 403
        ), (
            "one admin, alone, left the tenant with no second admin and no auditor: "
            f"ada disable -> {stopped.status_code}, ada undo -> {undo.status_code}, "
            f"auditor -> {blind.status_code}"
        )
    assert not applied, r.text


def test_one_unreviewed_deny_does_not_freeze_the_tenants_governance_for_good(
    access: Access,
) -> None:
    """`p, role:admin, acme, sys:*, *, *, *, deny`: applied at once (a deny narrows); now no
    one in the tenant may propose, approve, disable or read the audit log, and the deny's
    removal can never be proposed: only an operator with SQL (and a policy reseal) undoes
    it. A mistake or a parting shot, one person, no review."""
    r = access.propose("admin", ["p, role:admin, acme, sys:*, *, *, *, deny, ,"], reason="oops")
    applied = r.status_code == 200 and r.json().get("state") == "applied"
    if applied:
        access.w.state.policy.ensure_fresh()
        undo = [
            access.propose(who, [], remove=["p, role:admin, acme, sys:*, *, *, *, deny, ,"])
            for who in ("admin", "ada")
        ]
        assert any(u.status_code in (200, 202) for u in undo), (
            "the tenant's governance is frozen: nobody may even propose removing the deny "
            f"({[u.status_code for u in undo]})"
        )
    assert not applied, r.text


def test_one_admin_cannot_demote_the_only_other_admin_alone(access: Access) -> None:
    """The same through the front door: `DELETE /v1/principals/ada/roles/admin` applies at once
    (`remove_role`: a role without a deny or row filter is narrowing), leaving the tenant one
    admin, the one who asked; nobody is left who may approve putting ada back."""
    r = access.http.delete("/v1/principals/ada/roles/admin", headers=access.as_("admin"))
    applied = r.status_code == 200
    if applied:
        access.w.state.policy.ensure_fresh()
        back = access.http.post(
            "/v1/principals/ada/roles", json={"role": "admin"}, headers=access.as_("admin")
        )
        assert back.status_code == 202, back.text  # proposed: and only ada could approve it
        change = back.json()["change_id"]
        by_ada = access.http.post(
            f"/v1/policy/changes/{change}/approve", json={}, headers=access.as_("ada")
        )
        assert by_ada.status_code == 200, (
            f"ada demoted by admin alone ({r.status_code}); restoring her needs an approver "
            f"and there is none: ada -> {by_ada.status_code}"
        )
    assert not applied, r.text


def test_no_approval_or_break_glass_leaves_the_tenant_without_governance(access: Access) -> None:
    """The deny on role:admin, proposed and approved by the other admin, is still refused: no
    enabled person would manage policy. Break-glass never applies a change that strips
    someone else's oversight. A strip that leaves governance in place applies once approved."""
    deny = "p, role:admin, acme, sys:*, *, *, *, deny, ,"
    change = access.propose("admin", [deny], reason="oops")
    assert change.status_code == 202, change.text
    before = access.fingerprint()
    refused = access.http.post(
        f"/v1/policy/changes/{change.json()['change']['id']}/approve",
        json={"comment": "ok"},
        headers=access.as_("ada"),
    )
    assert refused.status_code == 403, refused.text
    assert "holds sys:policy manage" in refused.json()["detail"]
    assert access.fingerprint()["rules"] == before["rules"]
    glass = access.propose(
        "admin", ["p, ada, acme, sys:*, *, *, *, deny, ,"], reason="now", break_glass=True
    )
    assert glass.status_code == 403, glass.text
    assert access.fingerprint()["rules"] == before["rules"]
    bootstrap_people(access.w, {"audra": ["auditor"]})
    blind = access.propose("admin", ["p, role:auditor, acme, sys:audit, *, *, read, deny, ,"])
    assert blind.status_code == 202, blind.text
    done = access.approve_change("ada", blind.json()["change"]["id"])
    assert done["state"] == "applied"  # the admins still read the audit log
