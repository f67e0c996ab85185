"""The audit API: auditors only, their tenant only, one error shape, and it audits itself."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from warden.api.errors import install_error_handlers
from warden.api.routes.audit import router
from warden.audit.models import AuditEvent
from warden.audit.service import AuditRecord, record
from warden.config import REPO_ROOT, Settings
from warden.core.platform import Platform
from warden.db.session import unit_of_work
from warden.identity.service import create_principal, get_or_create_tenant, issue_token
from warden.policy.service import PolicyService

PRINCIPALS = {"audrey": "acme", "alice": "acme", "gus": "globex"}


@dataclass
class Api:
    app: FastAPI
    sessions: sessionmaker[Session]
    policy: PolicyService
    tokens: dict[str, str]

    def client(self, who: str) -> TestClient:
        return TestClient(self.app, headers={"authorization": f"Bearer {self.tokens[who]}"})


@pytest.fixture
def api(engine: Engine, sessions: sessionmaker[Session], tmp_path: Path) -> Iterator[Api]:
    tokens: dict[str, str] = {}
    with unit_of_work(sessions) as db:
        get_or_create_tenant(db, "acme").installation = True  # as `warden init` makes it
        for name, tenant in PRINCIPALS.items():
            principal = create_principal(db, name, "person", get_or_create_tenant(db, tenant))
            tokens[name] = issue_token(db, principal)
    policy = PolicyService(engine)
    policy.seed_from_csv([REPO_ROOT / "policies" / "seed.csv"])
    policy.add_rules(
        [
            ("g", ("audrey", "role:auditor", "acme")),
            ("g", ("gus", "role:auditor", "globex")),
            ("p", ("role:auditor", "globex", "sys:audit", "*", "*", "read", "allow", "", "")),
        ]
    )
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.warden = Platform(
        settings=Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config"),
        engine=engine,
        sessions=sessions,
        policy=policy,
        mask_key=b"test-mask-key",
    )
    for i in range(5):
        record(
            sessions,
            AuditRecord(
                action="read",
                decision="allow" if i % 2 else "deny",
                actor="alice",
                actor_kind="person",
                tenant="acme",
                dataset="engagements",
            ),
        )
    record(
        sessions,
        AuditRecord(
            action="read", decision="allow", actor="gus", actor_kind="person", tenant="globex"
        ),
    )
    yield Api(app, sessions, policy, tokens)


def count_events(api: Api) -> int:
    with unit_of_work(api.sessions) as db:
        return db.scalar(select(func.count()).select_from(AuditEvent)) or 0


def test_auditors_see_their_tenants_events_newest_first(api: Api) -> None:
    response = api.client("audrey").get("/v1/audit/events", params={"actor": "alice"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert [e["seq"] for e in body["events"]] == [5, 4, 3, 2, 1]
    assert body["next_cursor"] is None
    first = body["events"][0]
    assert first["ts"].endswith("Z") and len(first["hash"]) == 64
    assert {e["tenant"] for e in body["events"]} == {"acme"}


def test_other_tenants_events_stay_hidden(api: Api) -> None:
    acme = api.client("audrey").get("/v1/audit/events").json()["events"]
    globex = api.client("gus").get("/v1/audit/events").json()["events"]
    assert all(e["tenant"] == "acme" for e in acme)
    assert [e["actor"] for e in globex] == ["gus"]


def test_another_tenants_auditor_is_not_shown_where_its_events_stand_in_the_chain(
    api: Api,
) -> None:
    """The chain is one for all tenants: globex's two events with acme's reads between them
    would be seqs 6 and 8 and link to events not globex's, counting acme's activity."""
    client = api.client("gus")
    client.get("/v1/audit/events")  # audited as globex's second event (seq 7)
    record(api.sessions, AuditRecord(action="read", decision="allow", actor="alice",
                                     actor_kind="person", tenant="acme"))  # fmt: skip
    events = client.get("/v1/audit/events").json()["events"]
    assert [e["actor"] for e in events] == ["gus", "gus"]
    assert all(e["seq"] is None and e["prev_hash"] is None for e in events), events
    assert all(len(e["hash"]) == 64 and e["id"] for e in events)
    # one event by its id, as the console's event page finds it
    one = client.get("/v1/audit/events", params={"id": events[1]["id"]}).json()["events"]
    assert [e["id"] for e in one] == [events[1]["id"]]
    acme_event = api.client("audrey").get("/v1/audit/events").json()["events"][0]
    assert client.get("/v1/audit/events", params={"id": acme_event["id"]}).json()["events"] == []


def test_a_page_cursor_shows_no_seq_and_cannot_be_forged(api: Api) -> None:
    client = api.client("gus")
    for _ in range(3):
        client.get("/v1/audit/events", params={"limit": 1})
    first = client.get("/v1/audit/events", params={"limit": 2}).json()
    cursor = first["next_cursor"]
    assert cursor and cursor.startswith("v2.")
    older = client.get("/v1/audit/events", params={"limit": 2, "cursor": cursor}).json()
    assert len(older["events"]) == 2 and {e["actor"] for e in older["events"]} == {"gus"}
    # a cursor in the clear (the format before) is refused, whatever seq it names
    plain = base64.urlsafe_b64encode(b"v1:1000").decode().rstrip("=")
    refused = client.get("/v1/audit/events", params={"cursor": plain})
    assert refused.status_code == 400 and refused.json()["detail"] == "malformed cursor"


def test_another_tenants_auditor_verifies_without_learning_of_other_tenants(
    api: Api, engine: Engine
) -> None:
    body = api.client("gus").post("/v1/audit/verify").json()
    assert body["ok"] is True and body["scope"] == "tenant"
    assert body["checked"] == 1  # globex's one event, not the chain's six
    assert body["head_seq"] is None and body["first_broken"] is None
    assert body["checkpoint_file"] is None and body["newest_checkpoint"] is None
    assert body["checkpoints_checked"] == 0 and body["unprotected_events"] == 0
    assert body["key_ids"] == []
    # the verify is audited as globex's, with the tenant's view only
    mine = api.client("gus").get("/v1/audit/events", params={"action": "audit.verify"})
    details = mine.json()["events"][0]["details"]
    assert details["checked"] == 1 and details["head_seq"] is None
    # tampered: globex learns that the chain is broken and how, not where nor whose
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET decision = 'allow' WHERE seq = 3"))
    broken = api.client("gus").post("/v1/audit/verify").json()
    assert broken["ok"] is False and broken["first_broken"] is None
    assert [f["kind"] for f in broken["findings"] if f["severity"] == "tampering"] == ["rewritten"]
    assert all(f["seq"] is None and f["id"] is None for f in broken["findings"])
    assert "alice" not in json.dumps(broken)
    # the installation's auditor still sees where
    assert api.client("audrey").post("/v1/audit/verify").json()["first_broken"]["seq"] == 3


def test_pages_follow_next_cursor(api: Api) -> None:
    client = api.client("audrey")
    first = client.get("/v1/audit/events", params={"actor": "alice", "limit": 2}).json()
    second = client.get(
        "/v1/audit/events", params={"actor": "alice", "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [e["seq"] for e in first["events"]] == [5, 4]
    assert [e["seq"] for e in second["events"]] == [3, 2]


def test_filters_by_decision_and_time(api: Api) -> None:
    client = api.client("audrey")
    denied = client.get("/v1/audit/events", params={"decision": "deny", "actor": "alice"})
    future = client.get("/v1/audit/events", params={"since": "2999-01-01T00:00:00Z"})
    assert [e["seq"] for e in denied.json()["events"]] == [5, 3, 1]
    assert future.json()["events"] == []


def test_non_auditors_are_refused_and_the_refusal_is_audited(api: Api) -> None:
    response = api.client("alice").get("/v1/audit/events")

    assert response.status_code == 403
    assert response.json()["error"] == "Forbidden"
    events = api.client("audrey").get("/v1/audit/events", params={"actor": "alice"}).json()
    refusal = events["events"][0]
    assert refusal["action"] == "audit.query" and refusal["decision"] == "deny"


def test_audit_reads_are_themselves_audited(api: Api) -> None:
    client = api.client("audrey")
    client.get("/v1/audit/events", params={"dataset": "engagements", "limit": 3})
    own = client.get("/v1/audit/events", params={"actor": "audrey"}).json()["events"]
    assert own[-1]["action"] == "audit.query" and own[-1]["decision"] == "allow"
    assert own[-1]["rows"] == 3
    assert own[-1]["details"] == {"dataset": "engagements", "limit": 3}
    assert isinstance(own[-1]["policy_version"], int)


def test_a_query_event_records_the_filters_given_in_one_order(api: Api) -> None:
    client = api.client("audrey")
    asked = {"actor": "alice", "decision": "deny", "since": "2020-01-01T00:00:00Z", "id": "e-1"}
    client.get("/v1/audit/events", params=asked)
    own = client.get("/v1/audit/events", params={"actor": "audrey"}).json()["events"]
    assert list(own[-1]["details"].items()) == [
        ("id", "e-1"),
        ("actor", "alice"),
        ("decision", "deny"),
        ("since", "2020-01-01T00:00:00+00:00"),
        ("limit", 100),
    ]


def test_a_revoked_auditor_is_refused_on_the_next_call(api: Api) -> None:
    client = api.client("audrey")
    assert client.get("/v1/audit/events").status_code == 200
    api.policy.remove_rules([("g", ("audrey", "role:auditor", "acme"))])
    assert client.get("/v1/audit/events").status_code == 403


def test_no_token_is_unauthenticated(api: Api) -> None:
    response = TestClient(api.app).get("/v1/audit/events")
    assert response.status_code == 401 and response.json()["error"] == "Unauthenticated"


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"since": "yesterday"}, 422, "ValidationError"),
        ({"until": "2025-13-45T00:00:00"}, 422, "ValidationError"),
        ({"limit": "0"}, 422, "ValidationError"),
        ({"limit": "1001"}, 422, "ValidationError"),
        ({"decision": "maybe"}, 422, "ValidationError"),
        ({"cursor": "definitely-not-a-cursor"}, 400, "BadRequest"),
    ],
)
def test_bad_input_gets_one_error_shape_and_changes_nothing(
    api: Api, params: dict[str, str], status: int, error: str
) -> None:
    before = count_events(api)
    response = api.client("audrey").get("/v1/audit/events", params=params)

    assert response.status_code == status
    assert set(response.json()) == {"error", "detail"} and response.json()["error"] == error
    assert count_events(api) == before


def test_verify_reports_an_intact_chain(api: Api) -> None:
    response = api.client("audrey").post("/v1/audit/verify")
    assert response.status_code == 200
    body = response.json()
    assert (body["ok"], body["checked"], body["first_broken"], body["head_seq"]) == (
        True,
        6,
        None,
        6,
    )
    # No checkpoint yet: said as a note, and the whole chain is the unprotected tail.
    assert [f["kind"] for f in body["findings"]] == ["no_checkpoint"]
    assert body["unprotected_events"] == 6 and body["unprotected_since"].endswith("Z")


def test_verify_names_the_broken_event(api: Api, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET decision = 'allow' WHERE seq = 3"))
    body = api.client("audrey").post("/v1/audit/verify").json()
    assert body["ok"] is False and body["first_broken"]["seq"] == 3
    assert body["first_broken"]["id"] and "altered" in body["first_broken"]["reason"]


def test_verify_still_reports_when_the_head_is_gone(api: Api, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_head"))
    response = api.client("audrey").post("/v1/audit/verify")
    assert response.status_code == 200
    assert "head" in response.json()["first_broken"]["reason"]


def test_verify_needs_an_auditor(api: Api) -> None:
    assert api.client("alice").post("/v1/audit/verify").status_code == 403


def test_anonymous_events_are_shown_to_platform_admins_only(
    make_platform_admin: Any, api: Api
) -> None:
    record(
        api.sessions,
        AuditRecord(
            action="auth", decision="deny", actor="anonymous", actor_kind="anonymous", tenant=None
        ),
    )
    for who in ("audrey", "gus"):  # tenant auditors: their tenant's events, no one else's
        events = api.client(who).get("/v1/audit/events").json()["events"]
        assert events and all(e["tenant"] is not None for e in events), who

    make_platform_admin(api.sessions, api.policy, "audrey")
    events = api.client("audrey").get("/v1/audit/events").json()["events"]
    assert {e["tenant"] for e in events} == {"acme", None}
    assert any(e["actor"] == "anonymous" for e in events)
    # Platform admin of the platform domain, not an admin of another tenant's:
    assert all(e["tenant"] != "globex" for e in events)


def test_admins_of_another_tenant_are_no_platform_admins(
    make_platform_admin: Any, api: Api
) -> None:
    record(
        api.sessions,
        AuditRecord(action="auth", decision="deny", actor="anonymous", actor_kind="anonymous"),
    )
    make_platform_admin(api.sessions, api.policy, "audrey")  # acme is the installation
    api.policy.add_rules(
        [("p", ("role:auditor", "globex", "sys:*", "*", "*", "manage", "allow", "", ""))]
    )
    events = api.client("gus").get("/v1/audit/events").json()["events"]
    assert events and all(e["tenant"] == "globex" for e in events)
    assert api.client("gus").post("/v1/audit/checkpoint").status_code == 403


def test_people_of_the_installation_need_the_right_too(make_platform_admin: Any, api: Api) -> None:
    make_platform_admin(api.sessions, api.policy, "someone-else")
    record(
        api.sessions,
        AuditRecord(action="auth", decision="deny", actor="anonymous", actor_kind="anonymous"),
    )
    events = api.client("audrey").get("/v1/audit/events").json()["events"]
    assert all(e["tenant"] == "acme" for e in events)
    assert api.client("audrey").post("/v1/audit/checkpoint").status_code == 403


def test_checkpoints_are_for_platform_admins_and_refusals_are_audited(
    make_platform_admin: Any, api: Api
) -> None:
    response = api.client("audrey").post("/v1/audit/checkpoint")
    assert response.status_code == 403 and response.json()["error"] == "Forbidden"
    with unit_of_work(api.sessions) as db:
        last = db.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert last is not None and (last.action, last.decision) == ("audit.checkpoint", "deny")

    make_platform_admin(api.sessions, api.policy, "audrey")
    body = api.client("audrey").post("/v1/audit/checkpoint").json()
    assert body["written"] and body["seq"] == 7 and body["event_seq"] == 8
    verified = api.client("audrey").post("/v1/audit/verify").json()
    assert verified["ok"] and verified["newest_checkpoint"]["seq"] == 7
    assert verified["checkpoints_checked"] == 1 and verified["unprotected_events"] == 1


def test_verify_reports_truncation_past_a_checkpoint(
    make_platform_admin: Any, api: Api, engine: Engine
) -> None:
    make_platform_admin(api.sessions, api.policy, "audrey")
    assert api.client("audrey").post("/v1/audit/checkpoint").json()["written"]
    with engine.begin() as conn:
        row = conn.execute(text("SELECT hash FROM audit_event WHERE seq = 3")).one()
        conn.execute(text("DELETE FROM audit_event WHERE seq > 3"))
        conn.execute(text("UPDATE audit_head SET seq = 3, hash = :h"), {"h": row.hash})
    body = api.client("audrey").post("/v1/audit/verify").json()
    assert body["ok"] is False
    assert "truncation" in {f["kind"] for f in body["findings"]}


def test_a_platform_admin_cannot_get_a_tampered_chain_signed(
    make_platform_admin: Any, api: Api, engine: Engine
) -> None:
    """An insider with an admin token and database access edits an event, then asks for a
    checkpoint to bless it: refused, nothing signed, and the refusal is itself audited."""
    make_platform_admin(api.sessions, api.policy, "audrey")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET decision = 'allow' WHERE seq = 1"))
    body = api.client("audrey").post("/v1/audit/checkpoint").json()
    assert body["written"] is False and body["findings"][0]["kind"] == "rewritten"
    with unit_of_work(api.sessions) as db:
        last = db.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert last is not None and (last.action, last.decision) == ("audit.checkpoint", "error")
    verified = api.client("audrey").post("/v1/audit/verify").json()
    assert verified["checkpoints_checked"] == 0 and not verified["ok"]
