"""Governed reads through the HTTP API: masks, row filters, denials, audit before data."""

from __future__ import annotations

import io

import polars as pl
import pytest
from sqlalchemy import text

from warden.gateway.service import ARROW_STREAM


def frame(response) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW_STREAM
    return pl.read_ipc_stream(io.BytesIO(response.content))


def test_allowed_read_masks_identifier_with_keyed_hash(warden) -> None:  # type: ignore[no-untyped-def]
    r = warden.read(
        "alice", "engagements", purpose="training", columns=["user_id", "pin_id"], limit=50
    )
    df = frame(r)
    assert df.columns == ["user_id", "pin_id"]
    assert df.height == 50
    # Format-preserving: an integer id becomes a 64-bit keyed hash, never the raw id.
    assert df["user_id"].dtype == pl.Int64
    raw = pl.read_parquet(warden.state.settings.datasets_dir / "engagements" / "*.parquet")
    assert not set(df["user_id"]) & set(raw["user_id"])
    assert r.headers["x-warden-masked-columns"] == "user_id"


def test_masked_identifiers_still_join_across_datasets(warden) -> None:  # type: ignore[no-untyped-def]
    eng = frame(warden.read("alice", "engagements", purpose="training", columns=["user_id"]))
    users = frame(warden.read("alice", "users", purpose="training", columns=["user_id", "region"]))
    joined = eng.join(users, on="user_id", how="inner")
    assert joined.height == eng.height  # every masked engagement user is a masked user


def test_allowed_read_is_audited_before_data_with_its_details(warden) -> None:  # type: ignore[no-untyped-def]
    r = warden.read(
        "alice", "engagements", purpose="training", columns=["user_id", "action"], limit=7
    )
    df = frame(r)
    event_id = r.headers["x-warden-audit-event"]
    (event,) = [e for e in warden.audit_events(actor="alice") if e["id"] == event_id]
    assert event["decision"] == "allow"
    assert event["action"] == "dataset.read"
    assert event["columns"] == ["user_id", "action"]
    assert event["masked_columns"] == ["user_id"]
    assert event["rows"] == df.height == 7
    assert event["bytes"] == len(r.content)
    assert event["dataset_version"].startswith("sha256:")
    assert event["policy_version"] >= 1
    assert "role:ml_engineer" in event["rule"]


def test_policy_row_filter_limits_rows_to_region(warden) -> None:  # type: ignore[no-untyped-def]
    df = frame(
        warden.read("erin", "engagements", purpose="analytics", columns=["pin_id", "region"])
    )
    assert df.height > 0
    assert set(df["region"].unique()) == {"EU"}
    (event,) = warden.audit_events(actor="erin")[:1]
    assert event["row_filter"] == [{"column": "region", "op": "eq", "value": "EU"}]


def test_denied_column_is_refused_and_audited(warden) -> None:  # type: ignore[no-untyped-def]
    r = warden.read("erin", "engagements", purpose="analytics", columns=["pin_id", "dwell_ms"])
    assert r.status_code == 403
    assert r.json()["error"] == "Forbidden"
    (event,) = warden.audit_events(actor="erin")[:1]
    assert event["decision"] == "deny"
    assert "dwell_ms" in event["reason"]


def test_purpose_outside_the_dataset_is_refused(warden) -> None:  # type: ignore[no-untyped-def]
    r = warden.read("alice", "gold", purpose="training")
    assert r.status_code == 403
    assert warden.audit_events(actor="alice")[0]["decision"] == "deny"


def test_dataset_without_any_right_answers_404_not_403(warden) -> None:  # type: ignore[no-untyped-def]
    r = warden.read("mallory", "engagements", purpose="training")
    assert r.status_code == 404
    assert r.json() == {"error": "NotFound", "detail": "no dataset named 'engagements'"}
    assert warden.audit_events(actor="mallory")[0]["decision"] == "deny"
    listed = warden.http.get("/v1/datasets", headers=warden.as_("mallory")).json()
    assert listed == {"datasets": []}


