"""Platform admins through a real Warden (`warden init`, tenant creation, the policy API): the
installation's admin is one; the admin of a tenant created later is not, and cannot make
anyone one; anonymous events are theirs alone."""

from __future__ import annotations

from typing import Any


def new_tenant(warden: Any, name: str, admin: str) -> None:
    r = warden.http.post(
        "/v1/tenants", json={"name": name, "admin": admin}, headers=warden.as_("admin")
    )
    assert r.status_code == 201, r.text
    warden.tokens[admin] = r.json()["token"]


def test_the_installation_admin_is_a_platform_admin(warden: Any) -> None:
    r = warden.http.post("/v1/audit/checkpoint", headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["written"]
    body = warden.http.post("/v1/audit/verify", headers=warden.as_("admin")).json()
    assert body["ok"] and body["newest_checkpoint"]["seq"] == r.json()["seq"]


def test_another_tenants_admin_is_no_platform_admin_and_cannot_become_one(warden: Any) -> None:
    new_tenant(warden, "globex", "gadmin")
    warden.http.post("/v1/datasets/engagements/read", json={"purpose": "training"})  # anonymous

    # Their tenant's log, without the anonymous attempt; the platform admin sees it.
    mine = warden.http.get("/v1/audit/events", headers=warden.as_("gadmin")).json()["events"]
    assert mine and all(e["tenant"] == "globex" for e in mine)
    everyone = warden.audit_events(actor="anonymous")
    assert everyone and everyone[0]["tenant"] is None

    refused = warden.http.post("/v1/audit/checkpoint", headers=warden.as_("gadmin"))
    assert refused.status_code == 403
    # Rules in the installation's domain are another tenant's: refused, nothing changes.
    r = warden.http.post(
        "/v1/policy/rules",
        json={"add": ["p, role:admin, acme, sys:tenants, *, *, manage, allow, ,"], "reason": "x"},
        headers=warden.as_("gadmin"),
    )
    assert r.status_code == 422 and r.json()["error"] == "Unprocessable"
    # Every right in their own tenant (role:admin holds sys:* already) makes no platform admin.
    again = warden.http.post("/v1/audit/checkpoint", headers=warden.as_("gadmin"))
    assert again.status_code == 403
    theirs = warden.http.get("/v1/audit/events", headers=warden.as_("gadmin")).json()["events"]
    assert all(e["tenant"] == "globex" for e in theirs)
