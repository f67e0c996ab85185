"""A token minted for someone else lets its issuer act as them, with all their access: it is a
reviewed change, refused until a different person approves. Tried as an admin would: mint a
token for a person with access and read with it, approve it oneself, use it to approve, mint
one's own token with it, or keep it working after the change was denied."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from tests.access.conftest import Access
from warden.identity.models import ApiToken

READ = {"purpose": "training", "columns": ["user_id", "pin_id"], "limit": 3}


def _mint(access: Access, who: str, name: str, **body: Any) -> Any:
    return access.http.post(f"/v1/principals/{name}/tokens", json=body, headers=access.as_(who))


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_an_admin_cannot_read_as_someone_else_without_a_second_person(access: Access) -> None:
    minted = _mint(access, "admin", "alice", label="as alice")
    assert minted.status_code == 202, minted.text
    body = minted.json()
    change_id, secret = body["change_id"], body["token"]
    # Held: it authenticates nothing, so the read is refused (and audited as anonymous).
    r = access.http.post("/v1/datasets/engagements/read", json=READ, headers=_bearer(secret))
    assert r.status_code == 401, r.text
    assert change_id in r.json()["detail"] and "second person" in r.json()["detail"]
    refused = [e for e in access.w.audit_events(action="dataset.read") if e["decision"] != "allow"]
    assert refused and refused[-1]["actor"] == "anonymous"
    # The admin may not approve the token that lets them act as alice; alice may not either.
    r = access.http.post(
        f"/v1/policy/changes/{change_id}/approve", json={}, headers=access.as_("admin")
    )
    assert r.status_code == 403, r.text
    r = access.http.post(
        f"/v1/policy/changes/{change_id}/approve", json={}, headers=access.as_("alice")
    )
    assert r.status_code in (403, 404), r.text  # alice reviews no changes: she sees none
    # The mint is audited with its pending change; the listing says pending.
    [issued] = [
        e
        for e in access.w.audit_events(action="token.issue")
        if e["details"]["token_id"] == body["id"]
    ]
    assert issued["actor"] == "admin" and issued["details"]["pending_change"] == change_id
    listed = access.http.get("/v1/principals/alice/tokens", headers=access.as_("admin")).json()
    assert {t["id"]: t["state"] for t in listed["tokens"]}[body["id"]] == "pending"
    # A second person approves: now it reads, as alice, masked as alice's reads are.
    assert access.approve_change("ada", change_id)["state"] == "applied"
    r = access.http.post("/v1/datasets/engagements/read", json=READ, headers=_bearer(secret))
    assert r.status_code == 200, r.text


def test_a_held_token_does_nothing_at_all(access: Access) -> None:
    """Not even mint the person's own token (which would launder it), approve, or list."""
    minted = _mint(access, "admin", "ada").json()
    held = _bearer(minted["token"])
    change = access.propose("admin", ["p, mallory, acme, pins, *, *, read, allow, ,"]).json()
    before = access.fingerprint(), _token_count(access)
    for method, path, payload in (
        ("POST", "/v1/principals/ada/tokens", {}),
        ("POST", f"/v1/policy/changes/{change['change']['id']}/approve", {}),
        ("POST", f"/v1/policy/changes/{minted['change_id']}/approve", {}),
        ("GET", "/v1/principals/ada/tokens", None),
        ("GET", "/v1/audit/events", None),
    ):
        r = access.http.request(method, path, json=payload, headers=held)
        assert r.status_code == 401, (path, r.text)
    after = access.fingerprint(), _token_count(access)
    assert after[0].pop("audit_max_seq") - before[0].pop("audit_max_seq") == 5  # each audited
    assert after == before


def _token_count(access: Access) -> int:
    with access.w.state.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(ApiToken)) or 0)


def test_a_denied_token_stays_refused(access: Access) -> None:
    minted = _mint(access, "admin", "alice").json()
    r = access.http.post(
        f"/v1/policy/changes/{minted['change_id']}/deny",
        json={"comment": "no reason to act as alice"},
        headers=access.as_("ada"),
    )
    assert r.status_code == 200 and r.json()["state"] == "denied", r.text
    r = access.http.post(
        "/v1/datasets/engagements/read", json=READ, headers=_bearer(minted["token"])
    )
    assert r.status_code == 401


def test_your_own_token_and_your_service_accounts_need_nobody(access: Access) -> None:
    own = _mint(access, "alice", "alice")
    assert own.status_code == 201 and own.json()["change_id"] is None
    r = access.http.post(
        "/v1/datasets/engagements/read", json=READ, headers=_bearer(own.json()["token"])
    )
    assert r.status_code == 200, r.text
    made = access.http.post(
        "/v1/principals", json={"name": "etl", "kind": "service"}, headers=access.as_("admin")
    )
    assert made.status_code == 201, made.text  # owned by its creator, the admin
    assert _mint(access, "admin", "etl").status_code == 201
    other = access.http.post(
        "/v1/principals",
        json={"name": "etl2", "kind": "service", "owner": "sam"},
        headers=access.as_("admin"),
    )
    assert other.status_code == 201, other.text
    assert _mint(access, "admin", "etl2").status_code == 202  # sam's, not the admin's


def test_a_job_token_or_a_bad_body_mints_nothing(access: Access) -> None:
    before = access.fingerprint()
    assert _mint(access, "admin", "alice", ttl_days=100000).status_code == 422
    assert _mint(access, "admin", "nobody").status_code == 404
    assert access.fingerprint() == before
