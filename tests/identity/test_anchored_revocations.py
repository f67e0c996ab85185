"""What ends access is checkpointed at once, outside the database (audit/anchor.py).

The attack: a revocation committed by one process, then, before any other process has read
its event, someone with SQL deletes the event, puts the chain head and the change counter
back, and restores the token row (seal and all). Nothing in the database then says the
token was ever revoked; another process that cached the token would serve it on."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from tests.sealed_rows import live_token_id, one, sql

from warden.api.app import create_app
from warden.audit.checkpoints import CheckpointStore

BODY = {"purpose": "training", "columns": ["pin_id"], "limit": 1}


def _read(client: TestClient, w: Any) -> int:
    return client.post("/v1/datasets/pins/read", json=BODY, headers=w.as_("alice")).status_code


def _store(w: Any) -> CheckpointStore:
    return CheckpointStore.for_settings(w.settings)


def test_a_revocation_is_checkpointed_before_it_is_answered(warden: Any) -> None:
    token_id = live_token_id(warden, "alice")
    r = warden.http.post(
        f"/v1/principals/alice/tokens/{token_id}/revoke", headers=warden.as_("admin")
    )
    assert r.status_code == 200, r.text
    (event,) = [
        e
        for e in warden.audit_events(action="token.revoke")
        if e["details"].get("token_id") == token_id
    ]
    newest = _store(warden).last()
    assert newest is not None and newest.seq >= event["seq"]


def test_a_revocation_erased_before_another_process_read_it_is_refused_there(
    warden: Any,
) -> None:
    replica = TestClient(create_app(warden.settings))  # a second process, its own caches
    try:
        assert _read(replica, warden) == 200  # alice's token now cached there
        token_id = live_token_id(warden, "alice")
        before = one(warden, "SELECT seal FROM api_token WHERE id=:i", i=token_id)[0]
        head = one(warden, "SELECT seq, hash FROM audit_head")
        generation = one(warden, "SELECT value FROM change_generation")[0]
        r = warden.http.post(
            f"/v1/principals/alice/tokens/{token_id}/revoke", headers=warden.as_("admin")
        )
        assert r.status_code == 200, r.text
        # erased in SQL: every event since, the head, the counter, and the token row
        sql(
            warden,
            "DELETE FROM audit_event WHERE seq > :s",
            "UPDATE audit_head SET seq=:s, hash=:h",
            "UPDATE change_generation SET value=:g",
            "UPDATE api_token SET revoked_at=NULL, revoked_by=NULL, seal=:seal WHERE id=:i",
            s=head[0],
            h=head[1],
            g=generation,
            seal=before,
            i=token_id,
        )
        assert _read(replica, warden) == 503  # the chain no longer reaches its checkpoint
        assert _read(replica, warden) == 503  # and keeps refusing, request after request
        assert _read(warden.http, warden) in (401, 503)  # and the revoking process knew
    finally:
        replica.close()


def test_the_revoking_process_refuses_even_when_the_event_never_reached_the_log(
    warden: Any, db_url: str
) -> None:
    """A trigger deleting the event inside the revoking commit: the committing process took
    the revocation from the event in hand, and its checkpoint refuses the chain."""
    if not db_url.startswith("sqlite"):
        return  # the same on PostgreSQL needs a trigger function; SQLite's shows it
    sql(
        warden,
        "CREATE TRIGGER eat AFTER INSERT ON audit_event WHEN NEW.action = 'token.revoke'"
        " BEGIN DELETE FROM audit_event WHERE id = NEW.id; END",
        "CREATE TRIGGER revive AFTER UPDATE OF revoked_at ON api_token"
        " WHEN NEW.revoked_at IS NOT NULL BEGIN UPDATE api_token"
        " SET revoked_at = NULL, revoked_by = NULL, seal = OLD.seal WHERE id = NEW.id; END",
    )
    token_id = live_token_id(warden, "alice")
    r = warden.http.post(
        f"/v1/principals/alice/tokens/{token_id}/revoke", headers=warden.as_("admin")
    )
    assert r.status_code == 200, r.text
    assert _read(warden.http, warden) in (401, 503)
