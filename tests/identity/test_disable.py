"""Disabling a principal: every token refused on the next request, on every app instance over
the same database; its jobs' tokens too; the tenant's last admin cannot be disabled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from tests.access.conftest import link_role

from warden.api.app import create_app
from warden.core.platform import build_platform
from warden.db.session import unit_of_work
from warden.identity.caller import plain_digest
from warden.identity.service import get_principal
from warden.sandbox.gateway_socket import SocketGate
from warden.sandbox.models import Sandbox
from warden.sandbox.tokens import issue_job_token


def _post(warden, who: str, path: str):  # type: ignore[no-untyped-def]
    return warden.http.post(path, headers=warden.as_(who))


@pytest.fixture
def second(warden) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A second app instance (its own engine, pool and policy service) on the same database."""
    state = build_platform(warden.settings)
    state.policy.reload()
    client = TestClient(create_app(warden.settings, state=state))
    yield client
    client.close()
    state.engine.dispose()


def test_disable_is_refused_by_another_instance_on_the_next_request(warden, second) -> None:  # type: ignore[no-untyped-def]
    alice = warden.as_("alice")
    assert second.get("/v1/me", headers=alice).status_code == 200
    r = _post(warden, "admin", "/v1/principals/alice/disable")
    assert r.status_code == 200, r.text
    assert r.json()["disabled"] is True
    refused = second.get("/v1/me", headers=alice)
    assert refused.status_code == 401
    assert refused.json() == {"error": "Unauthenticated", "detail": "principal disabled"}
    assert warden.read("alice", "engagements", purpose="training").status_code == 401
    listed = warden.http.get("/v1/principals", headers=warden.as_("admin")).json()["principals"]
    assert {p["name"]: p["disabled"] for p in listed}["alice"] is True
    # enabled again through the second instance: the first accepts her on the next request
    assert (
        second.post("/v1/principals/alice/enable", headers=warden.as_("admin")).status_code == 200
    )
    assert warden.http.get("/v1/me", headers=alice).status_code == 200
    actions = [e["action"] for e in warden.audit_events()]
    assert "principal.disable" in actions and "principal.enable" in actions


def test_every_token_of_a_disabled_principal_is_refused(warden) -> None:  # type: ignore[no-untyped-def]
    extra = warden.http.post(
        "/v1/principals/alice/tokens", json={"label": "2"}, headers=warden.as_("alice")
    ).json()["token"]
    _post(warden, "admin", "/v1/principals/alice/disable")
    for secret in (warden.tokens["alice"], extra):
        r = warden.http.get("/v1/me", headers={"authorization": f"Bearer {secret}"})
        assert r.status_code == 401


def test_a_disabled_person_cannot_reenable_themselves(warden) -> None:  # type: ignore[no-untyped-def]
    # make erin an admin, then disable her: her old token cannot undo it, nor mint a new one
    link_role(warden, "erin", "admin")  # roles by API are reviewed changes (tests/access)
    assert _post(warden, "admin", "/v1/principals/erin/disable").status_code == 200
    for path in [
        "/v1/principals/erin/enable",
        "/v1/principals/erin/tokens",
        "/v1/principals/admin/disable",
    ]:
        assert _post(warden, "erin", path).status_code == 401, path
    assert warden.http.get("/v1/me", headers=warden.as_("erin")).status_code == 401
    assert warden.http.get("/v1/me", headers=warden.as_("admin")).status_code == 200


