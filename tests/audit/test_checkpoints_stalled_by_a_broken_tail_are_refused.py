"""A checkpoint refused because the chain was tampered with stops every process (red team 20).

The attack (an insider of acme with SQL on the database, not the key files nor the
checkpoint folder): the log's unprotected tail (events after the newest signed checkpoint) can
be cut, but only for a checkpoint interval: the next checkpoint signs it. So the insider first
rewrites one event of the tail (any column: its hash no longer matches). The background
checkpointer now refuses to sign every round, and only logs it; every request goes on being
served and audited into a tail no checkpoint will ever protect. Hours later the insider
deletes every event from the rewritten one on and resets the head: a consistent chain, which
the next checkpoint signs, and `warden audit verify` finds nothing. Every read alice made
meanwhile (of `engagements`, allowed, masked) is gone from the log.

What must hold: a checkpoint round refused for tampering raises the signed alarm beside the
checkpoints (audit/alarms.py), so every process sharing the folder refuses (503) until an
operator looks (`warden audit alarms`); nothing is served into a tail that cannot be
checkpointed, so there is nothing to cut later.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.sealed_rows import sql
from warden.api.app import create_app
from warden.audit.alarms import Alarms
from warden.audit.checkpoints import CheckpointStore

# no identifier or entity column: a read of those alone is not checkpointed at once
COLUMNS = ["action", "dwell_ms"]


def read(warden: Any, who: str) -> Any:
    return warden.read(who, "engagements", purpose="training", columns=COLUMNS, limit=3)


def _pins(client: TestClient, warden: Any) -> Any:
    body = {"purpose": "training", "limit": 1}
    return client.post("/v1/datasets/pins/read", json=body, headers=warden.as_("alice"))


def _broken_tail(warden: Any) -> Any:
    """A signed checkpoint, alice's read after it, that read's event rewritten in SQL, and the
    checkpointer's next background round: refused."""
    checkpointer = warden.process.checkpointer
    assert not checkpointer.checkpoint_now().findings  # the chain signed up to here
    first = read(warden, "alice")
    assert first.status_code == 200, first.text
    sql(warden, "UPDATE audit_event SET reason = 'tidied' WHERE id = :i",
        i=first.headers["x-warden-audit-event"])  # fmt: skip
    outcome = checkpointer.round()
    assert outcome.checkpoint is None and outcome.findings, "the broken tail was signed"
    return outcome


def test_reads_after_a_checkpoint_refused_for_tampering_are_refused(warden: Any) -> None:
    replica = TestClient(create_app(warden.settings))  # a second process on the same folder
    try:
        assert _pins(replica, warden).status_code == 200
        _broken_tail(warden)
        later = read(warden, "alice")
        assert later.status_code == 503, (
            f"alice read again ({later.status_code}) into a tail no checkpoint will protect"
        )
        there = _pins(replica, warden)
        assert there.status_code == 503, there.text
        assert "alarm" in there.json()["detail"], there.text
    finally:
        replica.close()
    standing = Alarms.beside(CheckpointStore.for_settings(warden.settings)).read().standing
    assert [a for a in standing if "refused" in a.reason], standing


def test_the_alarm_is_raised_once_while_the_chain_stays_broken(warden: Any) -> None:
    _broken_tail(warden)
    warden.process.checkpointer.round()
    alarms = Alarms.beside(CheckpointStore.for_settings(warden.settings))
    assert len(alarms.read().standing) == 1, "every round added an alarm"


def test_a_checkpoint_round_with_nothing_wrong_raises_no_alarm(warden: Any) -> None:
    checkpointer = warden.process.checkpointer
    assert not checkpointer.checkpoint_now().findings
    assert read(warden, "alice").status_code == 200
    assert checkpointer.round().checkpoint is not None
    assert read(warden, "alice").status_code == 200
    alarms = Alarms.beside(CheckpointStore.for_settings(warden.settings))
    assert alarms.read().standing == []
