"""Signed webhooks through an outbox: a delivery row is written in the transaction of the
change it announces, and the background worker sends it afterwards, retrying with
exponential backoff; what never arrives stays visible as a failed delivery.

Each POST carries the JSON body, `X-Warden-Event`, `X-Warden-Delivery` (the delivery id, for
de-duplication: a delivery may arrive more than once) and `X-Warden-Signature:
sha256=<hex>`, the HMAC-SHA256 of the exact body bytes under WARDEN_WEBHOOK_SECRET. Without
a secret nothing is sent: the delivery fails, saying why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from warden import __version__
from warden.access import repository as repo
from warden.access.models import WebhookDelivery
from warden.access.present import iso
from warden.audit.keys import keys_for
from warden.config import Settings
from warden.db.sealed import intact_row
from warden.db.session import unit_of_work

log = logging.getLogger("warden.access.webhooks")

SIGNATURE_HEADER = "X-Warden-Signature"
EVENT_HEADER = "X-Warden-Event"
DELIVERY_HEADER = "X-Warden-Delivery"
MAX_BACKOFF = timedelta(hours=1)
BATCH = 20


def wall_now() -> datetime:
    """Deliveries run on real elapsed time, never on the (movable) decision clock."""
    return datetime.now(UTC)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


def enqueue(
    db: Session,
    settings: Settings,
    *,
    tenant_id: str,
    tenant: str,
    event: str,
    subject_id: str,
    recipients: Sequence[str],
    payload: Mapping[str, Any],
) -> WebhookDelivery | None:
    """Queue one delivery in the caller's transaction (nothing when no URL is configured)."""
    if not settings.webhook_url:
        return None
    now = wall_now()
    delivery_id = uuid.uuid4().hex
    body = {
        "id": delivery_id,
        "event": event,
        "tenant": tenant,
        "recipients": sorted(set(recipients)),
        "created_at": iso(now),
        **payload,
    }
    delivery = WebhookDelivery(
        id=delivery_id,
        tenant_id=tenant_id,
        event=event,
        subject_id=subject_id,
        recipients=sorted(set(recipients)),
        url=settings.webhook_url,
        body=json.dumps(body, sort_keys=True, separators=(",", ":"), default=str),
        state="pending",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )
    db.add(delivery)
    return delivery


def backoff(settings: Settings, attempts: int) -> timedelta:
    """The wait after the n-th failed attempt: base, 2·base, 4·base … capped at an hour."""
    seconds = settings.webhook_backoff_s * (2 ** max(0, attempts - 1))
    return min(timedelta(seconds=seconds), MAX_BACKOFF)


def deliver_due(
    sessions: sessionmaker[Session], settings: Settings, http: httpx.Client | None = None
) -> int:
    """Send the deliveries that are due (one batch); returns how many were attempted."""
    now = wall_now()
    lease = now + timedelta(seconds=settings.webhook_timeout_s + 30)
    with unit_of_work(sessions) as db:
        due = repo.due_deliveries(db, now, BATCH)
        keys = keys_for(db.get_bind())
        for forged in [d for d in due if not intact_row(keys, d)]:
            # written past Warden: never signed, never sent (db/sealed.py)
            forged.state, forged.last_error = "failed", "does not match its seal: not sent"
        # Claimed by pushing the next attempt past the send, so replicas never double-send.
        claimed = [
            (d.id, d.url, d.event, d.body, d.attempts)
            for d in due
            if d.state == "pending" and repo.claim_delivery(db, d, lease)
        ]
    if not claimed:
        return 0
    client = http or httpx.Client(timeout=settings.webhook_timeout_s, trust_env=False)
    try:
        for delivery_id, url, event, body, attempts in claimed:
            status, error = _send(client, settings, delivery_id, url, event, body.encode())
            _settle(sessions, settings, delivery_id, attempts + 1, status, error)
    finally:
        if http is None:
            client.close()
    return len(claimed)


def _send(
    client: httpx.Client, settings: Settings, delivery_id: str, url: str, event: str, body: bytes
) -> tuple[int | None, str | None]:
    if not settings.webhook_secret:
        return None, "WARDEN_WEBHOOK_SECRET is not set: refusing to send an unsigned webhook"
    headers = {
        "content-type": "application/json",
        "user-agent": f"warden/{__version__}",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: sign(settings.webhook_secret, body),
    }
    try:
        response = client.post(
            url, content=body, headers=headers, timeout=settings.webhook_timeout_s
        )
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:300]}"
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:300]}"


def _settle(
    sessions: sessionmaker[Session],
    settings: Settings,
    delivery_id: str,
    attempts: int,
    status: int | None,
    error: str | None,
) -> None:
    now = wall_now()
    with unit_of_work(sessions) as db:
        delivery = db.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.state != "pending":
            return
        delivery.attempts = attempts
        delivery.last_status = status
        delivery.last_error = error
        if error is None:
            delivery.state = "delivered"
            delivery.delivered_at = now
        elif attempts >= settings.webhook_max_attempts:
            delivery.state = "failed"
            log.warning("webhook %s failed after %d attempts: %s", delivery_id, attempts, error)
        else:
            delivery.next_attempt_at = now + backoff(settings, attempts)


def retry(db: Session, delivery: WebhookDelivery) -> None:
    """Put a failed delivery back in the queue, due now, with a fresh attempt budget."""
    delivery.state = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = wall_now()
