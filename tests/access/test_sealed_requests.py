"""Access requests, grants and reviewed changes are sealed (warden/db/sealed.py): a request
edited in SQL (requester, dataset, columns, purpose, duration) is never granted, a change's
beneficiaries or a service account's keepers cleared in SQL let no beneficiary approve, and
a grant is held to the dataset's terms as they are when it is made (red-team rounds 1-3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, text

from tests.access.conftest import Access, allow_browse
from tests.access.test_reviewed_changes import _service_account
from tests.sealed_rows import (
    edit_request,
    one,
    read,
    sql,
)
from warden.access.models import WebhookDelivery
from warden.access.webhooks import deliver_due, verify_signature


def test_clearing_a_service_accounts_keepers_in_sql_does_not_let_its_owner_approve(
    warden: Any,
) -> None:
    access = Access(warden)
    _service_account(access, "etl-bot", [], owner="sam")  # sam keeps it
    allow_browse(access.w, "etl-bot")
    req = access.ask("etl-bot", dataset="pins", purpose="analytics", duration="1d")
    assert access.review("sam", req["id"], "approve").status_code == 403
    sql(warden, "UPDATE principal SET owner_id=NULL, created_by_id=NULL WHERE name='etl-bot'")
    answer = access.review("sam", req["id"], "approve")
    assert answer.status_code in (403, 503), (
        f"sam alone approved his own bot's request: {answer.text}"
    )
    assert (
        access.w.http.get(f"/v1/access/requests/{req['id']}", headers=access.w.as_("admin")).json()[
            "state"
        ]
        == "pending"
    )


def test_a_changes_beneficiaries_cleared_in_sql_let_no_beneficiary_approve(warden: Any) -> None:
    """The admin mints a token for ada (a reviewer): held until someone else approves. With
    the change's beneficiary list cleared in SQL, ada would approve the token that lets the
    admin act as her; the change row no longer matches its seal, so nothing is decided."""
    access = Access(warden)
    minted = access.http.post(
        "/v1/principals/ada/tokens", json={"label": "as ada"}, headers=access.as_("admin")
    )
    assert minted.status_code == 202, minted.text
    change_id = minted.json()["change_id"]
    url = f"/v1/policy/changes/{change_id}/approve"
    assert access.http.post(url, json={}, headers=access.as_("ada")).status_code == 403
    sql(warden, "UPDATE reviewed_change SET beneficiary_ids='[]' WHERE id=:i", i=change_id)
    answer = access.http.post(url, json={}, headers=access.as_("ada"))
    assert answer.status_code == 503, answer.text
    state = one(warden, "SELECT state FROM reviewed_change WHERE id=:i", i=change_id)[0]
    assert state == "pending"


@pytest.mark.parametrize(
    "assignments",
    [
        "requester='sam'",  # the grant would be written for the name: sam's own, approved by sam
        "duration_s=315360000",  # ten years, past the dataset's terms
        "columns='[\"*\"]'",
        "dataset='users'",
        "purpose='training'",
    ],
)
def test_a_request_edited_in_sql_is_never_granted(warden: Any, assignments: str) -> None:
    access = Access(warden)
    reads = [("sam", "pins", "analytics"), ("alice", "pins", "analytics")]
    assert all(read(warden, w, d, purpose=p).status_code != 200 for w, d, p in reads)
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="1d")
    edit_request(warden, req["id"], assignments)
    answer = access.review("sam", req["id"], "approve", "ok")
    assert answer.status_code == 503 and answer.json()["error"] == "RowTampered", answer.text
    for who, dataset, purpose in reads:
        assert read(warden, who, dataset, purpose=purpose).status_code != 200, (who, dataset)


def test_a_grant_is_held_to_the_terms_as_they_are_when_it_is_made(warden: Any) -> None:
    """Narrowed after the request (a shorter maximum duration, applied at once): the last
    approval is refused (409) and nothing is granted; the request stays pending."""
    access = Access(warden)
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="3d")
    narrowed = access.http.put(
        "/v1/access/settings/pins", json={"max_duration": "1d"}, headers=access.as_("admin")
    )
    assert narrowed.status_code == 200, narrowed.text
    answer = access.review("sam", req["id"], "approve", "ok")
    assert answer.status_code == 409 and "over the maximum" in answer.text, answer.text
    assert read(warden, "alice", "pins", purpose="analytics").status_code != 200
    shown = access.get("alice", f"/requests/{req['id']}").json()
    assert shown["state"] == "pending"


def test_a_grant_edited_in_sql_cannot_be_revoked_around(warden: Any) -> None:
    access = Access(warden)
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="1d")
    grant = access.approve("sam", req["id"])["grant_id"]
    sql(warden, "UPDATE access_grant SET principal='erin' WHERE id=:i", i=grant)
    answer = access.post("admin", f"/grants/{grant}/revoke", {"reason": "done"})
    assert answer.status_code == 503, answer.text


def test_a_webhook_delivery_written_in_sql_is_never_signed_nor_sent(warden: Any) -> None:
    settings = warden.state.settings.model_copy(
        update={"webhook_url": "https://hooks.example/warden", "webhook_secret": "s3cret"}
    )
    with warden.state.engine.begin() as conn:
        tenant_id = conn.execute(text("SELECT id FROM tenant WHERE name='acme'")).scalar()
        conn.execute(
            insert(WebhookDelivery).values(
                id="forged0000000001",
                tenant_id=tenant_id,
                event="access.request.approved",
                subject_id="x",
                recipients=[],
                url="http://169.254.169.254/latest",
                body='{"event":"access.request.approved","requester":"mallory","dataset":"payroll"}',
                state="pending",
                attempts=0,
                created_at=datetime.now(UTC),
                next_attempt_at=datetime.now(UTC) - timedelta(seconds=5),
            )
        )
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    deliver_due(
        warden.state.sessions, settings, httpx.Client(transport=httpx.MockTransport(handler))
    )
    forged = [
        r
        for r in sent
        if verify_signature("s3cret", r.content, r.headers.get("x-warden-signature", ""))
        and b"mallory" in r.content
    ]
    assert not forged, f"signed and sent to {forged[0].url}"


def test_a_dataset_terms_override_lowered_in_sql_decides_nothing(warden: Any) -> None:
    """A quorum raised for `users` (3, through the API) lowered back in SQL to the floor:
    requests on it are refused (503), not reviewed under the lower quorum."""
    access = Access(warden)
    raised = access.http.put(
        "/v1/access/settings/users", json={"quorum": 3}, headers=access.as_("admin")
    )
    assert raised.status_code == 200, raised.text
    sql(warden, "UPDATE access_setting SET quorum = 2")
    answer = access.request("alice", dataset="users", purpose="training", duration="1d")
    assert answer.status_code == 503 and answer.json()["error"] == "RowTampered", answer.text


def test_a_dataset_terms_override_deleted_in_sql_loosens_nothing(warden: Any) -> None:
    """The override row deleted (its seal cannot catch an absence): the terms go back to the
    class defaults unless the log, which recorded what was last set, says otherwise. It
    does: requests on the dataset are refused until an operator looks."""
    access = Access(warden)
    raised = access.http.put(
        "/v1/access/settings/pins", json={"quorum": 2, "max_duration": "2d"},
        headers=access.as_("admin"),
    )  # fmt: skip
    assert raised.status_code == 200, raised.text
    sql(warden, "DELETE FROM access_setting")
    answer = access.request("alice", dataset="pins", purpose="analytics", duration="20d")
    assert answer.status_code == 503 and "not the ones last set" in answer.text, answer.text