def test_structured_filter_is_typed_by_schema(warden) -> None:  # type: ignore[no-untyped-def]
    where = [
        {"column": "action", "op": "eq", "value": "save"},
        {"column": "pin_id", "op": "lt", "value": 100},
    ]
    df = frame(
        warden.read(
            "alice", "engagements", purpose="training", columns=["pin_id", "action"], where=where
        )
    )
    assert df.height > 0
    assert set(df["action"]) == {"save"}
    assert df["pin_id"].max() < 100


def test_filter_on_masked_column_matches_tokens_never_raw_values(warden) -> None:  # type: ignore[no-untyped-def]
    df = frame(
        warden.read("alice", "engagements", purpose="training", columns=["user_id"], limit=1)
    )
    token = df["user_id"][0]
    by_token = frame(
        warden.read(
            "alice",
            "engagements",
            purpose="training",
            columns=["user_id"],
            where=[{"column": "user_id", "op": "eq", "value": token}],
        )
    )
    assert by_token.height >= 1 and set(by_token["user_id"]) == {token}
    # A raw id can't be used as an oracle against the masked column.
    by_raw = warden.read(
        "alice",
        "engagements",
        purpose="training",
        columns=["pin_id"],
        where=[{"column": "user_id", "op": "eq", "value": 1}],
    )
    assert frame(by_raw).height == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"purpose": "training", "columns": ["nope"]}, 400),
        ({"purpose": "training", "columns": ["pin_id", "pin_id"]}, 400),
        ({"purpose": "training", "where": [{"column": "pin_id", "op": "eq", "value": "1"}]}, 400),
        ({"purpose": "training", "where": [{"column": "pin_id", "op": "like", "value": 1}]}, 422),
        ({"purpose": "training", "where": [{"column": "ghost", "op": "eq", "value": 1}]}, 400),
        ({"purpose": "training", "where": [{"column": "pin_id", "op": "in", "value": 5}]}, 400),
        (
            {"purpose": "training", "where": [{"column": "ts", "op": "gt", "value": "yesterday"}]},
            400,
        ),
        (
            {
                "purpose": "training",
                "where": [{"column": "pin_id; DROP TABLE audit_event", "op": "eq", "value": 1}],
            },
            400,
        ),
        ({"purpose": "training", "limit": -1}, 422),
        ({"purpose": "training", "limit": 10**15}, 400),
        ({"purpose": "telepathy"}, 400),
        ({"purpose": "training", "surprise": True}, 422),
        ({}, 422),
    ],
)
def test_bad_read_requests_get_a_clear_4xx_and_are_audited(warden, body, status) -> None:  # type: ignore[no-untyped-def]
    before = len(warden.audit_events(action="dataset.read"))
    r = warden.read("alice", "engagements", **body)
    assert r.status_code == status, r.text
    payload = r.json()
    assert set(payload) == {"error", "detail"}
    assert "Traceback" not in r.text
    events = warden.audit_events(action="dataset.read")
    assert len(events) == before + 1
    assert events[0]["decision"] == "deny"


def test_injection_strings_in_values_are_just_values(warden) -> None:  # type: ignore[no-untyped-def]
    hostile = "save' OR '1'='1'; DROP TABLE audit_event; --"
    df = frame(
        warden.read(
            "alice",
            "engagements",
            purpose="training",
            columns=["action"],
            where=[{"column": "action", "op": "eq", "value": hostile}],
        )
    )
    assert df.height == 0
    assert warden.http.get("/v1/audit/verify", headers=warden.as_("admin")).status_code in (
        200,
        405,
    )


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "engagements%2F..%2Fusers",
        "ENGAGEMENTS",
        "eng*",
        "x" * 300,
    ],
)
def test_hostile_dataset_names_are_not_found(warden, name) -> None:  # type: ignore[no-untyped-def]
    r = warden.http.post(
        f"/v1/datasets/{name}/read", json={"purpose": "training"}, headers=warden.as_("alice")
    )
    assert r.status_code == 404
    assert r.json()["error"] == "NotFound"


