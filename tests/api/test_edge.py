"""Every refused request leaves a record, and floods are folded into counted records.

Attacks are tried as an outsider (no token, forged tokens, forged X-Forwarded-For, huge
headers, hostile paths) and as an insider with a token (route and method probes).
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from tests.conftest import WardenHarness
from warden.audit.models import AuditEvent

T0 = datetime(2031, 5, 1, 12, 0, 10, tzinfo=UTC)  # 10 s into a 60 s window
READ = "/v1/datasets/engagements/read"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def edge_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Small windows so a test's flood is a flood (set before the Warden reads its settings)."""
    values = {
        "WARDEN_EDGE_WINDOW_S": "60",
        "WARDEN_EDGE_RECORD_PER_WINDOW": "5",
        "WARDEN_EDGE_REFUSALS_PER_WINDOW": "1000",
        "WARDEN_EDGE_FLUSH_INTERVAL_S": "0",
        "WARDEN_JOBS_WORKER": "false",  # the live server's lifespan must not start jobs
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",  # nor reach a Docker engine
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def edged(edge_env: dict[str, str], warden: WardenHarness) -> Iterator[tuple[WardenHarness, Clock]]:
    """A Warden built after `edge_env` (listed first, so set first), on a clock tests move."""
    assert edge_of(warden).settings.edge_record_per_window == 5
    clock = Clock(T0)
    warden.state.clock = clock
    yield warden, clock


def edge_of(warden: WardenHarness) -> Any:
    return warden.app.state.edge


def events(warden: WardenHarness, *actions: str) -> list[AuditEvent]:
    with warden.state.sessions() as db:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if actions:
            query = query.where(AuditEvent.action.in_(actions))
        return list(db.scalars(query))


def refused(warden: WardenHarness, *actions: str) -> list[AuditEvent]:
    return [e for e in events(warden, *(actions or ("http.refused",))) if e.decision == "deny"]


def total(rows: list[AuditEvent]) -> int:
    return sum(int(e.details["count"]) for e in rows)


def error_shape(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    return body


# -- refused before the route: oversized bodies ----------------------------------------------


def test_oversized_read_body_is_refused_and_audited(warden: WardenHarness) -> None:
    cap = warden.settings.max_request_bytes * 16
    body = json.dumps({"purpose": "training", "columns": ["pin_id"] * (cap // 8)})
    assert len(body) > cap
    r = warden.http.post(READ, content=body, headers=warden.as_("alice"))
    error_shape(r, 413, "PayloadTooLarge")
    [event] = refused(warden)
    assert event.actor == "alice" and event.tenant == "acme"
    assert event.reason.startswith("PayloadTooLarge: request body over")
    assert event.details["status"] == 413 and event.details["method"] == "POST"
    assert event.details["path"] == READ
    assert event.details["route"] == "/v1/datasets/{name:path}/read"
    assert event.details["count"] == 1


def test_oversized_streamed_body_without_a_length_is_refused_and_audited(
    warden: WardenHarness,
) -> None:
    cap = warden.settings.max_request_bytes * 16

    def chunks() -> Iterator[bytes]:
        for _ in range(cap // 65536 + 2):
            yield b" " * 65536

    r = warden.http.post(READ, content=chunks(), headers=warden.as_("alice"))
    error_shape(r, 413, "PayloadTooLarge")
    [event] = refused(warden)
    assert event.details["status"] == 413 and event.actor == "alice"


def test_oversized_body_to_another_route_without_a_token_is_audited(
    warden: WardenHarness,
) -> None:
    cap = warden.settings.max_request_bytes * 16
    before = warden.http.get("/v1/policy/rules", headers=warden.as_("admin")).json()
    r = warden.http.post("/v1/policy/rules", content=b"[" + b"1," * cap + b"1]")
    error_shape(r, 413, "PayloadTooLarge")
    [event] = refused(warden)
    assert event.actor == "anonymous" and event.tenant is None
    assert event.details["path"] == "/v1/policy/rules" and event.details["status"] == 413
    after = warden.http.get("/v1/policy/rules", headers=warden.as_("admin")).json()
    assert after == before


# -- refused for the token, on any route ---------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Bearer wdn_forged", "Basic YTpi"])
def test_unauthenticated_audit_query_is_401_and_audited(
    warden: WardenHarness, header: str | None
) -> None:
    r = warden.http.get("/v1/audit/events", headers={"authorization": header} if header else {})
    error_shape(r, 401, "Unauthenticated")
    assert r.headers["www-authenticate"] == 'Bearer realm="warden"'
    [event] = refused(warden)
    assert event.actor == "anonymous" and event.actor_kind == "anonymous"
    assert event.tenant is None  # the caller is unknown: no tenant's event
    assert event.reason in (
        "Unauthenticated: missing bearer token",
        "Unauthenticated: invalid token",
    )
    assert event.details["route"] == "/v1/audit/events" and event.details["method"] == "GET"


def test_policy_change_with_a_forged_token_is_401_audited_and_changes_nothing(
    warden: WardenHarness,
) -> None:
    before = warden.http.get("/v1/policy/rules", headers=warden.as_("admin")).json()
    forged = warden.tokens["admin"][:-4] + "AAAA"
    change = {"add": [["g", "mallory", "role:admin", "acme"]], "reason": "let me in"}
    r = warden.http.post(
        "/v1/policy/rules", json=change, headers={"authorization": f"Bearer {forged}"}
    )
    error_shape(r, 401, "Unauthenticated")
    [event] = refused(warden)
    assert event.details["route"] == "/v1/policy/rules" and event.details["method"] == "POST"
    assert event.reason == "Unauthenticated: invalid token"
    assert forged not in json.dumps(event.details)  # the token itself is never stored
    after = warden.http.get("/v1/policy/rules", headers=warden.as_("admin")).json()
    assert after == before


def test_unauthenticated_read_keeps_its_read_event(warden: WardenHarness) -> None:
    r = warden.http.post(READ, json={"purpose": "training"})
    error_shape(r, 401, "Unauthenticated")
    [event] = refused(warden, "dataset.read")
    assert event.dataset == "engagements" and event.actor == "anonymous"
    assert event.details["count"] == 1 and event.details["status"] == 401


# -- probes with a token: no such route, no such method --------------------------------------


def test_route_and_method_probes_with_a_token_are_audited_as_the_caller(
    warden: WardenHarness,
) -> None:
    r = warden.http.get("/v1/admin/backdoor", headers=warden.as_("mallory"))
    error_shape(r, 404, "NotFound")
    r = warden.http.delete("/v1/policy/rules", headers=warden.as_("mallory"))
    error_shape(r, 405, "MethodNotAllowed")
    assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    probe, method = refused(warden)
    assert probe.actor == method.actor == "mallory" and probe.tenant == "acme"
    assert probe.details["status"] == 404 and probe.details["path"] == "/v1/admin/backdoor"
    assert "route" not in probe.details
    assert method.details["status"] == 405 and method.details["method"] == "DELETE"
    assert method.details["route"] == "/v1/policy/rules"
    assert probe.details["token"] == method.details["token"]  # a fingerprint, not the token


def test_a_404_a_route_gives_is_not_counted_again(warden: WardenHarness) -> None:
    r = warden.http.get("/v1/datasets/no-such-dataset", headers=warden.as_("alice"))
    assert r.status_code == 404
    assert refused(warden) == []


# -- floods ------------------------------------------------------------------------------------


def test_a_flood_of_unauthenticated_reads_is_folded_with_an_exact_count(
    edged: tuple[WardenHarness, Clock],
) -> None:
    warden, clock = edged
    for _ in range(300):
        assert warden.http.post(READ, json={"purpose": "training"}).status_code == 401
    rows = refused(warden, "dataset.read", "http.refused")
    assert len(rows) == 5  # the first five, one by one; the rest are being counted
    clock.advance(seconds=60)  # the window ends; the next refusal writes its count
    assert warden.http.get("/v1/me").status_code == 401
    rows = refused(warden, "dataset.read", "http.refused")
    assert len(rows) == 5 + 1 + 1
    folded = [e for e in rows if e.details.get("folded")]
    assert len(folded) == 1 and folded[0].details["count"] == 295
    assert folded[0].details["statuses"] == {"401": 295}
    assert folded[0].details["actions"] == {"dataset.read": 295}
    assert folded[0].details["refusals_in_window"] == 300
    assert total(rows) == 301
    assert edge_of(warden).flush(everything=True) == 0


def test_a_flood_against_a_live_server_is_counted_exactly_when_it_stops(
    edged: tuple[WardenHarness, Clock],
) -> None:
    from warden.api.background import serve_in_thread

    warden, _ = edged
    server = serve_in_thread(warden.app)  # type: ignore[arg-type]

    def one(i: int) -> int:
        if i % 3:
            return client.post(READ, json={"purpose": "training"}).status_code
        return client.get("/v1/audit/events").status_code

    try:
        with (
            httpx.Client(base_url=server.url) as client,
            ThreadPoolExecutor(max_workers=8) as pool,
        ):
            statuses = list(pool.map(one, range(300)))  # concurrently, as a flood comes
    finally:
        server.stop()  # a clean stop: the lifespan's shut-down writes the open window's count
    assert statuses == [401] * 300
    sent = len(statuses)
    rows = refused(warden, "dataset.read", "http.refused")
    assert total(rows) == sent == 300
    assert len(rows) == 5 + 1
    assert {e.details["source"] for e in rows} == {"127.0.0.1"}


def test_past_the_rate_a_source_gets_429_with_retry_after_and_the_429s_are_counted(
    edged: tuple[WardenHarness, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    warden, clock = edged
    edge_of(warden).settings = edge_of(warden).settings.model_copy(
        update={"edge_refusals_per_window": 10}
    )
    statuses = [warden.http.get("/v1/audit/events").status_code for _ in range(25)]
    assert statuses == [401] * 10 + [429] * 15
    r = warden.http.get("/v1/audit/events")
    body = error_shape(r, 429, "TooManyRequests")
    assert r.headers["retry-after"] == "50"  # 10 s into a 60 s window
    assert "50 s" in body["detail"]
    # The limit is on the refused source: a caller whose token works still gets through.
    assert warden.http.get("/v1/me", headers=warden.as_("alice")).status_code == 200
    # ...but a made-up token from the same address does not.
    r = warden.http.get("/v1/me", headers={"authorization": "Bearer wdn_made_up"})
    error_shape(r, 429, "TooManyRequests")
    clock.advance(seconds=50)  # the next window: refused again, not limited
    assert warden.http.get("/v1/audit/events").status_code == 401
    assert edge_of(warden).flush(everything=True) == 0  # the last window's count was written
    rows = refused(warden)
    assert total(rows) == 25 + 1 + 1 + 1
    folded = [e for e in rows if e.details.get("folded")]
    assert folded[0].details["statuses"] == {"401": 5, "429": 17}
    assert len(rows) <= 2 * (5 + 1)


def test_a_forged_x_forwarded_for_does_not_split_one_source(
    edged: tuple[WardenHarness, Clock],
) -> None:
    warden, clock = edged
    for i in range(60):
        headers = {"x-forwarded-for": f"198.51.100.{i}", "x-real-ip": f"203.0.113.{i}"}
        assert warden.http.get("/v1/audit/events", headers=headers).status_code == 401
    clock.advance(seconds=60)
    edge_of(warden).flush()
    rows = refused(warden)
    assert len(rows) == 6 and total(rows) == 60
    assert {e.details["source"] for e in rows} == {"testclient"}


def test_random_tokens_do_not_split_one_source(edged: tuple[WardenHarness, Clock]) -> None:
    warden, clock = edged
    for i in range(60):
        headers = {"authorization": f"Bearer wdn_random_{i:04d}"}
        assert warden.http.get("/v1/me", headers=headers).status_code == 401
    clock.advance(seconds=60)
    edge_of(warden).flush()
    rows = refused(warden)
    assert len(rows) == 6 and total(rows) == 60
    assert all("token" not in e.details for e in rows)  # no token authenticated


def test_x_forwarded_for_is_believed_only_from_a_configured_proxy(
    edged: tuple[WardenHarness, Clock],
) -> None:
    warden, _ = edged
    edge_of(warden).settings = edge_of(warden).settings.model_copy(
        update={"edge_trusted_proxies": ["10.0.0.0/8"]}
    )
    edge = edge_of(warden)
    proxy = {"client": ("10.1.2.3", 4000), "headers": []}
    forwarded = [(b"x-forwarded-for", b"203.0.113.7, 10.9.9.9")]
    assert edge.address({**proxy, "headers": forwarded}) == "203.0.113.7"
    assert edge.address({"client": ("192.0.2.1", 1), "headers": forwarded}) == "192.0.2.1"
    assert edge.address(proxy) == "10.1.2.3"
    # One attacker's IPv6 /64 is one source.
    assert edge.address({"client": ("2001:db8::1", 1)}) == edge.address(
        {"client": ("2001:db8::ffff:1", 1)}
    )
    client = TestClient(warden.app, client=("10.1.2.3", 4000))  # type: ignore[arg-type]
    r = client.get("/v1/audit/events", headers={"x-forwarded-for": "203.0.113.7"})
    assert r.status_code == 401
    [event] = refused(warden)
    assert event.details["source"] == "203.0.113.7"


# -- hostile input in what is recorded -------------------------------------------------------


def test_huge_headers_are_refused_and_not_stored(warden: WardenHarness) -> None:
    r = warden.http.get(
        "/v1/audit/events",
        headers={**warden.as_("alice"), "x-padding": "A" * 100_000, "cookie": "B" * 50_000},
    )
    error_shape(r, 431, "HeadersTooLarge")
    [event] = refused(warden)
    stored = json.dumps(event.details) + (event.reason or "")
    assert len(stored) < 1000 and "AAAA" not in stored and "BBBB" not in stored


def test_a_hostile_path_is_clipped_and_escaped(warden: WardenHarness) -> None:
    hostile = "/v1/%00%0A%0D%1B[31m%E2%80%AEevil\\" + "x" * 5000
    r = warden.http.get(hostile, headers=warden.as_("alice"))
    error_shape(r, 404, "NotFound")
    [event] = refused(warden)
    path = event.details["path"]
    assert path.startswith("/v1/\\x00\\x0a\\x0d\\x1b[31m\\u202eevil\\\\xxx")
    assert len(path) <= 256 and path.endswith("~")
    assert set(path) <= set(string.printable) - set("\t\n\r\x0b\x0c")


def test_a_refusal_the_audit_store_cannot_take_fails_closed(warden: WardenHarness) -> None:
    with warden.state.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_head"))
    r = warden.http.get("/v1/audit/events")
    error_shape(r, 503, "AuditUnavailable")
    r = warden.http.get("/v1/no/such/route", headers=warden.as_("alice"))
    error_shape(r, 503, "AuditUnavailable")


def test_sources_past_the_cap_share_one_overflow_source(
    edged: tuple[WardenHarness, Clock],
) -> None:
    warden, clock = edged
    edge_of(warden).settings = edge_of(warden).settings.model_copy(update={"edge_max_sources": 3})
    for i in range(40):
        client = TestClient(warden.app, client=(f"192.0.2.{i}", 1000))  # type: ignore[arg-type]
        assert client.get("/v1/audit/events").status_code == 401
    clock.advance(seconds=60)
    edge_of(warden).flush()
    rows = refused(warden)
    assert total(rows) == 40
    assert {e.details["source"] for e in rows} == {"192.0.2.0", "192.0.2.1", "192.0.2.2", "*"}
    assert len(rows) == 3 + 5 + 1  # memory and rows stay bounded however many addresses


def test_minted_tokens_do_not_multiply_one_address_rows(
    edged: tuple[WardenHarness, Clock],
) -> None:
    from warden.api.edge import TOKENS_PER_ADDRESS
    from warden.db.session import unit_of_work
    from warden.identity.service import get_principal, issue_token

    warden, clock = edged
    people = ("alice", "erin", "mallory")
    with unit_of_work(warden.state.sessions) as db:  # each may hold 10 live tokens
        tokens = [issue_token(db, get_principal(db, who)) for who in people for _ in range(9)]
    for token in tokens:
        for _ in range(3):
            r = warden.http.get("/v1/no-such-route", headers={"authorization": f"Bearer {token}"})
            assert r.status_code == 404
    clock.advance(seconds=60)
    edge_of(warden).flush()
    rows = refused(warden)
    assert total(rows) == 3 * 27
    assert {e.actor for e in rows if not e.details.get("folded")} <= set(people)
    with_token = {e.details["token"] for e in rows if "token" in e.details}
    assert len(with_token) == TOKENS_PER_ADDRESS
    assert len(rows) <= (TOKENS_PER_ADDRESS + 1) * (5 + 1)


def test_refusals_are_still_counted_when_their_record_could_not_be_written(
    edged: tuple[WardenHarness, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails for a moment (fault injected into the edge's writes only): those
    requests are answered 503, and their refusals land in the next counted record."""
    import warden.api.edge as edge_module
    from warden.errors import AuditUnavailable

    warden, clock = edged
    real_record = edge_module.record
    failing = {"left": 2}

    def flaky(sessions: Any, rec: Any) -> Any:
        if failing["left"] > 0:
            failing["left"] -= 1
            raise AuditUnavailable("the audit store is unavailable; nothing was done")
        return real_record(sessions, rec)

    monkeypatch.setattr(edge_module, "record", flaky)
    statuses = [warden.http.get("/v1/audit/events").status_code for _ in range(10)]
    assert statuses == [503, 503] + [401] * 8
    clock.advance(seconds=60)
    edge_of(warden).flush()
    rows = refused(warden)
    assert total(rows) == 10
    [folded] = [e for e in rows if e.details.get("folded")]
    assert folded.details["count"] == 2 + (10 - 5)
