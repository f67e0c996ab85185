"""The access lifecycle through the API: request → reviews → grant → reads → revoke/expire."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.access.conftest import T0, Access, allow_browse


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def test_internal_request_needs_one_approval_and_reads_name_the_grant(access: Access) -> None:
    before = access.read("erin", "pins", purpose="analytics", columns=["pin_id"])
    assert before.status_code == 403  # erin may browse the catalog, not read pins

    req = access.ask(
        "erin", dataset="pins", columns=["pin_id", "category"], purpose="analytics", duration="7d"
    )
    assert req["state"] == "pending"
    assert (req["classification"], req["quorum"], req["duration"]) == ("internal", 1, "7d")
    assert req["id"] in {
        r["id"] for r in access.get("sam", "/requests", reviewable=True).json()["requests"]
    }

    done = access.approve("sam", req["id"])
    assert done["state"] == "approved"
    assert done["approvals"] == ["sam"]
    grant = access.grant("erin", done["grant_id"])
    assert grant["state"] == "active"
    assert grant["columns"] == ["pin_id", "category"]
    assert grant["expires_at"] == _iso(T0 + timedelta(days=7))

    r = access.read("erin", "pins", purpose="analytics", columns=["pin_id", "category"], limit=5)
    assert access.frame(r).height == 5
    event = access.event(r.headers["x-warden-audit-event"])
    assert event["decision"] == "allow"
    assert event["grant_ids"] == [grant["id"]]
    assert grant["id"] in event["rule"]

    # The grant covers what was asked for, nothing more.
    assert access.read("erin", "pins", purpose="analytics", columns=["merchant"]).status_code == 403
    assert access.read("erin", "pins", purpose="training", columns=["pin_id"]).status_code == 403

    shown = access.show("erin", req["id"])
    steps = [
        (h["subject"], h["event"], h["from_state"], h["to_state"], h["actor"])
        for h in shown["history"]
    ]
    assert steps == [
        ("request", "created", None, "pending", "erin"),
        ("request", "approve", "pending", "pending", "sam"),
        ("request", "approved", "pending", "approved", "sam"),
        ("grant", "created", None, "active", "sam"),
    ]
    assert all(h["audit_event_id"] for h in shown["history"])
    assert shown["reviews"][0]["reviewer"] == "sam"


def test_pii_needs_two_distinct_approvers_and_identifiers_stay_masked(access: Access) -> None:
    req = access.ask("alice", dataset="users", purpose="analytics", duration="3d")
    assert (req["classification"], req["quorum"]) == ("pii", 2)
    assert req["columns"] == ["user_id", "region", "signup_day"]

    first = access.approve("sam", req["id"])
    assert (first["state"], first["approvals"]) == ("pending", ["sam"])
    assert access.read("alice", "users", purpose="analytics").status_code in (403, 404)

    second = access.approve("olga", req["id"])
    assert (second["state"], second["approvals"]) == ("approved", ["sam", "olga"])
    grant = access.grant("alice", second["grant_id"])
    assert grant["masked_columns"] == ["user_id"]

    r = access.read("alice", "users", purpose="analytics", limit=20)
    df = access.frame(r)
    assert df.columns == ["user_id", "region", "signup_day"]
    assert r.headers["x-warden-masked-columns"] == "user_id"
    assert access.event(r.headers["x-warden-audit-event"])["grant_ids"] == [grant["id"]]


def test_one_deny_rejects_even_after_an_approval(access: Access) -> None:
    req = access.ask("alice", dataset="users", purpose="analytics", duration="1d")
    access.approve("sam", req["id"])
    denied = access.review("tess", req["id"], "deny", "no analytics on users")
    assert denied.status_code == 200
    body = denied.json()
    assert (body["state"], body["grant_id"]) == ("denied", None)
    assert access.review("olga", req["id"], "approve").status_code == 409
    assert access.read("alice", "users", purpose="analytics").status_code in (403, 404)
    history = access.show("alice", req["id"])["history"]
    assert history[-1]["event"] == "denied" and history[-1]["reason"] == "no analytics on users"


def _public_dataset(access: Access, name: str) -> None:
    """A public dataset derived from nothing (the seeded ones are all internal or pii now:
    pin_pairs derives from engagements)."""
    import polars as pl

    from warden.catalog.service import ColumnInfo, register
    from warden.db.session import unit_of_work
    from warden.identity.service import get_principal, get_tenant

    state = access.w.state
    source = state.settings.data_dir / f"{name}.parquet"
    pl.DataFrame({"digit": list(range(10))}).write_parquet(source)
    with unit_of_work(state.sessions) as db:
        register(
            db,
            datasets_dir=state.settings.datasets_dir,
            tenant=get_tenant(db, "acme"),
            owner=get_principal(db, "admin"),
            name=name,
            source=source,
            columns=[ColumnInfo("digit", "Int64", "public")],
            identifier_columns=[],
            allowed_purposes=["training"],
        )


def test_public_data_is_granted_at_once_and_audited(access: Access) -> None:
    _public_dataset(access, "digits")
    allow_browse(access.w, "mallory")  # no role: she must at least know the dataset exists
    req = access.ask("mallory", dataset="digits", purpose="training", duration="30d")
    assert (req["state"], req["quorum"]) == ("approved", 0)
    assert req["grant_id"]
    assert access.frame(access.read("mallory", "digits", purpose="training", limit=3)).height == 3
    actions = [(e["action"], e["actor"]) for e in access.events() if req["id"] in str(e["details"])]
    assert actions == [
        ("access.request.created", "mallory"),
        ("access.request.approved", "system"),
        ("access.grant.created", "system"),
    ]


def test_duration_starts_at_approval_not_at_request(access: Access) -> None:
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d", columns=["pin_id"])
    approved_at = access.clock.advance(days=3)
    done = access.approve("sam", req["id"])
    grant = access.grant("erin", done["grant_id"])
    assert grant["starts_at"] == _iso(approved_at)
    assert grant["expires_at"] == _iso(approved_at + timedelta(days=1))
    assert access.read("erin", "pins", purpose="analytics", columns=["pin_id"]).status_code == 200


def test_expired_grant_denies_the_next_read_with_no_job_running(access: Access) -> None:
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="2h", columns=["pin_id"])
    grant_id = access.approve("sam", req["id"])["grant_id"]
    assert access.read("erin", "pins", purpose="analytics", columns=["pin_id"]).status_code == 200

    access.clock.advance(hours=2)  # exactly at expiry: no longer valid
    denied = access.read("erin", "pins", purpose="analytics", columns=["pin_id"])
    # erin knew the dataset through her grant: she is told it ended, and how to ask again
    assert denied.status_code == 403, denied.text
    assert f"your access to 'pins' ended ({grant_id} active)" in denied.json()["detail"]
    assert "warden access request pins --purpose analytics" in denied.json()["detail"]

    grant = access.grant("erin", grant_id)  # the state catches up lazily on access
    assert grant["state"] == "expired"
    assert grant["history"][-1]["event"] == "expired"
    assert grant["history"][-1]["actor"] == "system"
    assert access.post("sam", f"/grants/{grant_id}/revoke", {"reason": "late"}).status_code == 409

    tidy = access.post("admin", "/tidy")
    assert tidy.status_code == 200 and tidy.json()["rules_pruned"] == 1
    assert grant_id not in str(
        access.http.get("/v1/policy/rules", headers=access.as_("admin")).json()
    )


def test_pending_request_expires_and_can_no_longer_be_reviewed(access: Access) -> None:
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    access.clock.advance(days=7, seconds=1)
    assert access.show("erin", req["id"])["state"] == "expired"
    r = access.review("sam", req["id"], "approve")
    assert r.status_code == 409 and r.json()["error"] == "Conflict"
    assert [e["action"] for e in access.events("access.request.expired")] == [
        "access.request.expired"
    ]


def test_revocation_between_two_reads(access: Access) -> None:
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="7d", columns=["pin_id"])
    grant_id = access.approve("sam", req["id"])["grant_id"]
    first = access.read("erin", "pins", purpose="analytics", columns=["pin_id"])
    assert first.status_code == 200

    revoked = access.post("sam", f"/grants/{grant_id}/revoke", {"reason": "project ended"})
    assert revoked.status_code == 200
    assert (revoked.json()["state"], revoked.json()["revoked_by"]) == ("revoked", "sam")

    second = access.read("erin", "pins", purpose="analytics", columns=["pin_id"])
    assert second.status_code == 403
    assert f"your access to 'pins' ended ({grant_id} revoked)" in second.json()["detail"]
    assert access.event(first.headers["x-warden-audit-event"])["grant_ids"] == [grant_id]
    assert access.post("sam", f"/grants/{grant_id}/revoke", {"reason": "again"}).status_code == 409
    # Nothing is deleted: the request stays approved, the grant stays, revoked.
    assert access.show("erin", req["id"])["state"] == "approved"
    assert access.get("erin", "/grants", state="revoked").json()["grants"][0]["id"] == grant_id


def test_the_holder_may_give_a_grant_up(access: Access) -> None:
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="7d", columns=["pin_id"])
    grant_id = access.approve("sam", req["id"])["grant_id"]
    assert access.post("mallory", f"/grants/{grant_id}/revoke", {"reason": "x"}).status_code == 404
    assert access.post("erin", f"/grants/{grant_id}/revoke", {"reason": "done"}).status_code == 200


def test_cancel_is_for_the_requester_while_pending(access: Access) -> None:
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    assert access.post("sam", f"/requests/{req['id']}/cancel", {}).status_code == 403
    assert access.post("mallory", f"/requests/{req['id']}/cancel", {}).status_code == 404
    r = access.post("erin", f"/requests/{req['id']}/cancel", {"reason": "not needed"})
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert access.post("erin", f"/requests/{req['id']}/cancel", {}).status_code == 409
    assert access.review("sam", req["id"], "approve").status_code == 409


def test_list_filters_and_visibility(access: Access) -> None:
    a = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    b = access.ask("alice", dataset="users", purpose="analytics", duration="1d")
    access.approve("sam", b["id"])

    def ids(who: str, **params: object) -> set[str]:
        r = access.get(who, "/requests", **params)
        assert r.status_code == 200, r.text
        return {x["id"] for x in r.json()["requests"]}

    assert ids("erin") == {a["id"]}  # her own only
    assert ids("erin", mine=True) == {a["id"]}
    assert ids("mallory") == set()
    assert ids("sam") == {a["id"], b["id"]}
    assert ids("sam", reviewable=True) == {a["id"]}  # b: sam already approved
    assert ids("tess", reviewable=True) == {a["id"], b["id"]}
    assert ids("alice", reviewable=True) == set()
    assert ids("admin", state="pending", dataset="users") == {b["id"]}
    assert access.get("mallory", f"/requests/{a['id']}").status_code == 404


def test_break_glass_is_flagged_on_every_read_until_signed_off(access: Access) -> None:
    access.allow_break_glass()
    body = {"dataset": "users", "purpose": "analytics", "reason": "incident 42"}
    assert access.post("mallory", "/break-glass", body).status_code == 403

    r = access.post("alice", "/break-glass", body)
    assert r.status_code == 201, r.text
    grant = r.json()
    assert grant["id"].startswith("bg-")
    assert (grant["break_glass"], grant["needs_review"]) == (True, True)
    assert grant["expires_at"] == _iso(T0 + timedelta(minutes=60))
    assert grant["masked_columns"] == ["user_id"]

    read = access.read("alice", "users", purpose="analytics", limit=3)
    assert access.frame(read).height == 3
    event = access.event(read.headers["x-warden-audit-event"])
    assert event["grant_ids"] == [grant["id"]]
    assert event["details"]["break_glass"] is True
    # A read under her role (no break-glass grant involved) is not flagged.
    plain = access.read("alice", "users", purpose="training", columns=["region"], limit=1)
    assert "break_glass" not in access.event(plain.headers["x-warden-audit-event"])["details"]

    listed = access.get("sam", "/grants", needs_review=True).json()["grants"]
    assert [g["id"] for g in listed] == [grant["id"]]
    assert access.post("alice", f"/grants/{grant['id']}/sign-off", {}).status_code == 403
    assert access.post("mallory", f"/grants/{grant['id']}/sign-off", {}).status_code == 403
    signed = access.post("sam", f"/grants/{grant['id']}/sign-off", {"comment": "checked"})
    assert signed.status_code == 200
    assert (signed.json()["needs_review"], signed.json()["signed_off_by"]) == (False, "sam")
    assert access.post("tess", f"/grants/{grant['id']}/sign-off", {}).status_code == 409
    assert access.get("sam", "/grants", needs_review=True).json()["grants"] == []

    access.clock.advance(minutes=61)
    assert access.read("alice", "users", purpose="analytics").status_code in (403, 404)


def test_dataset_terms_override_quorum_and_max_duration(access: Access) -> None:
    assert access.get("erin", "/settings/pins").json()["quorum"] == 1
    refused = access.http.put(
        "/v1/access/settings/pins", json={"quorum": 2}, headers=access.as_("erin")
    )
    assert refused.status_code == 403
    r = access.http.put(
        "/v1/access/settings/pins",
        json={"quorum": 2, "max_duration": "2d"},
        headers=access.as_("admin"),  # the owner of the taste graph
    )
    assert r.status_code == 200, r.text
    assert (r.json()["quorum"], r.json()["max_duration"], r.json()["overridden"]) == (
        2,
        "2d",
        ["quorum", "max_duration"],
    )
    assert (
        access.request("erin", dataset="pins", purpose="analytics", duration="3d").status_code
        == 422
    )
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="2d")
    assert access.approve("sam", req["id"])["state"] == "pending"
    assert access.approve("tess", req["id"])["state"] == "approved"


def test_every_transition_is_audited_and_the_chain_stays_intact(access: Access) -> None:
    access.allow_break_glass()
    a = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    grant_id = access.approve("sam", a["id"])["grant_id"]
    access.post("sam", f"/grants/{grant_id}/revoke", {"reason": "done"})
    b = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    access.review("sam", b["id"], "deny")
    c = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    access.post("erin", f"/requests/{c['id']}/cancel", {})
    bg = access.post(
        "alice", "/break-glass", {"dataset": "pins", "purpose": "training", "reason": "x"}
    )
    access.post("sam", f"/grants/{bg.json()['id']}/sign-off", {})
    access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    access.clock.advance(days=8)
    access.get("erin", "/requests")

    actions = [e["action"] for e in access.events()]
    for action in (
        "access.request.created",
        "access.request.reviewed",
        "access.request.approved",
        "access.grant.created",
        "access.grant.revoked",
        "access.request.denied",
        "access.request.cancelled",
        "access.break_glass",
        "access.grant.signed_off",
        "access.request.expired",
        "access.grant.expired",
    ):
        assert action in actions, action
    # One audit event per transition row, and each row names its event.
    with access.w.state.sessions() as db:
        from sqlalchemy import select

        from warden.access.models import AccessTransition

        rows = db.scalars(
            select(AccessTransition).where(AccessTransition.subject.in_(["request", "grant"]))
        )
        linked = [t.audit_event_id for t in rows]
    assert len(linked) == len(set(linked)) == len(actions)
    assert set(linked) == {e["id"] for e in access.events()}
    verified = access.verify_chain()
    assert verified["ok"] is True and verified["first_broken"] is None


def test_each_transition_is_an_opentelemetry_span_carrying_its_audit_event(
    access: Access,
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from warden.audit import telemetry

    spans = InMemorySpanExporter()
    telemetry.shutdown()
    telemetry.setup_telemetry("warden-test", span_exporter=spans, install_global=False)
    try:
        req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
        grant_id = access.approve("sam", req["id"])["grant_id"]
        access.post("sam", f"/grants/{grant_id}/revoke", {"reason": "done"})
    finally:
        finished = spans.get_finished_spans()
        telemetry.shutdown()
    access_spans = {
        s.attributes["warden.audit.event_id"]: s.name
        for s in finished
        if s.name.startswith("warden.access.") and s.attributes
    }
    history = access.show("erin", req["id"])["history"]
    assert [access_spans[h["audit_event_id"]] for h in history] == [
        "warden.access.request.created",
        "warden.access.request.approve",
        "warden.access.request.approved",
        "warden.access.grant.created",
        "warden.access.grant.revoked",
    ]
