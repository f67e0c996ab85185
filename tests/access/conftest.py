"""Fixtures for the access tests: reviewers, a controllable clock, a webhook receiver, and a
fingerprint of everything a refused call must leave unchanged."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import func, select

from warden.access.models import (
    AccessGrant,
    AccessRequest,
    AccessReview,
    AccessSetting,
    AccessTransition,
    ChangeReview,
    ReviewedChange,
    WebhookDelivery,
)
from warden.audit.models import AuditEvent
from warden.policy import store
from warden.policy.rules import format_rule, read_csv

ACCESS_CSV = Path(__file__).resolve().parents[2] / "policies" / "access.csv"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# The access harness's reviewers: seeded once per session into a database of their own
# (tests/conftest.py, `seeded_access_*`) that each test using the `access` fixture copies.
REVIEWERS = {"sam": ["steward"], "tess": ["steward"], "olga": ["owner"], "ada": ["admin"]}


class Clock:
    """The app's clock, moved by tests instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def bootstrap_people(warden: Any, people: dict[str, list[str]]) -> None:
    """People created by nobody (as `warden init` creates its founders), with roles, and a
    token each: independent reviewers, unlike principals an admin creates through the API."""
    from warden.db.session import unit_of_work
    from warden.identity.service import (
        Caller,
        create_principal,
        get_principal,
        get_tenant,
        issue_token,
    )
    from warden.policy.changes import apply_change

    state = warden.state
    with unit_of_work(state.sessions) as db:
        tenant = get_tenant(db, "acme")
        admin = get_principal(db, "admin")
        links = []
        for name, roles in people.items():
            principal = create_principal(db, name, "person", tenant)
            warden.tokens[name] = issue_token(db, principal)
            links += [("g", (name, f"role:{r.removeprefix('role:')}", "acme")) for r in roles]
        actor = Caller("admin", "person", "acme", admin.id)
        apply_change(db, actor, add=links, reason="test people", action="policy.bootstrap")
    state.policy.ensure_fresh()


def link_role(warden: Any, name: str, role: str) -> None:
    """Give an existing principal a role the way bootstrap does (no review): for tests about
    something else that need, say, a second admin."""
    from warden.db.session import unit_of_work
    from warden.identity.service import Caller, get_principal
    from warden.policy.changes import apply_change

    with unit_of_work(warden.state.sessions) as db:
        admin = get_principal(db, "admin")
        actor = Caller("admin", "person", "acme", admin.id)
        link = ("g", (name, f"role:{role.removeprefix('role:')}", "acme"))
        apply_change(db, actor, add=[link], reason="test setup", action="policy.bootstrap")
    warden.state.policy.ensure_fresh()