@pytest.mark.parametrize(
    "header", [None, "Bearer nonsense", "Bearer wdn_not-a-real-token", "Basic abc"]
)
def test_missing_or_invalid_tokens_get_401_and_the_attempt_is_audited(warden, header) -> None:  # type: ignore[no-untyped-def]
    headers = {"authorization": header} if header else {}
    r = warden.http.post(
        "/v1/datasets/engagements/read", json={"purpose": "training"}, headers=headers
    )
    assert r.status_code == 401
    assert r.json()["error"] == "Unauthenticated"
    events = warden.audit_events(actor="anonymous")
    assert events and events[0]["decision"] == "deny"


def test_oversized_body_is_refused(warden) -> None:  # type: ignore[no-untyped-def]
    body = {"purpose": "training", "columns": ["pin_id"] * 200_000}
    r = warden.http.post("/v1/datasets/engagements/read", json=body, headers=warden.as_("alice"))
    assert r.status_code == 413
    assert r.json()["error"] == "PayloadTooLarge"


def test_audit_store_failure_fails_the_read_closed(warden) -> None:  # type: ignore[no-untyped-def]
    with warden.state.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_head"))
    r = warden.read("alice", "engagements", purpose="training", columns=["pin_id"], limit=5)
    assert r.status_code == 503
    assert r.json()["error"] == "AuditUnavailable"
    assert r.headers["content-type"].startswith("application/json")


def test_unreachable_policy_store_denies(warden) -> None:  # type: ignore[no-untyped-def]
    with warden.state.engine.begin() as conn:
        conn.execute(text("DROP TABLE policy_state"))
    r = warden.read("alice", "engagements", purpose="training", columns=["pin_id"], limit=5)
    assert r.status_code == 503
    assert r.json()["error"] == "PolicyUnavailable"


def test_role_removal_takes_effect_on_the_very_next_read(warden) -> None:  # type: ignore[no-untyped-def]
    assert (
        warden.read("alice", "pins", purpose="training", columns=["pin_id"], limit=1).status_code
        == 200
    )
    r = warden.http.delete("/v1/principals/alice/roles/ml_engineer", headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert (
        warden.read("alice", "pins", purpose="training", columns=["pin_id"], limit=1).status_code
        == 404
    )


def test_second_api_process_sees_a_policy_change_on_its_next_read(warden) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from warden.api.app import create_app

    replica = TestClient(create_app(warden.settings))
    headers = warden.as_("alice")
    body = {"purpose": "training", "columns": ["pin_id"], "limit": 1}
    assert replica.post("/v1/datasets/pins/read", json=body, headers=headers).status_code == 200
    warden.http.delete("/v1/principals/alice/roles/ml_engineer", headers=warden.as_("admin"))
    assert replica.post("/v1/datasets/pins/read", json=body, headers=headers).status_code == 404
    replica.close()


@pytest.mark.parametrize("limit", [10, None])  # one write, and a streamed answer
def test_sdk_read_is_the_same_frame_as_the_plain_arrow_answer(live_warden, limit) -> None:  # type: ignore[no-untyped-def]
    from warden.sdk import Client

    plain = frame(live_warden.read("alice", "engagements", purpose="training", limit=limit))
    with Client(url=live_warden.url, token=live_warden.tokens["alice"]) as client:
        got, info = client.read_with_info("engagements", purpose="training", limit=limit)
    assert got.equals(plain)
    assert got.schema == plain.schema
    assert info["x-warden-masked-columns"] == "user_id"
    (event,) = [
        e
        for e in live_warden.audit_events(actor="alice")
        if e["id"] == info["x-warden-audit-event"]
    ]
    assert event["rows"] == got.height
    assert event["bytes"] > 0
