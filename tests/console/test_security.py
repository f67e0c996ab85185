"""The console's security properties through FastAPI's test client, on SQLite and PostgreSQL:
sessions (cookie flags, hashed ids, idle and absolute ends, sign-out), CSRF on every POST,
the Content-Security-Policy, escaping, and that its actions are the API's, audited with the
console's channel."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from sqlalchemy import select

from tests.access.conftest import Access
from tests.console.conftest import Person, csrf_in
from tests.sandbox.conftest import grant_sandbox_roles
from warden.db.session import unit_of_work
from warden.identity.console_sessions import ConsoleSession
from warden.jobs import service as jobs
from warden.jobs.models import Job
from warden.registry import service as registry

SELF_REVIEW = "a requester never reviews their own request, whatever their roles"


def _cookie_header(response: Any, name: str) -> str:
    headers = [v for v in response.headers.get_list("set-cookie") if v.startswith(f"{name}=")]
    assert headers, response.headers
    return headers[0]


def _without_audit(fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fingerprint.items() if k != "audited_besides_refusals"}


def test_sign_in_gives_a_strict_httponly_cookie_and_keeps_only_its_hash(
    access: Access, people: Any
) -> None:
    sam = people("sam")
    r = sam.sign_in()
    cookie = _cookie_header(r, "warden_console")
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "secure" not in flags  # plain http here; see the https case below
    assert "path=/console" in flags
    secret = cookie.split(";")[0].split("=", 1)[1]
    with access.w.state.sessions() as db:
        ids = list(db.scalars(select(ConsoleSession.id)))
    assert ids == [hashlib.sha256(secret.encode()).hexdigest()]
    assert secret not in ids
    home = sam.get("/console")
    assert home.status_code == 200 and "Signed in as" in home.text and ">sam<" in home.text
    events = access.events("console.sign_in")
    assert [(e["actor"], e["decision"], e["details"]["channel"]) for e in events] == [
        ("sam", "allow", "console")
    ]


def test_the_cookie_is_secure_over_https(access: Access, people: Any) -> None:
    sam = people("sam", base_url="https://testserver")
    cookie = _cookie_header(sam.sign_in(), "warden_console")
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]
    assert sam.get("/console").status_code == 200


def test_a_bad_token_is_refused_at_sign_in_and_audited(access: Access, people: Any) -> None:
    mallory = Person(access.w.app, "wdn_not-a-real-token")
    page = mallory.http.get("/console/sign-in")
    r = mallory.http.post(
        "/console/sign-in", data={"csrf": csrf_in(page.text), "token": "wdn_not-a-real-token"}
    )
    assert r.status_code == 401
    assert "invalid token" in r.text
    assert not [c for c in r.headers.get_list("set-cookie") if c.startswith("warden_console=")]
    assert mallory.http.get("/console/reviews").status_code == 303
    refused = access.events("console.sign_in")
    assert refused and refused[-1]["decision"] == "deny"
    mallory.close()


def test_every_console_answer_carries_a_strict_csp(access: Access, people: Any) -> None:
    sam = people("sam")
    pages = [sam.get("/console/sign-in")]
    sam.sign_in()
    pages += [
        sam.get("/console/reviews"),
        sam.get("/console/static/console.css"),
        sam.get("/console/requests/req_nope"),  # an error page
    ]
    assert [p.status_code for p in pages] == [200, 200, 200, 404]
    for page in pages:
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in pages[1].text  # no inline script anywhere; only script src=
    assert 'src="/console/static/console.js"' in pages[1].text


def test_a_post_without_its_csrf_token_is_refused_audited_and_changes_nothing(
    access: Access, people: Any
) -> None:
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="1d")
    sam = people("sam")
    sam.sign_in()
    before = _without_audit(access.fingerprint())
    for form in ({"decision": "approve"}, {"decision": "approve", "csrf": "forged"}):
        r = sam.http.post(f"/console/requests/{req['id']}/review", data=form)
        assert r.status_code == 403
        assert "CSRF" in r.text
    assert _without_audit(access.fingerprint()) == before
    refused = access.events("console.csrf")
    assert len(refused) == 2
    assert {(e["actor"], e["decision"], e["details"]["channel"]) for e in refused} == {
        ("sam", "deny", "console")
    }
    assert refused[0]["details"]["path"] == f"/console/requests/{req['id']}/review"
    # Sign-in itself is guarded too (double submit), and so is sign-out.
    other = Person(access.w.app, access.w.tokens["tess"])
    assert other.http.post("/console/sign-in", data={"token": other.token}).status_code == 403
    other.close()
    assert sam.http.post("/console/sign-out", data={}).status_code == 403
    assert sam.get("/console").status_code == 200  # still signed in


def test_a_script_in_a_justification_is_shown_as_text(access: Access, people: Any) -> None:
    evil = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'
    req = access.ask(
        "alice", dataset="pins", purpose="analytics", duration="1d", justification=evil
    )
    sam = people("sam")
    sam.sign_in()
    for path in ("/console/reviews", f"/console/requests/{req['id']}"):
        page = sam.get(path)
        assert page.status_code == 200
        assert evil not in page.text
        assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in page.text
        assert "<img src=x" not in page.text


def test_an_idle_session_is_sent_to_sign_in(access: Access, people: Any) -> None:
    sam = people("sam")
    sam.sign_in()
    assert sam.get("/console/reviews").status_code == 200
    access.clock.advance(seconds=access.w.settings.console_idle_timeout_s + 1)
    r = sam.get("/console/reviews")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/sign-in?next=%2Fconsole%2Freviews")
    assert "ended=idle" in r.headers["location"]
    # Ended for good: coming back in time does not revive it.
    access.clock.advance(seconds=-access.w.settings.console_idle_timeout_s)
    assert sam.get("/console/reviews").status_code == 303
    expired = access.events("console.session.expired")
    assert [e["details"]["ended"] for e in expired] == ["idle"]
    page = sam.get("/console/sign-in", ended="idle")
    assert "idle too long" in page.text


def test_a_session_ends_at_its_absolute_lifetime_however_busy(access: Access, people: Any) -> None:
    settings = access.w.settings
    sam = people("sam")
    sam.sign_in()
    step = settings.console_idle_timeout_s / 2
    used = 0.0
    while used + step < settings.console_absolute_timeout_s:
        access.clock.advance(seconds=step)
        used += step
        assert sam.get("/console").status_code == 200, used
    access.clock.advance(seconds=step)
    r = sam.get("/console")
    assert r.status_code == 303 and "ended=absolute" in r.headers["location"]


def test_sign_out_ends_the_session_server_side(access: Access, people: Any) -> None:
    sam = people("sam")
    sam.sign_in()
    cookie = sam.http.cookies.get("warden_console")
    assert cookie
    r = sam.post("/console/sign-out", {})
    assert r.status_code == 303 and "ended=signed-out" in r.headers["location"]
    replay = Person(access.w.app, "unused")
    replay.http.cookies.set("warden_console", cookie, domain="testserver.local", path="/console")
    assert replay.http.get("/console/reviews").status_code == 303
    replay.close()
    with access.w.state.sessions() as db:
        row = db.scalars(select(ConsoleSession)).one()
    assert (row.end_reason, row.ended_at is not None) == ("signed-out", True)


def test_a_revoked_token_ends_its_console_session(access: Access, people: Any) -> None:
    tess = people("tess")
    tess.sign_in()
    listed = access.http.get("/v1/principals/tess/tokens", headers=access.as_("admin"))
    assert listed.status_code == 200, listed.text
    for token in listed.json()["tokens"]:
        r = access.http.post(
            f"/v1/principals/tess/tokens/{token['id']}/revoke", headers=access.as_("admin")
        )
        assert r.status_code == 200, r.text
    r = tess.get("/console/reviews")
    assert r.status_code == 303 and "ended=token" in r.headers["location"]


def test_self_approval_is_refused_in_the_console_as_in_the_api(access: Access, people: Any) -> None:
    access.add_person("stella", ["steward", "ml_engineer"])
    req = access.ask("stella", dataset="pins", purpose="analytics", duration="1d")
    stella = people("stella")
    stella.sign_in()
    before = _without_audit(access.fingerprint())
    api = access.review("stella", req["id"], "approve")
    console = stella.post(f"/console/requests/{req['id']}/review", {"decision": "approve"})
    assert (api.status_code, console.status_code) == (403, 403)
    assert api.json()["detail"] == SELF_REVIEW
    assert SELF_REVIEW in console.text and "Forbidden" in console.text
    assert _without_audit(access.fingerprint()) == before
    refused = [e for e in access.events("access.request.reviewed") if e["decision"] == "deny"]
    assert [(e["actor"], e["details"].get("channel")) for e in refused] == [("stella", "console")]
    assert SELF_REVIEW in refused[0]["reason"]
    # Her own request is not among her reviews (the service's list, as in the API).
    assert req["id"] not in stella.get("/console/reviews").text


def test_quorum_in_the_console_grants_and_revoking_there_refuses_the_next_read(
    access: Access, people: Any
) -> None:
    req = access.ask("alice", dataset="users", purpose="analytics", duration="3d")
    sam, tess = people("sam"), people("tess")
    sam.sign_in()
    tess.sign_in()
    page = sam.get("/console/reviews")
    assert req["id"] in page.text and "0 of 2 approvals" in page.text
    assert "masked" in page.text  # identifiers of a pii dataset come masked

    first = sam.post(f"/console/requests/{req['id']}/review", {"decision": "approve"})
    assert first.status_code == 303
    assert "1 of 2 approvals (sam)" in tess.get("/console/reviews").text
    assert access.read("alice", "users", purpose="analytics").status_code in (403, 404)
    second = tess.post(
        f"/console/requests/{req['id']}/review", {"decision": "approve", "comment": "ok <b>"}
    )
    assert second.status_code == 303
    shown = tess.get(second.headers["location"])
    assert "Approved: quorum reached" in shown.text and "ok &lt;b&gt;" in shown.text
    grant_id = access.show("alice", req["id"])["grant_id"]
    assert grant_id and grant_id in shown.text

    assert access.read("alice", "users", purpose="analytics", limit=3).status_code == 200
    reviewed = access.events("access.request.reviewed")
    assert [(e["actor"], e["decision"], e["details"]["channel"]) for e in reviewed] == [
        ("sam", "allow", "console"),
        ("tess", "allow", "console"),
    ]
    created = access.events("access.grant.created")
    assert created[-1]["details"]["channel"] == "console"
    assert "channel" not in access.events("access.request.created")[-1]["details"]  # the API's

    assert grant_id in sam.get("/console/grants").text
    revoked = sam.post(
        f"/console/grants/{grant_id}/revoke", {"reason": "done"}, page="/console/grants"
    )
    assert revoked.status_code == 303
    assert access.read("alice", "users", purpose="analytics").status_code in (403, 404)
    event = access.events("access.grant.revoked")[-1]
    assert (event["actor"], event["details"]["channel"]) == ("sam", "console")


def test_an_engineer_files_a_request_and_a_steward_signs_off_break_glass(
    access: Access, people: Any
) -> None:
    access.allow_break_glass()
    alice = people("alice")
    alice.sign_in()
    form = alice.get("/console/requests/new")
    assert form.status_code == 200 and 'for="justification"' in form.text
    filed = alice.post(
        "/console/requests",
        {"dataset": "pins", "columns": "pin_id, category", "purpose": "analytics",
         "duration": "2d", "justification": "ranking study"},
    )  # fmt: skip
    assert filed.status_code == 303, filed.text
    request_id = filed.headers["location"].split("/")[-1].split("?")[0]
    assert access.show("alice", request_id)["columns"] == ["pin_id", "category"]
    assert access.events("access.request.created")[-1]["details"]["channel"] == "console"
    bad = alice.post(
        "/console/requests",
        {"dataset": "pins", "purpose": "analytics", "duration": "forever", "justification": "x"},
    )
    assert bad.status_code == 422 and "duration" in bad.text
    assert request_id in alice.get("/console/my-access").text

    glass = access.post(
        "alice", "/break-glass", {"dataset": "pins", "purpose": "training", "reason": "incident"}
    )
    assert glass.status_code == 201, glass.text
    gid = glass.json()["id"]
    sam = people("sam")
    sam.sign_in()
    assert f"sign-off-{gid}" in sam.get("/console/grants").text
    signed = sam.post(f"/console/grants/{gid}/sign-off", {"comment": "seen"})
    assert signed.status_code == 303
    assert access.grant("alice", gid)["signed_off_by"] == "sam"


def test_an_auditor_searches_opens_an_event_and_verifies_the_chain(
    access: Access, people: Any
) -> None:
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="1d")
    access.approve("sam", req["id"])
    admin = people("admin")
    admin.sign_in()
    found = admin.get("/console/audit", action="access.request.reviewed", actor="sam")
    assert found.status_code == 200
    assert "access.request.reviewed" in found.text and "1 events" in found.text
    seq = found.text.split('href="/console/audit/events/')[1].split('"')[0]
    event = admin.get(f"/console/audit/events/{seq}")
    assert event.status_code == 200 and req["id"] in event.text and "prev_hash" in event.text
    verified = admin.post("/console/audit/verify", {}, page="/console/audit")
    assert verified.status_code == 200 and "Verified:" in verified.text
    # Paging: 50 a page, newest first; the link goes on below the last one shown.
    for _ in range(40):  # each query is itself an audited event
        assert access.w.audit_events(limit="1")
    first = admin.get("/console/audit")
    row = r'href="/console/audit/events/[0-9a-f-]+">(\d+)</a>'  # by id; the seq shown
    seqs = [int(x) for x in re.findall(row, first.text)]
    assert len(seqs) == 50 and seqs == sorted(seqs, reverse=True)
    older = re.search(r'id="older" href="([^"]+)"', first.text)
    assert older, "no link to older events"
    second = admin.get(older.group(1).replace("&amp;", "&"))
    more = [int(x) for x in re.findall(row, second.text)]
    assert more and max(more) < min(seqs)
    bad_time = admin.get("/console/audit", since="yesterday")
    assert bad_time.status_code == 422
    # Not an auditor: refused as the API refuses, and audited.
    mallory = people("mallory")
    mallory.sign_in()
    refused = mallory.get("/console/audit")
    assert refused.status_code == 403 and "you may not read the audit log" in refused.text
    denied = [e for e in access.events("audit.query") if e["decision"] == "deny"]
    assert denied[-1]["actor"] == "mallory" and denied[-1]["details"]["channel"] == "console"


def test_engineer_pages_show_a_job_its_log_and_a_models_report_and_lineage(
    access: Access, people: Any
) -> None:
    alice = people("alice")
    alice.sign_in()
    assert "No jobs yet" in alice.get("/console/jobs").text
    assert "No models registered yet" in alice.get("/console/models").text
    assert alice.get("/console/jobs/nope").status_code == 404
    assert alice.get("/console/models/nope").status_code == 404

    grant_sandbox_roles(access.w)
    queued = access.http.post(
        "/v1/jobs", json={"kind": "eval", "datasets": {"gold": "gold"}}, headers=access.as_("alice")
    )
    assert queued.status_code == 201, queued.text
    job = queued.json()
    state = access.w.state
    log = jobs.log_path(state, job["id"])
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("reading gold\nepoch 2/3 <b>loss</b> 0.41\n")
    # Registered as the worker registers a finished job's model, with two reports.
    folder = state.settings.data_dir / "jobs" / job["id"] / "artifacts"  # where jobs leave them
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text("# A/B\nrecall@10: A 0.61, B 0.52 <script>x</script>\n")
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    (folder / "recall.png").write_bytes(png)
    with unit_of_work(state.sessions) as db:
        row = db.get(Job, job["id"])
        assert row is not None
        model = registry.register(
            db, row, metrics={"recall@10": 0.61},
            artifacts=[{"name": n, "path": f"jobs/{job['id']}/artifacts/{n}",
                        "sha256": hashlib.sha256((folder / n).read_bytes()).hexdigest()}
                       for n in ("report.md", "recall.png")],
            reports=["report.md", "recall.png"],
            lineage={"datasets": [{"name": "pins", "versions": ["sha256:abc"]}]},
        )  # fmt: skip
        ref = model.ref
    page = alice.get(f"/console/jobs/{job['id']}")
    assert page.status_code == 200
    assert "epoch 2/3 &lt;b&gt;loss&lt;/b&gt; 0.41" in page.text  # the progress line, escaped
    assert '<meta http-equiv="refresh"' in page.text  # queued: the page refreshes itself
    shown = alice.get(f"/console/models/{ref}")
    assert shown.status_code == 200
    assert "recall@10: A 0.61" in shown.text and "&lt;script&gt;x" in shown.text
    assert f'src="/console/models/{ref}/reports/recall.png"' in shown.text
    assert "sha256:abc" in shown.text  # lineage
    plot = alice.get(f"/console/models/{ref}/reports/recall.png")
    assert plot.status_code == 200 and plot.content == png
    assert plot.headers["content-type"] == "image/png"
    assert alice.get(f"/console/models/{ref}/reports/weights.pt").status_code == 404
    assert people("erin").get(f"/console/jobs/{job['id']}").status_code == 303  # not signed in


_CONTROL = re.compile(r"<(input|select|textarea)\b([^>]*)>")


def test_every_control_is_labelled(access: Access, people: Any) -> None:
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="1d")
    access.approve("sam", req["id"])
    access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    sam = people("sam")
    pages = [sam.get("/console/sign-in").text]
    sam.sign_in()
    pages += [
        sam.get(p).text
        for p in ("/console/reviews", "/console/grants", "/console/requests/new",
                  f"/console/requests/{req['id']}", "/console/my-access")
    ]  # fmt: skip
    admin = people("admin")
    admin.sign_in()
    pages.append(admin.get("/console/audit").text)
    checked = 0
    for html in pages:
        for _, attributes in _CONTROL.findall(html):
            if 'type="hidden"' in attributes:
                continue
            control_id = re.search(r'id="([^"]+)"', attributes)
            assert control_id, attributes
            assert f'for="{control_id.group(1)}"' in html, attributes
            checked += 1
    assert checked >= 10