class Access:
    """The `warden` harness plus reviewers and shortcuts for the access API. `ada` is a second
    admin created at bootstrap: she approves the changes the admin proposes."""

    def __init__(self, warden: Any) -> None:
        self.w = warden
        self.http = warden.http
        self.clock = Clock(T0)
        warden.state.clock = self.clock
        if not REVIEWERS.keys() <= warden.tokens.keys():  # not already in its seeded database
            bootstrap_people(warden, REVIEWERS)

    def add_person(self, name: str, roles: list[str]) -> None:
        """Created by the admin through the API; roles proposed by the admin, approved by ada."""
        r = self.http.post(
            "/v1/principals", json={"name": name, "roles": roles}, headers=self.w.as_("admin")
        )
        assert r.status_code == (202 if roles else 201), r.text
        if roles:
            self.approve_change("ada", r.json()["change_id"])
        # A token the admin mints for someone else is held until a second person approves.
        t = self.http.post(f"/v1/principals/{name}/tokens", json={}, headers=self.w.as_("admin"))
        assert t.status_code == 202, t.text
        self.approve_change("ada", t.json()["change_id"])
        self.w.tokens[name] = t.json()["token"]

    def as_(self, who: str) -> dict[str, str]:
        return self.w.as_(who)  # type: ignore[no-any-return]

    def propose(self, who: str, add: list[str] = [], remove: list[str] = [], **more: Any) -> Any:  # noqa: B006
        body = {"add": add, "remove": remove, **more}
        return self.http.post("/v1/policy/rules", json=body, headers=self.as_(who))

    def approve_change(self, who: str, change_id: str) -> dict[str, Any]:
        r = self.http.post(
            f"/v1/policy/changes/{change_id}/approve", json={"comment": "ok"}, headers=self.as_(who)
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def reviewed_rules(self, add: list[str], reason: str = "") -> dict[str, Any]:
        """Rules proposed by the admin and approved by ada: in force on return."""
        r = self.propose("admin", add, reason=reason)
        assert r.status_code == 202, r.text
        done = self.approve_change("ada", r.json()["change"]["id"])
        assert done["state"] == "applied", done
        return done

    def allow_break_glass(self) -> None:
        """Load policies/access.csv (what `warden init` seeds) through a reviewed change."""
        lines = [format_rule(p, f) for p, f in read_csv([ACCESS_CSV])]
        self.reviewed_rules(lines, reason="access rules")

    # -- calls ---------------------------------------------------------------------------

    def post(self, who: str, path: str, body: Any = None) -> Any:
        return self.http.post(f"/v1/access{path}", json=body, headers=self.as_(who))

    def get(self, who: str, path: str, **params: Any) -> Any:
        return self.http.get(f"/v1/access{path}", params=params, headers=self.as_(who))

    def request(self, who: str, **body: Any) -> Any:
        body.setdefault("justification", "model work")
        return self.post(who, "/requests", body)

    def ask(self, who: str, **body: Any) -> dict[str, Any]:
        r = self.request(who, **body)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def review(self, who: str, request_id: str, decision: str, comment: str = "") -> Any:
        return self.post(
            who, f"/requests/{request_id}/review", {"decision": decision, "comment": comment}
        )

    def approve(self, who: str, request_id: str) -> dict[str, Any]:
        r = self.review(who, request_id, "approve", "ok")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def show(self, who: str, request_id: str) -> dict[str, Any]:
        r = self.get(who, f"/requests/{request_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def grant(self, who: str, grant_id: str) -> dict[str, Any]:
        r = self.get(who, f"/grants/{grant_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def read(self, who: str, dataset: str, **body: Any) -> Any:
        return self.w.read(who, dataset, **body)

    def frame(self, response: Any) -> pl.DataFrame:
        assert response.status_code == 200, response.text
        return pl.read_ipc_stream(io.BytesIO(response.content))

    def event(self, event_id: str) -> dict[str, Any]:
        """One audit event by id, read from the database (the audit API audits itself)."""
        with self.w.state.sessions() as db:
            row = db.scalar(select(AuditEvent).where(AuditEvent.id == event_id))
            assert row is not None
            from warden.audit.service import event_dict

            return event_dict(row)

    def events(self, prefix: str = "access.") -> list[dict[str, Any]]:
        from warden.audit.service import event_dict

        with self.w.state.sessions() as db:
            rows = db.scalars(
                select(AuditEvent)
                .where(AuditEvent.action.startswith(prefix))
                .order_by(AuditEvent.seq)
            )
            return [event_dict(r) for r in rows]

    def verify_chain(self) -> dict[str, Any]:
        r = self.http.post("/v1/audit/verify", headers=self.as_("admin"))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def fingerprint(self) -> dict[str, Any]:
        """Row counts of every access table, the audit events other than refusals (a refusal
        changes nothing but is audited: `http.refused`), and the policy version."""
        with self.w.state.sessions() as db:
            counts = {
                model.__tablename__: db.scalar(select(func.count()).select_from(model))
                for model in (
                    AccessRequest,
                    AccessReview,
                    AccessGrant,
                    AccessTransition,
                    AccessSetting,
                    WebhookDelivery,
                    ReviewedChange,
                    ChangeReview,
                )
            }
            counts["audited_besides_refusals"] = db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action != "http.refused")
            )
            counts["policy_version"] = store.current_version(db)
            counts["rules"] = db.scalar(select(func.count()).select_from(store.CasbinRule))
            counts["states"] = sorted(
                (r.id, r.state) for r in db.scalars(select(AccessRequest))
            ) + sorted((g.id, g.state) for g in db.scalars(select(AccessGrant)))
            return counts


@pytest.fixture
def access(warden: Any) -> Access:
    return Access(warden)


# --- a local webhook receiver ----------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0  # answer 500 to this many requests first
    always_fail: bool = False
    attempts_at: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, name: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.headers.get("x-warden-event") == name]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    import time

    box = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with box.lock:
                box.attempts_at.append(time.monotonic())
                failing = box.always_fail or box.fail_next > 0
                if box.fail_next > 0:
                    box.fail_next -= 1
                if not failing:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    box.received.append(Received(headers, body))
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box
    server.shutdown()
    server.server_close()


def allow_browse(warden: Any, name: str) -> None:
    """Let a principal with no role know the tenant's datasets exist (and so ask for access),
    the way bootstrap does (no review)."""
    from warden.db.session import unit_of_work
    from warden.identity.service import Caller, get_principal
    from warden.policy.changes import apply_change

    with unit_of_work(warden.state.sessions) as db:
        admin = get_principal(db, "admin")
        actor = Caller("admin", "person", "acme", admin.id)
        rule = ("p", (name, "acme", "*", "*", "*", "browse", "allow", "", ""))
        apply_change(db, actor, add=[rule], reason="test setup", action="policy.bootstrap")
    warden.state.policy.ensure_fresh()
