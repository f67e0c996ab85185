"""API tokens: stored only as hashes; expired, revoked and unknown tokens are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update
from tests.access.conftest import bootstrap_people

from warden.identity.models import ApiToken


def test_tokens_are_stored_only_as_hashes(warden) -> None:  # type: ignore[no-untyped-def]
    with warden.state.sessions() as db:
        hashes = list(db.scalars(select(ApiToken.token_hash)))
        dump = " ".join(str(row) for row in db.execute(text("SELECT * FROM api_token")))
    assert len(hashes) == 4
    for secret in warden.tokens.values():
        assert secret not in dump


def test_every_api_call_is_authenticated(warden) -> None:  # type: ignore[no-untyped-def]
    for method, path in [
        ("GET", "/v1/me"),
        ("GET", "/v1/datasets"),
        ("GET", "/v1/principals"),
        ("GET", "/v1/audit/events"),
        ("POST", "/v1/policy/check"),
        ("GET", "/v1/policy"),
    ]:
        r = warden.http.request(method, path)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json()["error"] == "Unauthenticated"


def test_expired_token_is_refused(warden) -> None:  # type: ignore[no-untyped-def]
    assert warden.http.get("/v1/me", headers=warden.as_("alice")).status_code == 200
    with warden.state.sessions() as db:
        db.execute(update(ApiToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        db.commit()
    r = warden.http.get("/v1/me", headers=warden.as_("alice"))
    assert r.status_code == 401
    assert r.json() == {"error": "Unauthenticated", "detail": "token expired"}


def test_revoked_token_is_refused(warden) -> None:  # type: ignore[no-untyped-def]
    with warden.state.sessions() as db:
        db.execute(update(ApiToken).values(revoked_at=datetime.now(UTC)))
        db.commit()
    assert warden.http.get("/v1/me", headers=warden.as_("alice")).status_code == 401


def test_me_names_the_caller_and_roles(warden) -> None:  # type: ignore[no-untyped-def]
    me = warden.http.get("/v1/me", headers=warden.as_("alice")).json()
    assert me == {
        "name": "alice",
        "kind": "person",
        "tenant": "acme",
        "roles": ["role:ml_engineer"],
        "disabled": False,
    }


def test_only_admins_manage_principals(warden) -> None:  # type: ignore[no-untyped-def]
    body = {"name": "bob", "kind": "person", "roles": ["ml_engineer"]}
    r = warden.http.post("/v1/principals", json=body, headers=warden.as_("alice"))
    assert r.status_code == 403
    r = warden.http.post("/v1/principals", json=body, headers=warden.as_("admin"))
    assert r.status_code == 202, r.text  # created; its role waits for a second admin
    assert (r.json()["roles"], r.json()["pending_roles"]) == ([], ["role:ml_engineer"])
    bootstrap_people(warden, {"ada": ["admin"]})
    approved = warden.http.post(
        f"/v1/policy/changes/{r.json()['change_id']}/approve", json={}, headers=warden.as_("ada")
    )
    assert approved.status_code == 200 and approved.json()["state"] == "applied"
    again = warden.http.post("/v1/principals", json=body, headers=warden.as_("admin"))
    assert again.status_code == 409
    assert again.json()["error"] == "Conflict"


def test_bad_principal_names_change_nothing(warden) -> None:  # type: ignore[no-untyped-def]
    for name in ["Robert'); DROP TABLE principal;--", "../admin", "", "x" * 65]:
        r = warden.http.post("/v1/principals", json={"name": name}, headers=warden.as_("admin"))
        assert r.status_code == 422, (name, r.text)
        assert set(r.json()) == {"error", "detail"}
    names = [
        p["name"]
        for p in warden.http.get("/v1/principals", headers=warden.as_("admin")).json()["principals"]
    ]
    assert sorted(names) == ["admin", "alice", "erin", "mallory"]


def test_role_changes_are_audited_policy_changes(warden) -> None:  # type: ignore[no-untyped-def]
    before = warden.http.get("/v1/policy", headers=warden.as_("admin")).json()["version"]
    r = warden.http.post(
        "/v1/principals/mallory/roles", json={"role": "auditor"}, headers=warden.as_("admin")
    )
    assert r.status_code == 202 and r.json()["pending_roles"] == ["role:auditor"]
    bootstrap_people(warden, {"ada": ["admin"]})
    before = warden.http.get("/v1/policy", headers=warden.as_("admin")).json()["version"]
    approved = warden.http.post(
        f"/v1/policy/changes/{r.json()['change_id']}/approve", json={}, headers=warden.as_("ada")
    )
    assert approved.status_code == 200 and approved.json()["state"] == "applied"
    after = warden.http.get("/v1/policy", headers=warden.as_("admin")).json()["version"]
    assert after == before + 1
    changes = warden.audit_events(action="policy.change")
    assert changes[0]["policy_version"] == after
    # and mallory, now an auditor, may query the audit log
    assert warden.http.get("/v1/audit/events", headers=warden.as_("mallory")).status_code == 200


def test_admins_cannot_grant_themselves_roles_or_rules(warden) -> None:  # type: ignore[no-untyped-def]
    admin = warden.as_("admin")
    r = warden.http.post("/v1/principals/admin/roles", json={"role": "ml_engineer"}, headers=admin)
    assert r.status_code == 403
    for line in [
        "p, admin, acme, engagements, *, training, read, allow, ,",
        "g, admin, role:ml_engineer, acme",
        "p, alice, acme, gold, *, training, read, allow, gr-forged, 2030-01-01T00:00:00Z",
    ]:
        r = warden.http.post("/v1/policy/rules", json={"add": [line]}, headers=admin)
        assert r.status_code == 403, line
    # refused: 403 where the admin may browse the catalog (one visibility rule), else 404
    assert warden.read("admin", "engagements", purpose="training").status_code in (403, 404)
