"""Tenants: platform admins (admins of the tenant `warden init` made) create tenants with a first
admin and the seed role rules; nobody else can; and tenants stay apart through the API."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.access.conftest import link_role

from warden.catalog.service import list_names
from warden.identity.models import Principal, Tenant
from warden.policy.store import CasbinRule


def _create(warden, who: str, name: str = "globex", admin: str = "gadmin"):  # type: ignore[no-untyped-def]
    return warden.http.post(
        "/v1/tenants", json={"name": name, "admin": admin}, headers=warden.as_(who)
    )


@pytest.fixture
def globex(warden):  # type: ignore[no-untyped-def]
    r = _create(warden, "admin")
    assert r.status_code == 201, r.text
    warden.tokens["gadmin"] = r.json()["token"]
    return warden


def test_platform_admin_creates_a_tenant_with_admin_and_seed_rules(globex) -> None:  # type: ignore[no-untyped-def]
    w = globex
    me = w.http.get("/v1/me", headers=w.as_("gadmin")).json()
    assert me["tenant"] == "globex" and me["roles"] == ["role:admin"]
    with w.state.sessions() as db:
        acme = {
            (r.ptype, r.v0, r.v2)
            for r in db.scalars(select(CasbinRule).where(CasbinRule.v1 == "acme"))
        }
        mine = {
            (r.ptype, r.v0, r.v2)
            for r in db.scalars(select(CasbinRule).where(CasbinRule.v1 == "globex"))
        }
        tenants = {t.name: t.installation for t in db.scalars(select(Tenant))}
    # the same role rules as warden init seeds, re-homed to the new tenant
    assert ("p", "role:admin", "sys:*") in mine
    assert {r for r in acme if r[1].startswith("role:")} == {
        r for r in mine if r[1].startswith("role:")
    }
    assert tenants == {"acme": True, "globex": False}
    # only role rules, plus its admin's link: no rules naming acme's people
    assert {r[1] for r in mine if not r[1].startswith("role:")} == set()
    with w.state.sessions() as db:
        links = db.scalars(select(CasbinRule).where(CasbinRule.ptype == "g"))
        assert [(r.v0, r.v1) for r in links if r.v2 == "globex"] == [("gadmin", "role:admin")]
    # the new admin can work in their tenant: add a person (her role is a reviewed change,
    # proposed for a second person), mint them a token (which lets the admin act as gina:
    # a reviewed change too, held until a second person approves)
    made = w.http.post(
        "/v1/principals", json={"name": "gina", "roles": ["ml_engineer"]}, headers=w.as_("gadmin")
    )
    assert made.status_code == 202, made.text
    assert made.json()["pending_roles"] == ["role:ml_engineer"]
    minted = w.http.post("/v1/principals/gina/tokens", json={}, headers=w.as_("gadmin"))
    assert minted.status_code == 202 and minted.json()["change_id"], minted.text
    listed = w.http.get("/v1/tenants", headers=w.as_("admin")).json()["tenants"]
    assert [t["name"] for t in listed] == ["acme", "globex"]
    created = w.audit_events(action="tenant.create")
    assert created[0]["details"] == {"tenant": "globex", "admin": "gadmin"}


def test_other_tenants_admins_and_non_admins_cannot_create_tenants(globex) -> None:  # type: ignore[no-untyped-def]
    w = globex
    # gadmin holds sys:* manage (so sys:tenants) in globex, but globex is not the installation
    for who in ("gadmin", "alice", "mallory"):
        r = _create(w, who, name=f"evil-{who}", admin=f"evil-{who}-admin")
        assert r.status_code == 403, (who, r.text)
        assert w.http.get("/v1/tenants", headers=w.as_(who)).status_code == 403
    # gadmin grants his own tenant an explicit sys:tenants rule through a role: still refused
    r = w.http.post(
        "/v1/policy/rules",
        json={"add": ["p, role:admin, globex, sys:tenants, *, *, manage, allow, ,"]},
        headers=w.as_("gadmin"),
    )
    assert _create(w, "gadmin", name="evil", admin="evil-admin").status_code == 403
    with w.state.sessions() as db:
        assert sorted(db.scalars(select(Tenant.name))) == ["acme", "globex"]
        assert db.scalar(select(Principal).where(Principal.name.like("evil%"))) is None


def test_bad_or_clashing_tenants_change_nothing(globex) -> None:  # type: ignore[no-untyped-def]
    w = globex
    with w.state.sessions() as db:
        rules = len(list(db.scalars(select(CasbinRule.id))))
    for body, status in [
        ({"name": "globex", "admin": "other"}, 409),
        ({"name": "initech", "admin": "alice"}, 409),  # principal names are global
        ({"name": "Bad Name", "admin": "x"}, 422),
        ({"name": "initech", "admin": "../root"}, 422),
        ({"name": "initech"}, 422),
        ({"name": "initech", "admin": "pat", "installation": True}, 422),
        ({"name": "x" * 65, "admin": "pat"}, 422),
        ({"name": "initech", "admin": "pat", "founder": "pat"}, 422),
        ({"name": "initech", "admin": "pat", "founder": "alice"}, 409),
        ({"name": "initech", "admin": "pat", "founder": "<script>"}, 422),
    ]:
        r = w.http.post("/v1/tenants", json=body, headers=w.as_("admin"))
        assert r.status_code == status, (body, r.text)
        assert set(r.json()) == {"error", "detail"}
    with w.state.sessions() as db:
        assert sorted(db.scalars(select(Tenant.name))) == ["acme", "globex"]
        assert len(list(db.scalars(select(CasbinRule.id)))) == rules
        assert db.scalar(select(Principal).where(Principal.name == "pat")) is None


def test_tenant_isolation_holds_through_the_api(globex) -> None:  # type: ignore[no-untyped-def]
    w = globex
    g = w.as_("gadmin")
    with w.state.sessions() as db:
        acme_sets = set(list_names(db, "acme"))
    assert "engagements" in acme_sets
    # datasets: none listed, none shown, none read, settings and policy check hide them
    assert w.http.get("/v1/datasets", headers=g).json()["datasets"] == []
    for name in sorted(acme_sets):
        assert w.http.get(f"/v1/datasets/{name}", headers=g).status_code == 404
        assert w.read("gadmin", name, purpose="training").status_code == 404
        assert w.http.get(f"/v1/access/settings/{name}", headers=g).status_code in (403, 404)
    # principals: only globex's; acme's people are 404s for tokens, revoke, disable, enable
    names = [p["name"] for p in w.http.get("/v1/principals", headers=g).json()["principals"]]
    assert names == ["gadmin"]
    alice_token = w.http.get("/v1/principals/alice/tokens", headers=w.as_("admin")).json()
    token_id = alice_token["tokens"][0]["id"]
    for method, path in [
        ("GET", "/v1/principals/alice/tokens"),
        ("POST", "/v1/principals/alice/tokens"),
        ("POST", f"/v1/principals/alice/tokens/{token_id}/revoke"),
        ("POST", f"/v1/principals/gadmin/tokens/{token_id}/revoke"),
        ("POST", "/v1/principals/alice/disable"),
        ("POST", "/v1/principals/admin/disable"),
        ("POST", "/v1/principals/alice/enable"),
        ("POST", "/v1/principals/alice/roles"),
    ]:
        r = w.http.request(
            method, path, json={"role": "admin"} if "roles" in path else {}, headers=g
        )
        assert r.status_code == 404, (method, path, r.text)
        assert "acme" not in r.text and token_id not in r.text.replace(token_id[:40], "")
    assert w.http.get("/v1/me", headers=w.as_("alice")).status_code == 200
    after = w.http.get("/v1/principals/alice/tokens", headers=w.as_("admin")).json()["tokens"]
    assert [(t["id"], t["state"]) for t in after] == [(token_id, "live")]
    # audit: nothing of acme's, though acme has plenty
    assert w.read("alice", "engagements", purpose="training").status_code in (200, 403, 404)
    events = w.http.get("/v1/audit/events", params={"limit": 1000}, headers=g).json()["events"]
    assert all(e["tenant"] in ("globex", None) for e in events), {e["tenant"] for e in events}
    assert {e["actor"] for e in events} <= {"gadmin", "admin"}  # gadmin's own refused reads
    # the platform admin appears once: the seed rules of globex, recorded in globex
    assert [e["action"] for e in events if e["actor"] == "admin"] == ["policy.bootstrap"]
    # policy: acme's rules neither listed nor writable from globex
    rules = w.http.get("/v1/policy/rules", headers=g).json()
    assert "acme" not in str(rules)
    r = w.http.post(
        "/v1/policy/rules",
        json={"add": ["g, gadmin, role:admin, acme"]},
        headers=g,
    )
    assert r.status_code in (403, 422)
    # and the other way round: acme's admin sees nothing of globex's
    names = [
        p["name"] for p in w.http.get("/v1/principals", headers=w.as_("admin")).json()["principals"]
    ]
    assert "gadmin" not in names
    assert w.http.get("/v1/principals/gadmin/tokens", headers=w.as_("admin")).status_code == 404
    assert w.http.post("/v1/principals/gadmin/disable", headers=w.as_("admin")).status_code == 404


def test_service_accounts_jobs_and_disabled_admins_of_the_installation_are_refused(warden) -> None:  # type: ignore[no-untyped-def]
    w = warden
    made = w.http.post(
        "/v1/principals",
        json={"name": "ops-bot", "kind": "service", "roles": ["admin"]},
        headers=w.as_("admin"),
    )
    assert made.status_code == 202, made.text  # its role waits for review; no matter here
    bot = w.http.post("/v1/principals/ops-bot/tokens", json={}, headers=w.as_("admin"))
    w.tokens["ops-bot"] = bot.json()["token"]
    assert _create(w, "ops-bot", name="botco", admin="botco-admin").status_code == 403
    # a second acme admin is a platform admin until disabled
    link_role(w, "erin", "admin")  # roles by API are reviewed changes (tests/access)
    assert _create(w, "erin", name="initech", admin="iadmin").status_code == 201
    assert w.http.post("/v1/principals/erin/disable", headers=w.as_("admin")).status_code == 200
    assert _create(w, "erin", name="hooli", admin="hadmin").status_code == 401
    with w.state.sessions() as db:
        assert sorted(db.scalars(select(Tenant.name))) == ["acme", "initech"]


def test_a_tenant_with_a_founding_admin_can_widen_access_through_review(warden) -> None:  # type: ignore[no-untyped-def]
    """With one admin nobody could approve a widening change in the new tenant; `founder`
    names a second, and the two review each other (a token for someone else included)."""
    w = warden
    r = w.http.post(
        "/v1/tenants",
        json={"name": "globex", "admin": "gadmin", "founder": "gfounder"},
        headers=w.as_("admin"),
    )
    assert r.status_code == 201, r.text
    w.tokens["gadmin"] = r.json()["token"]
    w.tokens["gfounder"] = r.json()["founders"]["gfounder"]
    made = w.http.post(
        "/v1/principals", json={"name": "gina", "roles": ["ml_engineer"]}, headers=w.as_("gadmin")
    )
    assert made.status_code == 202, made.text
    minted = w.http.post("/v1/principals/gina/tokens", json={}, headers=w.as_("gadmin"))
    assert minted.status_code == 202, minted.text
    for change_id in (made.json()["change_id"], minted.json()["change_id"]):
        own = w.http.post(
            f"/v1/policy/changes/{change_id}/approve", json={}, headers=w.as_("gadmin")
        )
        assert own.status_code == 403, own.text  # never the proposer
        ok = w.http.post(
            f"/v1/policy/changes/{change_id}/approve", json={}, headers=w.as_("gfounder")
        )
        assert ok.status_code == 200 and ok.json()["state"] == "applied", ok.text
    w.tokens["gina"] = minted.json()["token"]
    me = w.http.get("/v1/principals/gina/tokens", headers=w.as_("gina"))
    assert me.status_code == 200, me.text
    created = [e for e in w.audit_events(action="tenant.create")]
    assert created[-1]["details"] == {"tenant": "globex", "admin": "gadmin", "founder": "gfounder"}
