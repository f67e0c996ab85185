"""A streamed read's completion that the log refused is written before the process serves
another read (red team 17a).

The completion (rows, bytes and SHA-256 of what left) is recorded after the last byte; if
that append failed, the server logged it and went on, and `verify` saw only an open intent,
the note a server killed mid-stream leaves. Someone with SQL fails that one append (holds the
log's head locked while the stream ends: SQLite's write lock past the busy timeout, or on
PostgreSQL a table lock and the waiting query cancelled), then lets go: the read's size and
digest never reach the log, and every later read goes on as before.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from warden.audit.checkpoints import CheckpointStore
from warden.audit.service import verify
from warden.db.session import unit_of_work
from warden.gateway import planner, service
from warden.gateway.stream import LiveStream
from warden.identity.caller import Caller
from warden.identity.service import get_principal

BODY = {"purpose": "training", "columns": ["user_id", "pin_id", "action", "ts"]}


def _alice(warden: Any) -> Caller:
    with unit_of_work(warden.state.sessions) as db:
        alice = get_principal(db, "alice")
        return Caller("alice", "person", "acme", alice.id)


def _with_the_log_locked(warden: Any, finish: Callable[[], None]) -> None:
    """`finish` run while someone with SQL holds the log's head: its append fails."""
    url = warden.state.settings.resolved_database_url
    if url.startswith("sqlite"):
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # SQLite's write lock, past Warden's busy timeout
        try:
            finish()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with warden.state.engine.connect() as holder:
        holder.execute(text("LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE"))
        me = holder.execute(text("SELECT pg_backend_pid()")).scalar()
        ended = threading.Thread(target=finish)
        ended.start()
        waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> :me"
        deadline = time.monotonic() + 30
        while ended.is_alive():
            with warden.state.engine.connect() as other:
                for (pid,) in other.execute(text(waiting), {"me": me}):
                    other.execute(text("SELECT pg_cancel_backend(:p)"), {"p": pid})
            assert time.monotonic() < deadline, "the completion never waited on the lock"
            ended.join(0.2)
        holder.rollback()


def _stream_events(warden: Any, stream_id: str) -> dict[str, dict[str, Any]]:
    found = {}
    for e in warden.audit_events(actor="alice"):
        stream = (e.get("details") or {}).get("stream") or {}
        if stream.get("id") == stream_id:
            found[stream["phase"]] = e
    return found


def test_a_completion_the_log_refused_is_written_before_the_next_read(
    warden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planner, "SMALL_FILE_BYTES", 0)  # scanned a batch at a time
    monkeypatch.setattr(service, "STREAM_ABOVE_BYTES", 0)  # and streamed from the first
    result = service.governed_read(
        warden.state, _alice(warden), "engagements", json.dumps(BODY).encode()
    )
    stream = result.body
    assert isinstance(stream, LiveStream)
    sent = bytearray()
    while (pieces := stream.next_pieces()) is not None:
        for piece in pieces:
            sent += piece
    meanwhile: list[int] = []

    def end_then_read() -> None:
        stream.finish(complete=True)  # the append fails: the log is held
        meanwhile.append(warden.read("alice", "pins", purpose="training", limit=1).status_code)

    _with_the_log_locked(warden, end_then_read)
    assert meanwhile == [503]  # no read while the completion is owed and cannot be written

    assert warden.read("alice", "pins", purpose="training", limit=1).status_code == 200
    completion = _stream_events(warden, stream.stream_id).get("completion")
    assert completion is not None, "the completion never reached the log"
    assert completion["decision"] == "allow" and completion["rows"] == stream.rows > 0
    assert completion["bytes"] == len(sent)
    assert completion["details"]["stream"]["sha256"] == hashlib.sha256(sent).hexdigest()
    with warden.state.sessions() as db:
        found = verify(db, checkpoints=CheckpointStore.for_settings(warden.settings).read())
    assert found.ok and not [f for f in found.findings if f.kind == "open_intent"], found
