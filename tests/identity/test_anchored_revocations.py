"""What ends access is checkpointed at once, outside the database (audit/anchor.py).

The attack: a revocation committed by one process, then, before any other process has read
its event, someone with SQL deletes the event, puts the chain head and the change counter
back, and restores the token row (seal and all). Nothing in the database then says the
token was ever revoked; another process that cached the token would serve it on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.sealed_rows import live_token_id, one, revoke_through_the_api, sql
from typer.testing import CliRunner

from warden import config
from warden.api.app import create_app
from warden.audit.alarms import Alarms
from warden.audit.checkpoints import CheckpointStore
from warden.cli import audit as audit_cli

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
        head = one(warden, "SELECT seq, hash FROM audit_head")
        generation = one(warden, "SELECT value FROM change_generation")[0]
        token_id, before = revoke_through_the_api(warden, "alice")
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


def test_a_revocation_replaced_after_its_checkpoint_is_refused_by_another_process(
    warden: Any,
) -> None:
    """The revocation is checkpointed, then, before a second process looks, its row is made a
    read (action and details rewritten, hash column kept, so the checkpoint's seq and hash
    still match): that process's refresh reads ending events only and would skip it, so
    holding a newer checkpoint walks the keyed steps since the one it held before."""
    replica = TestClient(create_app(warden.settings))
    try:
        made = warden.http.post("/v1/audit/checkpoint", headers=warden.as_("admin"))
        assert made.status_code == 200, made.text
        assert _read(replica, warden) == 200  # holds that checkpoint; alice's token cached
        token_id, before = revoke_through_the_api(warden, "alice")
        sql(
            warden,
            "UPDATE audit_event SET action='dataset.read', details='{}'"
            " WHERE action='token.revoke'",
            "UPDATE api_token SET revoked_at=NULL, revoked_by=NULL, seal=:seal WHERE id=:i",
            seal=before,
            i=token_id,
        )
        assert _read(replica, warden) == 503
    finally:
        replica.close()


# Eat the revocation inside its own commit, and put the token row back, seal and all.
SQLITE_TRIGGERS = (
    "CREATE TRIGGER eat AFTER INSERT ON audit_event WHEN NEW.action = 'token.revoke'"
    " BEGIN DELETE FROM audit_event WHERE id = NEW.id; END",
    "CREATE TRIGGER revive AFTER UPDATE OF revoked_at ON api_token"
    " WHEN NEW.revoked_at IS NOT NULL BEGIN UPDATE api_token"
    " SET revoked_at = NULL, revoked_by = NULL, seal = OLD.seal WHERE id = NEW.id; END",
)
POSTGRES_TRIGGERS = (
    "CREATE FUNCTION eat() RETURNS trigger AS $$ BEGIN IF NEW.action = 'token.revoke' THEN"
    " DELETE FROM audit_event WHERE id = NEW.id; END IF; RETURN NULL; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER eat AFTER INSERT ON audit_event FOR EACH ROW EXECUTE FUNCTION eat()",
    "CREATE FUNCTION revive() RETURNS trigger AS $$ BEGIN IF NEW.revoked_at IS NOT NULL THEN"
    " UPDATE api_token SET revoked_at = NULL, revoked_by = NULL, seal = OLD.seal"
    " WHERE id = NEW.id; END IF; RETURN NULL; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER revive AFTER UPDATE OF revoked_at ON api_token FOR EACH ROW"
    " EXECUTE FUNCTION revive()",
)


def _eat_revocations(w: Any, db_url: str) -> None:
    sql(w, *(SQLITE_TRIGGERS if db_url.startswith("sqlite") else POSTGRES_TRIGGERS))


def test_the_revoking_process_refuses_even_when_the_event_never_reached_the_log(
    warden: Any, db_url: str
) -> None:
    """A trigger deleting the event inside the revoking commit: the committing process took
    the revocation from the event in hand, and its checkpoint refuses the chain."""
    _eat_revocations(warden, db_url)
    token_id = live_token_id(warden, "alice")
    r = warden.http.post(
        f"/v1/principals/alice/tokens/{token_id}/revoke", headers=warden.as_("admin")
    )
    assert r.status_code == 200, r.text
    assert _read(warden.http, warden) in (401, 503)


def test_a_revocation_eaten_inside_its_commit_is_refused_by_every_other_process(
    warden: Any, db_url: str
) -> None:
    """The same trigger, seen from a second process that cached alice's token: no event and
    no checkpoint name the revocation, so only the alarm the revoking process raises beside
    the checkpoints tells it; it refuses everyone until an operator clears the alarm, and
    alice's token stays refused after that (the alarm carries the revocation)."""
    replica = TestClient(create_app(warden.settings))  # a second process, its own caches
    try:
        assert _read(replica, warden) == 200  # alice's token cached there
        _eat_revocations(warden, db_url)
        token_id = live_token_id(warden, "alice")
        r = warden.http.post(
            f"/v1/principals/alice/tokens/{token_id}/revoke", headers=warden.as_("admin")
        )
        assert r.status_code == 200, r.text
        assert live_token_id(warden, "alice") == token_id  # the row says: never revoked
        refused = replica.post("/v1/datasets/pins/read", json=BODY, headers=warden.as_("erin"))
        assert refused.status_code == 503 and "alarm" in refused.json()["detail"]
        assert _read(replica, warden) == 503
        alarms = Alarms.beside(_store(warden))
        (alarm,) = alarms.read().standing
        assert [(e.action, e.details["token_id"]) for e in alarm.endings] == [
            ("token.revoke", token_id)
        ]
        alarms.clear(alarm.id)  # the operator: `warden audit alarms --clear ID`
        ok = replica.post("/v1/datasets/pins/read", json=BODY, headers=warden.as_("erin"))
        assert ok.status_code == 403, ok.text  # served again: decided as ever (not hers)
        assert _read(replica, warden) == 401  # what ended stays ended
    finally:
        replica.close()


def test_a_line_in_the_alarm_file_warden_did_not_sign_stands_as_an_alarm(warden: Any) -> None:
    alarms = Alarms.beside(_store(warden))
    assert _read(warden.http, warden) == 200
    forged = {"v": 1, "kind": "clear", "clears": "x", "store": "k", "ts": "t", "sig": "AAAA"}
    alarms.path.parent.mkdir(parents=True, exist_ok=True)
    alarms.path.write_text(json.dumps(forged) + "\n")
    assert _read(warden.http, warden) == 503
    (standing,) = alarms.read().standing
    assert not standing.signed
    alarms.clear(standing.id)
    assert _read(warden.http, warden) == 200


def test_warden_audit_alarms_lists_and_clears(warden: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "get_settings", lambda: warden.settings)
    alarms = Alarms.beside(_store(warden))
    runner = CliRunner()
    quiet = runner.invoke(audit_cli.app, ["alarms"])
    assert quiet.exit_code == 0 and "no alarm stands" in quiet.output
    made = alarms.raise_alarm("test: the checkpoint after token.revoke was refused", [])
    listed = runner.invoke(audit_cli.app, ["alarms"])
    assert listed.exit_code == 1 and made in listed.output and "was refused" in listed.output
    unknown = runner.invoke(audit_cli.app, ["alarms", "--clear", "nope"])
    assert unknown.exit_code != 0 and "no standing alarm 'nope'" in unknown.output
    cleared = runner.invoke(audit_cli.app, ["alarms", "--clear", made])
    assert cleared.exit_code == 0, cleared.output
    assert alarms.read().standing == []
