"""A checkpoint after an ending that hangs, rather than fails, raises the alarm (red team 22).

The attack (an insider of acme with SQL and DDL on the database, not the key files nor the
checkpoint folder): red team 14's trigger eats a token's revocation inside its own commit and
writes the token row back (seal and all), so no other process can read the revocation from the
log; what told them was the revoking process's checkpoint, refused (a gap) or failed, which
raises the signed alarm carrying the revocation. Red team 21 left open a walk that *hangs*: the
insider also swaps a view in for `audit_event` whose rows stall the checkpointer's reads alone
(PostgreSQL: a sleep in a function that looks at the running query; SQLite: a column computed
by an endless recursive query where only the checkpointer reads it). The revoking request then
waits in its checkpoint for as long as the insider likes, no alarm is raised, and alice's
revoked token goes on reading through every other process. An operator who restarts the
stalled processes loses the one memory of the revocation, and the insider cuts the tail.

What must hold: the checkpoint that anchors an ending is bounded in time (the folder's lock
and the database work both); past the bound it fails, closed: the alarm carrying the ending
is raised, so every process refuses, and alice's token stays revoked after it is cleared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.sealed_rows import audit_columns, live_token_id, one, sql
from warden.api.app import create_app
from warden.audit.alarms import Alarms
from warden.audit.anchor import anchor_for
from warden.audit.checkpoints import CheckpointStore, _cancelled_at

BODY = {"purpose": "training", "columns": ["pin_id"], "limit": 1}
BOUND_S = 0.5  # the anchoring checkpoint's bound in this test (the deployment's is longer)
# the checkpointer's look at its newest checkpoint's event, and no other query of Warden's
CHECKPOINTER = r"^SELECT audit_event\.id, audit_event\.hash\s+FROM"


def _stall_the_checkpointer_and_eat_revocations(w: Any, checkpointed: int) -> None:
    columns = audit_columns(w)
    listed = ", ".join(columns)
    revive = (
        "CREATE TRIGGER revive AFTER UPDATE OF revoked_at ON api_token"
        " WHEN NEW.revoked_at IS NOT NULL BEGIN UPDATE api_token"
        " SET revoked_at = NULL, revoked_by = NULL, seal = OLD.seal WHERE id = NEW.id; END"
    )
    if w.settings.database_url.startswith("sqlite"):
        endless = (
            "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
            " WHERE x < 100000000000) SELECT count(*) FROM c)"
        )
        shown = ", ".join(
            f"CASE WHEN seq = {checkpointed} AND {endless} > 0 THEN id ELSE id END AS id"
            if c == "id" else c
            for c in columns
        )  # fmt: skip
        news = ", ".join(f"NEW.{c}" for c in columns)
        sql(w, "ALTER TABLE audit_event RENAME TO audit_event_rows",
            f"CREATE VIEW audit_event AS SELECT {shown} FROM audit_event_rows",
            "CREATE TRIGGER audit_event_in INSTEAD OF INSERT ON audit_event"
            " WHEN NEW.action <> 'token.revoke' BEGIN"
            f" INSERT INTO audit_event_rows ({listed}) VALUES ({news}); END", revive)  # fmt: skip
        return
    sql(w, "ALTER TABLE audit_event RENAME TO audit_event_rows",
        "CREATE FUNCTION stall(s bigint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
        f" IF current_query() ~ '{CHECKPOINTER}' THEN PERFORM pg_sleep(600); END IF;"
        " RETURN true; END $$",
        f"CREATE VIEW audit_event AS SELECT {listed} FROM audit_event_rows WHERE stall(seq)",
        "CREATE FUNCTION eat() RETURNS trigger AS $$ BEGIN IF NEW.action = 'token.revoke' THEN"
        " DELETE FROM audit_event_rows WHERE id = NEW.id; END IF; RETURN NULL; END $$"
        " LANGUAGE plpgsql",
        "CREATE TRIGGER eat AFTER INSERT ON audit_event_rows FOR EACH ROW EXECUTE FUNCTION eat()",
        "CREATE FUNCTION revive() RETURNS trigger AS $$ BEGIN IF NEW.revoked_at IS NOT NULL THEN"
        " UPDATE api_token SET revoked_at = NULL, revoked_by = NULL, seal = OLD.seal"
        " WHERE id = NEW.id; END IF; RETURN NULL; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER revive AFTER UPDATE OF revoked_at ON api_token FOR EACH ROW"
        " EXECUTE FUNCTION revive()")  # fmt: skip


@pytest.fixture
def replica(warden: Any) -> Iterator[TestClient]:
    """A second process sharing the database and the checkpoint folder, its own caches."""
    client = TestClient(create_app(warden.settings))
    yield client
    client.close()
    if not warden.settings.database_url.startswith("sqlite"):  # let a stalled walk go
        sql(warden, "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
            f" WHERE query ~ '{CHECKPOINTER}' AND pid <> pg_backend_pid()")  # fmt: skip


def _alices_read(client: TestClient, w: Any) -> int:
    return client.post("/v1/datasets/pins/read", json=BODY, headers=w.as_("alice")).status_code


def test_a_revocation_whose_checkpoint_hangs_is_carried_by_the_alarm(
    warden: Any, replica: TestClient
) -> None:
    anchor = anchor_for(warden.state.engine)
    assert anchor is not None
    anchor.within_s = BOUND_S
    # alice's token cached there; her raw reads anchored, then both processes held to that
    for _ in range(2):
        assert _alices_read(replica, warden) == _alices_read(warden.http, warden) == 200
    newest = CheckpointStore.for_settings(warden.settings).last()
    assert newest is not None
    _stall_the_checkpointer_and_eat_revocations(warden, newest.seq)
    token_id = live_token_id(warden, "alice")
    answered: list[int] = []
    revoking = threading.Thread(
        target=lambda: answered.append(
            warden.http.post(
                f"/v1/principals/alice/tokens/{token_id}/revoke", headers=warden.as_("admin")
            ).status_code
        ),
        daemon=True,
    )
    revoking.start()
    alarms = Alarms.beside(CheckpointStore.for_settings(warden.settings))
    served, deadline = [], time.monotonic() + 30
    while not alarms.read().standing and time.monotonic() < deadline:
        served.append(_alices_read(replica, warden))
        time.sleep(0.2)
    standing = alarms.read().standing
    assert standing, (
        f"the revoking request still waits in its checkpoint ({answered or 'unanswered'});"
        f" no alarm, and alice read through the other process: {served.count(200)} x 200"
    )
    revoking.join(30)
    assert answered and not revoking.is_alive(), "the revoking request never came back"
    assert live_token_id(warden, "alice") == token_id  # the row says: never revoked
    (alarm,) = standing
    assert [(e.action, e.details["token_id"]) for e in alarm.endings] == [
        ("token.revoke", token_id)
    ]
    assert _alices_read(replica, warden) == 503  # the alarm stands
    alarms.clear(alarm.id)  # the operator: `warden audit alarms --clear ID`
    assert _alices_read(replica, warden) == 401  # what ended stays ended
    assert one(warden, "SELECT count(*) FROM audit_event WHERE action = 'token.revoke'")[0] == 0


def test_a_stall_that_starts_after_the_deadline_is_cancelled_too(warden: Any) -> None:
    """The insider times the stall to begin in the statement after the deadline: a single
    cancel at the deadline fell between two statements and cancelled nothing."""
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        if warden.settings.database_url.startswith("sqlite")
        else "SELECT pg_sleep(600)"
    )
    raised: list[BaseException] = []

    def stall() -> None:
        try:
            with warden.state.sessions() as db, _cancelled_at(db, time.monotonic() + 0.2):
                db.execute(text("SELECT 1"))
                time.sleep(0.5)  # past the deadline, between two statements
                db.execute(text(endless))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            raised.append(exc)

    stalled = threading.Thread(target=stall, daemon=True)
    stalled.start()
    stalled.join(30)
    assert not stalled.is_alive(), "the statement begun after the deadline was never cancelled"
    assert len(raised) == 1 and isinstance(raised[0], OperationalError), raised
