"""Platform admins through a real Warden (`warden init`, the policy API): the bootstrap admin
is one; a tenant admin is not and cannot make anyone one; anonymous events are theirs alone."""

from __future__ import annotations

from typing import Any

from warden.db.session import unit_of_work
from warden.identity.service import Caller, create_principal, get_principal, get_tenant, issue_token
from warden.policy.changes import apply_change


def add_tenant_admin(warden: Any, name: str) -> None:
    state = warden.state
    with unit_of_work(state.sessions) as db:
        tenant = get_tenant(db, "acme")
        admin = get_principal(db, "admin")
        warden.tokens[name] = issue_token(db, create_principal(db, name, "person", tenant))
        actor = Caller("admin", "person", "acme", admin.id)
        apply_change(db, actor, add=[("g", (name, "role:admin", "acme"))], reason="test")
    state.policy.reload()


def test_the_bootstrap_admin_is_a_platform_admin(warden: Any) -> None:
    r = warden.http.post("/v1/audit/checkpoint", headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["written"]
    body = warden.http.post("/v1/audit/verify", headers=warden.as_("admin")).json()
    assert body["ok"] and body["newest_checkpoint"]["seq"] == r.json()["seq"]


def test_a_tenant_admin_is_no_platform_admin_and_cannot_become_one(warden: Any) -> None:
    add_tenant_admin(warden, "tad")
    warden.http.post("/v1/datasets/engagements/read", json={"purpose": "training"})  # anonymous

    # Their tenant's log, without the anonymous attempt; the platform admin sees it.
    mine = warden.http.get("/v1/audit/events", headers=warden.as_("tad")).json()["events"]
    assert mine and all(e["tenant"] == "acme" for e in mine)
    everyone = warden.audit_events(actor="anonymous")
    assert everyone and everyone[0]["tenant"] is None

    assert warden.http.post("/v1/audit/checkpoint", headers=warden.as_("tad")).status_code == 403
    # Rules in the reserved domain are another tenant's: refused, nothing changes.
    for line in (
        "g, erin, role:platform_admin, platform",
        "p, role:analyst_eu, platform, sys:platform, *, *, manage, allow, ,",
    ):
        r = warden.http.post(
            "/v1/policy/rules", json={"add": [line], "reason": "x"}, headers=warden.as_("tad")
        )
        assert r.status_code == 422 and r.json()["error"] == "Unprocessable", line
    # A sys:platform right in the tenant's own domain is no platform right.
    r = warden.http.post(
        "/v1/policy/rules",
        json={"add": ["g, erin, role:admin, acme"], "reason": "x"},
        headers=warden.as_("tad"),
    )
    assert r.status_code == 200, r.text
    assert warden.http.post("/v1/audit/checkpoint", headers=warden.as_("erin")).status_code == 403
    theirs = warden.http.get("/v1/audit/events", headers=warden.as_("erin")).json()["events"]
    assert all(e["tenant"] == "acme" for e in theirs)
