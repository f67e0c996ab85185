"""Checkpoint rounds that fail while appends succeed stop the process (red team 21).

The attack (an insider of acme with SQL and DDL on the database, not the key files nor the
checkpoint folder): red team 20 closed a tail stalled by a *refused* round (a rewritten event:
a finding, which raises the signed alarm), but a round that *fails* (an exception) was only
logged, since a database outage fails it the same way. So the insider makes the checkpointer's
reads alone fail: the log's table is renamed and a view put in its place (inserts still go
through) whose rows past the newest checkpoint raise when read the way the checkpointer walks
them (PostgreSQL: a function that looks at the running query; SQLite: a column that is not
JSON where the walk reads it). Every round fails, every read goes on being served and
appended, and hours later the insider cuts the whole tail and puts the table back: a
consistent chain the next checkpoint signs, every read meanwhile gone.

What must hold: no process appends to a tail whose oldest event of its own no checkpoint has
covered for `STALE_ROUNDS` checkpoint intervals (audit/tail.py): it first tries the checkpoint
itself, and refuses (503) while that fails. A database back from an outage takes that
checkpoint at once, so it serves again without an operator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import WardenHarness
from tests.sealed_rows import audit_columns, one, sql
from warden.audit.checkpoints import CheckpointStore
from warden.audit.tail import STALE_ROUNDS

INTERVAL_S = 0.4  # the cadence: an event may wait STALE_ROUNDS × 0.4 s unprotected
COLUMNS = ["action", "dwell_ms"]  # no identifier: a read of these is not checkpointed at once


@pytest.fixture
def primary(warden: Any) -> Iterator[WardenHarness]:
    """The harness's database served by a process whose cadence is INTERVAL_S (its background
    round is run by the test, as the thread would)."""
    settings = warden.settings.model_copy(update={"audit_checkpoint_interval_s": INTERVAL_S})
    harness = WardenHarness.open(settings, warden.tokens)
    yield harness
    harness.process.stop()
    harness.close()


def read(w: WardenHarness) -> Any:
    return w.read("alice", "engagements", purpose="training", columns=COLUMNS, limit=3)


def blind_the_checkpointer(w: WardenHarness, past: int) -> None:
    """The log's table renamed and a view in its place: inserts go through, the checkpointer's
    walk over rows past `past` raises."""
    columns = audit_columns(w)
    listed = ", ".join(columns)
    if w.settings.database_url.startswith("sqlite"):
        shown = ", ".join(
            # (not the head's own row, which a refresh of the revocations reads)
            f"CASE WHEN seq > {past} AND seq < (SELECT seq FROM audit_head)"
            " THEN json('{' || seq) ELSE prev_hash END AS prev_hash"
            if c == "prev_hash" else c
            for c in columns
        )  # fmt: skip
        news = ", ".join(f"NEW.{c}" for c in columns)
        sql(w, "ALTER TABLE audit_event RENAME TO audit_event_rows",
            f"CREATE VIEW audit_event AS SELECT {shown} FROM audit_event_rows",
            "CREATE TRIGGER audit_event_in INSTEAD OF INSERT ON audit_event BEGIN"
            f" INSERT INTO audit_event_rows ({listed}) VALUES ({news}); END")  # fmt: skip
        return
    sql(w, "ALTER TABLE audit_event RENAME TO audit_event_rows",
        "CREATE FUNCTION blind(s bigint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
        f" IF s > {past} AND current_query() ~ 'seq <= \\S+ ORDER BY' THEN"
        " RAISE EXCEPTION 'blinded'; END IF; RETURN true; END $$",
        f"CREATE VIEW audit_event AS SELECT {listed} FROM audit_event_rows"
        " WHERE blind(seq)")  # fmt: skip


def see_again(w: WardenHarness) -> None:
    undo = (
        ["DROP TRIGGER audit_event_in", "DROP VIEW audit_event"]
        if w.settings.database_url.startswith("sqlite")
        else ["DROP VIEW audit_event", "DROP FUNCTION blind(bigint)"]
    )
    sql(w, *undo, "ALTER TABLE audit_event_rows RENAME TO audit_event")


def _failing_round(w: WardenHarness) -> None:
    with pytest.raises(Exception) as failed:  # noqa: PT011 - whatever the database raises
        w.process.checkpointer.round()
    assert "blinded" in str(failed.value) or "malformed JSON" in str(failed.value), failed.value


def _stall(w: WardenHarness) -> Any:
    """A signed checkpoint, alice's reads after it, the checkpointer blinded from the first,
    and one read served after the first failed round."""
    assert w.process.checkpointer.checkpoint_now().checkpoint is not None
    first = read(w)
    assert first.status_code == 200, first.text
    assert read(w).status_code == 200
    seq = one(
        w, "SELECT seq FROM audit_event WHERE id = :i", i=first.headers["x-warden-audit-event"]
    )
    blind_the_checkpointer(w, past=seq[0] - 1)
    _failing_round(w)
    served = read(w)
    assert served.status_code == 200, served.text  # one failed round: an outage looks the same
    return first


def test_reads_are_refused_once_rounds_have_failed_past_the_bound(primary: WardenHarness) -> None:
    w = primary
    _stall(w)
    waited = time.monotonic() + STALE_ROUNDS * INTERVAL_S + 0.5
    while time.monotonic() < waited:
        _failing_round(w)
        time.sleep(INTERVAL_S)
    later = read(w)
    assert later.status_code == 503, (
        f"alice read ({later.status_code}) into a tail no checkpoint covered for"
        f" {STALE_ROUNDS} intervals"
    )
    assert "checkpoint" in later.json()["detail"], later.text


def test_a_database_back_from_an_outage_serves_at_once(primary: WardenHarness) -> None:
    w = primary
    _stall(w)
    time.sleep(STALE_ROUNDS * INTERVAL_S + 0.5)
    see_again(w)  # the outage ends before any background round ran again
    before = len(CheckpointStore.for_settings(w.settings).read().checkpoints)
    again = read(w)
    assert again.status_code == 200, again.text
    assert len(CheckpointStore.for_settings(w.settings).read().checkpoints) == before + 1