def test_job_token_of_a_disabled_launcher_is_refused(warden) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(warden.state.sessions) as db:
        alice = get_principal(db, "alice")
        sandbox = Sandbox(
            tenant_id=alice.tenant_id,
            tenant="acme",
            launcher_id=alice.id,
            launcher="alice",
            segment="ml",
            status="running",
            image="warden-ml",
            image_digest="sha256:" + "0" * 64,
            command=["python"],
            datasets=["engagements"],
            purpose="training",
            network="none",
            limits={},
            instance="test",
        )
        db.add(sandbox)
        db.flush()
        sandbox_id, job_token = sandbox.id, issue_job_token(db, sandbox)
    job = {"authorization": f"Bearer {job_token}"}
    socket = TestClient(SocketGate(warden.app, sandbox_id, plain_digest(job_token)))
    me = socket.get("/v1/me", headers=job)
    assert me.status_code == 200 and me.json()["kind"] == "job"
    # a job token may not touch tokens, neither its launcher's nor anyone's (nor over TCP)
    assert warden.http.get("/v1/principals/alice/tokens", headers=job).status_code == 401
    assert warden.http.post("/v1/principals/alice/tokens", json={}, headers=job).status_code == 401
    assert socket.get("/v1/principals/alice/tokens", headers=job).status_code == 404
    assert _post(warden, "admin", "/v1/principals/alice/disable").status_code == 200
    refused = socket.get("/v1/me", headers=job)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "principal disabled"
    assert warden.read("alice", "engagements", purpose="training").status_code == 401
    r = socket.post("/v1/datasets/engagements/read", json={"purpose": "training"}, headers=job)
    assert r.status_code == 401


def test_the_last_enabled_admin_cannot_be_disabled(warden) -> None:  # type: ignore[no-untyped-def]
    r = _post(warden, "admin", "/v1/principals/admin/disable")
    assert r.status_code == 409, r.text
    assert "last enabled admin" in r.json()["detail"]
    assert warden.http.get("/v1/me", headers=warden.as_("admin")).status_code == 200
    # with a second admin, one may go; then the other is the last one
    link_role(warden, "erin", "admin")
    assert _post(warden, "erin", "/v1/principals/admin/disable").status_code == 200
    assert _post(warden, "erin", "/v1/principals/erin/disable").status_code == 409
    # a disabled admin does not count as the other admin
    assert warden.http.get("/v1/me", headers=warden.as_("erin")).status_code == 200
    assert _post(warden, "erin", "/v1/principals/admin/enable").status_code == 200
    assert _post(warden, "admin", "/v1/principals/erin/disable").status_code == 200
    assert _post(warden, "admin", "/v1/principals/admin/disable").status_code == 409


def test_admin_may_disable_themselves_when_another_admin_remains(warden) -> None:  # type: ignore[no-untyped-def]
    link_role(warden, "erin", "admin")
    assert _post(warden, "admin", "/v1/principals/admin/disable").status_code == 200
    assert warden.http.get("/v1/me", headers=warden.as_("admin")).status_code == 401


def test_only_admins_disable_and_only_in_their_tenant(warden) -> None:  # type: ignore[no-untyped-def]
    assert _post(warden, "alice", "/v1/principals/mallory/disable").status_code == 403
    assert _post(warden, "alice", "/v1/principals/alice/disable").status_code == 403
    assert _post(warden, "mallory", "/v1/principals/alice/enable").status_code == 403
    missing = _post(warden, "admin", "/v1/principals/nobody/disable")
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail"}
    assert warden.http.get("/v1/me", headers=warden.as_("mallory")).status_code == 200
    # idempotent: enabling an enabled principal changes nothing and records nothing
    assert _post(warden, "admin", "/v1/principals/alice/enable").status_code == 200
    assert warden.audit_events(action="principal.enable") == []


def test_two_admins_disabling_each_other_at_once_leave_one(warden) -> None:  # type: ignore[no-untyped-def]
    import threading

    from warden.errors import Conflict
    from warden.identity.service import set_disabled

    link_role(warden, "erin", "admin")
    snapshot = warden.state.policy.ensure_fresh()
    now = warden.state.now()

    def can_manage(who: str) -> bool:
        return snapshot.can(who, "acme", "sys:principals", "manage", now)

    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def disable(name: str) -> None:
        try:
            with unit_of_work(warden.state.sessions) as db:
                target = get_principal(db, name)
                barrier.wait(timeout=30)
                set_disabled(db, target, True, can_manage=can_manage)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=disable, args=(n,)) for n in ("admin", "erin")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["ok", "refused"]
    with warden.state.sessions() as db:
        assert [get_principal(db, n).disabled for n in ("admin", "erin")].count(False) == 1
