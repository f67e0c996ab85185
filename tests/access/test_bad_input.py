"""Bad input gets a clear 4xx in the one error shape, and changes nothing at all."""

from __future__ import annotations

from typing import Any

from tests.access.conftest import Access

GOOD = {"dataset": "pins", "purpose": "analytics", "duration": "1d", "justification": "why"}


BAD_REQUESTS: list[tuple[Any, int, str, str | None]] = [
    ({**GOOD, "dataset": "nope"}, 404, "NotFound", "no dataset named 'nope'"),
    ({**GOOD, "dataset": "../etc"}, 404, "NotFound", "no dataset"),
    (
        {**GOOD, "dataset": "gold", "purpose": "training"},
        422,
        "Unprocessable",
        "may not be used for 'training'",
    ),
    ({**GOOD, "purpose": "fun"}, 422, "Unprocessable", "may not be used for 'fun'"),
    (
        {**GOOD, "dataset": "users", "duration": "8d"},
        422,
        "Unprocessable",
        "over the maximum of 7d",
    ),
    ({**GOOD, "columns": ["pin_id", "ssn"]}, 422, "Unprocessable", "has no columns ['ssn']"),
    ({**GOOD, "columns": ["pin_id", "pin_id"]}, 422, "Unprocessable", "more than once"),
    ({**GOOD, "columns": []}, 422, "ValidationError", None),
    ({**GOOD, "duration": "forever"}, 422, "ValidationError", None),
    ({**GOOD, "duration": 10}, 422, "ValidationError", None),
    ({**GOOD, "duration": True}, 422, "ValidationError", None),
    ({**GOOD, "justification": ""}, 422, "ValidationError", None),
    ({**GOOD, "grant": "everything"}, 422, "ValidationError", None),
    ({k: v for k, v in GOOD.items() if k != "purpose"}, 422, "ValidationError", None),
    ({**GOOD, "columns": "pin_id"}, 422, "ValidationError", None),
    ([], 422, "ValidationError", None),
]


def test_bad_requests_are_refused_and_change_nothing(access: Access) -> None:
    before = access.fingerprint()
    for body, status, error, says in BAD_REQUESTS:
        r = access.post("erin", "/requests", body)
        assert (r.status_code, r.json()["error"]) == (status, error), (body, r.text)
        assert set(r.json()) == {"error", "detail"}
        if says:
            assert says in r.json()["detail"], (body, r.text)
        assert access.fingerprint() == before, body


def test_malformed_json_is_a_422_in_the_one_shape(access: Access) -> None:
    before = access.fingerprint()
    r = access.http.post(
        "/v1/access/requests",
        content=b"{not json",
        headers={**access.as_("erin"), "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert set(r.json()) == {"error", "detail"}
    assert access.fingerprint() == before


def test_bad_reviews_revocations_and_cancellations_change_nothing(access: Access) -> None:
    closed = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    grant_id = access.approve("sam", closed["id"])["grant_id"]
    pending = access.ask("erin", dataset="pins", purpose="analytics", duration="1d")
    before = access.fingerprint()

    cases = [
        (access.review("tess", closed["id"], "approve"), 409, "only a pending request"),
        (access.review("tess", closed["id"], "deny"), 409, "approved"),
        (access.review("tess", "req-0000000000000000", "approve"), 404, "no access request"),
        (access.review("tess", pending["id"], "maybe"), 422, None),
        (
            access.post(
                "tess", f"/requests/{pending['id']}/review", {"decision": "approve", "x": 1}
            ),
            422,
            None,
        ),
        (access.post("tess", f"/requests/{pending['id']}/review", None), 422, None),
        (access.post("sam", f"/grants/{grant_id}/revoke", {}), 422, None),
        (access.post("sam", f"/grants/{grant_id}/revoke", {"reason": ""}), 422, None),
        (access.post("sam", "/grants/grant-nope/revoke", {"reason": "x"}), 404, "no grant"),
        (access.post("sam", f"/grants/{grant_id}/sign-off", {}), 409, "not a break-glass"),
        (access.post("erin", f"/requests/{closed['id']}/cancel", {}), 409, "approved"),
        (
            access.post(
                "mallory", "/break-glass", {"dataset": "pins", "purpose": "training", "reason": "x"}
            ),
            403,
            "may not break glass",
        ),
        (
            access.http.put(
                "/v1/access/settings/pins", json={"quorum": 11}, headers=access.as_("admin")
            ),
            422,
            None,
        ),
        (
            access.http.put(
                "/v1/access/settings/nope", json={"quorum": 1}, headers=access.as_("admin")
            ),
            404,
            None,
        ),
        (access.post("erin", "/webhooks/deliveries/x/retry"), 403, None),
        (access.post("erin", "/tidy"), 403, None),
    ]
    for response, status, says in cases:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error", "detail"}
        if says:
            assert says in str(body["detail"])
    assert access.fingerprint() == before


def test_unauthenticated_calls_are_401(access: Access) -> None:
    r = access.http.post("/v1/access/requests", json=GOOD)
    assert r.status_code == 401
    assert r.json()["error"] == "Unauthenticated"
