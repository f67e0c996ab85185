"""Signed webhooks to a local HTTP receiver: who is told, retries with backoff, and failed
deliveries visible (and retryable) through the API."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.access.conftest import Access, Receiver
from warden.access.background import AccessWorker
from warden.access.webhooks import SIGNATURE_HEADER, verify_signature

SECRET = "webhook-test-secret"
PINS_REVIEWERS = ["admin", "olga", "sam", "tess"]  # the owner, role:owner, two stewards


def configure(access: Access, receiver: Receiver, **overrides: Any) -> AccessWorker:
    state = access.w.state
    update = {
        "webhook_url": receiver.url,
        "webhook_secret": SECRET,
        "webhook_backoff_s": 0.1,
        "webhook_poll_s": 0.05,
        **overrides,
    }
    state.settings = state.settings.model_copy(update=update)
    return AccessWorker(state)


def drain(worker: AccessWorker, until: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "webhook not delivered in time"
        worker.deliver_due()
        time.sleep(0.02)


def test_created_goes_to_reviewers_and_resolved_to_requester_and_reviewers(
    access: Access, receiver: Receiver
) -> None:
    worker = configure(access, receiver)
    req = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    assert worker.deliver_due() == 1
    (created,) = receiver.events("access.request.created")
    assert verify_signature(SECRET, created.body, created.headers[SIGNATURE_HEADER.lower()])
    assert created.json["recipients"] == PINS_REVIEWERS
    assert created.json["request"]["id"] == req["id"]
    assert created.headers["x-warden-delivery"] == created.json["id"]

    access.approve("sam", req["id"])
    worker.deliver_due()
    (resolved,) = receiver.events("access.request.resolved")
    assert verify_signature(SECRET, resolved.body, resolved.headers[SIGNATURE_HEADER.lower()])
    assert resolved.json["recipients"] == sorted(["erin", *PINS_REVIEWERS])
    assert resolved.json["request"]["state"] == "approved"
    assert resolved.json["grant"]["id"] == access.show("erin", req["id"])["grant_id"]
    # A body altered in transit no longer matches its signature.
    assert not verify_signature(
        SECRET, resolved.body + b" ", resolved.headers["x-warden-signature"]
    )


def test_denied_cancelled_and_expired_requests_are_announced_as_resolved(
    access: Access, receiver: Receiver
) -> None:
    worker = configure(access, receiver)
    a = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    access.review("sam", a["id"], "deny")
    b = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    access.post("erin", f"/requests/{b['id']}/cancel", {})
    c = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    access.clock.advance(days=8)
    access.get("erin", "/requests")
    worker.deliver_due()
    states = {
        r.json["request"]["id"]: r.json["request"]["state"]
        for r in receiver.events("access.request.resolved")
    }
    assert states == {a["id"]: "denied", b["id"]: "cancelled", c["id"]: "expired"}


def test_a_failing_receiver_is_retried_with_backoff(access: Access, receiver: Receiver) -> None:
    # 2 s: long enough that "not due yet" holds on a loaded machine (0.1 s once did not).
    worker = configure(access, receiver, webhook_backoff_s=2.0)
    receiver.fail_next = 2
    access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    worker.deliver_due()
    deliveries = access.get("admin", "/webhooks/deliveries").json()
    (first,) = deliveries["deliveries"]
    assert (first["state"], first["attempts"], first["last_status"]) == ("pending", 1, 500)
    assert worker.deliver_due() == 0  # not due yet: backing off
    drain(worker, lambda: receiver.events("access.request.created"), timeout=60)
    (done,) = access.get("admin", "/webhooks/deliveries").json()["deliveries"]
    assert (done["state"], done["attempts"], done["last_error"]) == ("delivered", 3, None)
    gaps = [b - a for a, b in zip(receiver.attempts_at, receiver.attempts_at[1:], strict=False)]
    assert gaps[0] >= 2.0 and gaps[1] >= 4.0  # 2 s, then twice that


def test_failed_deliveries_are_visible_and_can_be_retried(
    access: Access, receiver: Receiver
) -> None:
    worker = configure(access, receiver, webhook_max_attempts=2, webhook_backoff_s=0.05)
    receiver.always_fail = True
    access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    drain(
        worker, lambda: access.get("admin", "/webhooks/deliveries", state="failed").json()["failed"]
    )
    listed = access.get("admin", "/webhooks/deliveries", state="failed").json()
    (failed,) = listed["deliveries"]
    assert (failed["attempts"], failed["last_status"]) == (2, 500)
    assert failed["last_error"].startswith("HTTP 500")
    assert access.get("erin", "/webhooks/deliveries").status_code == 403

    receiver.always_fail = False
    retried = access.post("admin", f"/webhooks/deliveries/{failed['id']}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "pending"
    assert access.post("admin", f"/webhooks/deliveries/{failed['id']}/retry").status_code == 409
    drain(worker, lambda: receiver.events("access.request.created"))
    assert access.get("admin", "/webhooks/deliveries").json()["failed"] == 0


def test_nothing_is_sent_unsigned(access: Access, receiver: Receiver) -> None:
    worker = configure(access, receiver, webhook_secret=None, webhook_max_attempts=1)
    access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    worker.deliver_due()
    (failed,) = access.get("admin", "/webhooks/deliveries").json()["deliveries"]
    assert failed["state"] == "failed"
    assert "WARDEN_WEBHOOK_SECRET" in failed["last_error"]
    assert receiver.attempts_at == []


def test_the_worker_starts_with_the_app_and_delivers_on_its_own(
    access: Access, live_warden: Any, receiver: Receiver
) -> None:
    configure(access, receiver)
    with httpx.Client(base_url=live_warden.url, headers=access.as_("erin")) as client:
        body = {"dataset": "pins", "purpose": "analytics", "duration": "1d", "justification": "x"}
        assert client.post("/v1/access/requests", json=body).status_code == 201
    deadline = time.monotonic() + 10
    while not receiver.events("access.request.created"):
        assert time.monotonic() < deadline, "the app's worker did not deliver"
        time.sleep(0.05)
