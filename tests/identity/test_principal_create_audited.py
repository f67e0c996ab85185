"""Creating a principal leaves its record in the same transaction, with or without roles: an
admin cannot add people (or service accounts, whose tokens they may then ask for) unseen."""

from __future__ import annotations


def test_a_principal_created_without_roles_is_audited(warden) -> None:  # type: ignore[no-untyped-def]
    admin = warden.as_("admin")
    made = warden.http.post(
        "/v1/principals", json={"name": "quiet-svc", "kind": "service"}, headers=admin
    )
    assert made.status_code == 201, made.text
    (event,) = [
        e for e in warden.audit_events(action="principal.create") if e["decision"] == "allow"
    ]
    assert event["actor"] == "admin"
    assert event["details"]["principal"] == "quiet-svc"
    assert event["details"]["kind"] == "service"


def test_a_refused_create_leaves_no_allow_record(warden) -> None:  # type: ignore[no-untyped-def]
    bad = warden.http.post(
        "/v1/principals", json={"name": "alice", "kind": "person"}, headers=warden.as_("admin")
    )
    assert bad.status_code == 409
    assert not [
        e for e in warden.audit_events(action="principal.create") if e["decision"] == "allow"
    ]
