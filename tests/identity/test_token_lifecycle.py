"""Token lifecycle: list, revoke, always expire (default and maximum per kind), a cap on live
tokens; who may see and revoke whose tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from warden.identity.models import ApiToken, Principal


def _tokens(warden, who: str, name: str):  # type: ignore[no-untyped-def]
    return warden.http.get(f"/v1/principals/{name}/tokens", headers=warden.as_(who))


def _mint(warden, who: str, name: str, **body: object):  # type: ignore[no-untyped-def]
    return warden.http.post(f"/v1/principals/{name}/tokens", json=body, headers=warden.as_(who))


def _revoke(warden, who: str, name: str, token_id: str):  # type: ignore[no-untyped-def]
    path = f"/v1/principals/{name}/tokens/{token_id}/revoke"
    return warden.http.post(path, headers=warden.as_(who))


def test_a_principal_lists_its_own_tokens_without_secrets(warden) -> None:  # type: ignore[no-untyped-def]
    minted = _mint(warden, "alice", "alice", label="laptop")
    assert minted.status_code == 201, minted.text
    r = _tokens(warden, "alice", "alice")
    assert r.status_code == 200, r.text
    listed = r.json()["tokens"]
    assert {t["label"] for t in listed} == {"", "laptop"}
    assert all(t["state"] == "live" and t["expires_at"] for t in listed)
    assert minted.json()["id"] in {t["id"] for t in listed}
    assert warden.tokens["alice"] not in r.text and minted.json()["token"] not in r.text
    with warden.state.sessions() as db:
        hashes = list(db.scalars(select(ApiToken.token_hash)))
    assert not any(h in r.text for h in hashes)


def test_tokens_always_expire_with_the_kinds_default(warden) -> None:  # type: ignore[no-untyped-def]
    s = warden.settings
    made = warden.http.post(
        "/v1/principals", json={"name": "svc", "kind": "service"}, headers=warden.as_("admin")
    )
    assert made.status_code == 201
    for name, days in [
        ("alice", s.token_person_default_days),
        ("svc", s.token_service_default_days),
    ]:
        before = datetime.now(UTC)
        r = _mint(warden, "admin", name)
        assert r.status_code in (201, 202), r.text  # 202: held for a second person
        expires = datetime.fromisoformat(r.json()["expires_at"])
        assert before + timedelta(days=days) - timedelta(minutes=5) <= expires
        assert expires <= datetime.now(UTC) + timedelta(days=days)
    # fixtures' tokens too: nothing in the table lives forever
    with warden.state.sessions() as db:
        assert db.scalar(select(ApiToken).where(ApiToken.expires_at.is_(None))) is None


def test_lifetime_above_the_kinds_maximum_is_refused(warden) -> None:  # type: ignore[no-untyped-def]
    s = warden.settings
    warden.http.post(
        "/v1/principals", json={"name": "svc", "kind": "service"}, headers=warden.as_("admin")
    )
    with warden.state.sessions() as db:
        count = len(list(db.scalars(select(ApiToken.id))))
    for who, name, days in [
        ("alice", "alice", s.token_person_max_days + 1),
        ("admin", "alice", s.token_person_max_days + 1),
        ("admin", "svc", s.token_service_max_days + 1),
        ("alice", "alice", 3650),
    ]:
        r = _mint(warden, who, name, ttl_days=days)
        assert r.status_code == 422, (who, name, days, r.text)
        assert set(r.json()) == {"error", "detail"}
        assert "at most" in r.json()["detail"]
    for bad in [0, -1, 3651, "forever", None, 1.5]:
        r = _mint(warden, "alice", "alice", ttl_days=bad)
        if bad is None:
            assert r.status_code == 201  # none: the default
            continue
        assert r.status_code == 422, (bad, r.text)
    ok = _mint(warden, "alice", "alice", ttl_days=s.token_person_max_days)
    assert ok.status_code == 201
    with warden.state.sessions() as db:
        assert len(list(db.scalars(select(ApiToken.id)))) == count + 2


def test_minting_beyond_the_live_cap_is_refused(warden) -> None:  # type: ignore[no-untyped-def]
    cap = warden.settings.token_max_live_per_principal
    minted = [_mint(warden, "alice", "alice", label=f"t{i}") for i in range(cap - 1)]
    assert all(r.status_code == 201 for r in minted)  # alice already held one
    over = _mint(warden, "alice", "alice")
    assert over.status_code == 409, over.text
    assert "revoke one first" in over.json()["detail"]
    # an admin minting for her is held to the same cap
    assert _mint(warden, "admin", "alice").status_code == 409
    # revoked and expired tokens no longer count
    assert _revoke(warden, "alice", "alice", minted[0].json()["id"]).status_code == 200
    assert _mint(warden, "alice", "alice").status_code == 201
    with warden.state.sessions() as db:
        db.execute(
            update(ApiToken)
            .where(ApiToken.id == minted[1].json()["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.commit()
    assert _mint(warden, "alice", "alice").status_code == 201
    assert _mint(warden, "alice", "alice").status_code == 409


def test_revoked_token_is_refused_on_the_next_request(warden) -> None:  # type: ignore[no-untyped-def]
    minted = _mint(warden, "alice", "alice", label="ci").json()
    spare = {"authorization": f"Bearer {minted['token']}"}
    assert warden.http.get("/v1/me", headers=spare).status_code == 200
    r = _revoke(warden, "alice", "alice", minted["id"])
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "revoked" and r.json()["revoked_by"] == "alice"
    used = warden.http.get("/v1/me", headers=spare)
    assert used.status_code == 401
    assert used.json() == {"error": "Unauthenticated", "detail": "token revoked"}
    # nor read data (the gateway authenticates on its own path, and audits the refusal)
    read = warden.http.post(
        "/v1/datasets/pins/read", json={"purpose": "training", "limit": 1}, headers=spare
    )
    assert read.status_code == 401
    assert (
        warden.audit_events(action="dataset.read")[0]["reason"] == "Unauthenticated: token revoked"
    )
    # the revoked token cannot list, mint, or revoke anything either
    for method, path in [
        ("GET", "/v1/principals/alice/tokens"),
        ("POST", "/v1/principals/alice/tokens"),
        ("POST", f"/v1/principals/alice/tokens/{minted['id']}/revoke"),
    ]:
        assert warden.http.request(method, path, json={}, headers=spare).status_code == 401
    # her other token still works; revoking again is idempotent and keeps the first record
    assert warden.http.get("/v1/me", headers=warden.as_("alice")).status_code == 200
    again = _revoke(warden, "admin", "alice", minted["id"])
    assert again.status_code == 200 and again.json()["revoked_by"] == "alice"
    events = warden.audit_events(action="token.revoke")
    assert len(events) == 1 and events[0]["actor"] == "alice"


def test_admin_revokes_a_tenant_members_token(warden) -> None:  # type: ignore[no-untyped-def]
    listed = _tokens(warden, "admin", "alice").json()["tokens"]
    assert len(listed) == 1
    assert _revoke(warden, "admin", "alice", listed[0]["id"]).status_code == 200
    assert warden.http.get("/v1/me", headers=warden.as_("alice")).status_code == 401
    assert _tokens(warden, "admin", "alice").json()["tokens"][0]["revoked_by"] == "admin"


def test_expired_token_is_listed_as_expired_and_refused(warden) -> None:  # type: ignore[no-untyped-def]
    with warden.state.sessions() as db:
        alice = db.scalar(select(Principal).where(Principal.name == "alice"))
        assert alice is not None
        db.execute(
            update(ApiToken)
            .where(ApiToken.principal_id == alice.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.commit()
    assert warden.http.get("/v1/me", headers=warden.as_("alice")).status_code == 401
    assert _tokens(warden, "admin", "alice").json()["tokens"][0]["state"] == "expired"


def test_a_token_without_expiry_is_refused(warden) -> None:  # type: ignore[no-untyped-def]
    """An insider who clears expires_at in the database does not get an eternal token."""
    with warden.state.sessions() as db:
        db.execute(update(ApiToken).values(expires_at=None))
        db.commit()
    r = warden.http.get("/v1/me", headers=warden.as_("alice"))
    assert r.status_code == 401 and r.json()["detail"] == "token expired"


def test_others_tokens_need_manage_and_stay_in_the_tenant(warden) -> None:  # type: ignore[no-untyped-def]
    admin_id = _tokens(warden, "admin", "admin").json()["tokens"][0]["id"]
    # a non-admin may not list, mint for, or revoke someone else's tokens
    assert _tokens(warden, "alice", "admin").status_code == 403
    assert _mint(warden, "alice", "mallory").status_code == 403
    assert _revoke(warden, "alice", "admin", admin_id).status_code == 403
    # nor reach another principal's token through her own name
    r = _revoke(warden, "alice", "alice", admin_id)
    assert r.status_code == 404, r.text
    assert admin_id[:40] in r.json()["detail"] and "admin" not in r.json()["detail"]
    assert warden.http.get("/v1/me", headers=warden.as_("admin")).status_code == 200
    # unknown principals and unknown ids: 404 in the one error shape
    assert _tokens(warden, "admin", "nobody").status_code == 404
    bad = _revoke(warden, "admin", "alice", "0" * 32)
    assert bad.status_code == 404 and set(bad.json()) == {"error", "detail"}
    assert _revoke(warden, "admin", "alice", "x" * 5000).status_code == 404


def test_a_burst_of_concurrent_mints_cannot_pass_the_cap(warden) -> None:  # type: ignore[no-untyped-def]
    """Twelve mints at once, each in its own transaction: the cap still holds exactly."""
    import threading

    from warden.db.session import unit_of_work
    from warden.errors import Conflict
    from warden.identity.service import get_principal, mint_token

    cap = warden.settings.token_max_live_per_principal
    tries = cap + 2
    barrier = threading.Barrier(tries)
    outcomes: list[str] = []

    def mint() -> None:
        try:
            with unit_of_work(warden.state.sessions) as db:
                alice = get_principal(db, "alice")
                barrier.wait(timeout=30)
                mint_token(db, alice, settings=warden.settings)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=mint) for _ in range(tries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == sorted(["ok"] * (cap - 1) + ["refused"] * 3)
    listed = _tokens(warden, "alice", "alice").json()["tokens"]
    assert sum(t["state"] == "live" for t in listed) == cap


def test_last_use_is_kept_to_the_hour(warden) -> None:  # type: ignore[no-untyped-def]
    minted = _mint(warden, "admin", "alice", label="unused").json()
    assert warden.http.get("/v1/me", headers=warden.as_("alice")).status_code == 200
    listed = {t["label"]: t for t in _tokens(warden, "alice", "alice").json()["tokens"]}
    first = listed[""]["last_used_at"]
    assert first is not None and listed["unused"]["last_used_at"] is None
    # within the hour: no new write
    warden.http.get("/v1/me", headers=warden.as_("alice"))
    again = {t["label"]: t for t in _tokens(warden, "alice", "alice").json()["tokens"]}
    assert again[""]["last_used_at"] == first
    # an hour later (moved in the database): noted again
    stale = datetime.now(UTC) - timedelta(hours=2)
    with warden.state.sessions() as db:
        db.execute(update(ApiToken).values(last_used_at=stale))
        db.commit()
    warden.http.get("/v1/me", headers=warden.as_("alice"))
    later = {t["label"]: t for t in _tokens(warden, "alice", "alice").json()["tokens"]}
    assert datetime.fromisoformat(later[""]["last_used_at"]) > stale + timedelta(hours=1)
    # a refused (revoked) token's use is not noted
    _revoke(warden, "alice", "alice", minted["id"])
    bad = {"authorization": f"Bearer {minted['token']}"}
    assert warden.http.get("/v1/me", headers=bad).status_code == 401
    final = {t["label"]: t for t in _tokens(warden, "alice", "alice").json()["tokens"]}
    assert datetime.fromisoformat(final["unused"]["last_used_at"]) == stale
