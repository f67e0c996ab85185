"""A read's stamp taken on the event loop and shared (db/stamp_feed.py): only with several
server processes on PostgreSQL; it answers as `read_stamp` does; a read never takes the answer
of a query sent before it arrived, so a change committed before it arrived is always seen; any
failure answers None (the read's thread then reads the stamp itself, and a failure there is the
usual 503); its connection is closed when the app's lifespan ends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from warden.api.app import create_app
from warden.api.primary import WORKERS_ENV
from warden.db import stamp_feed
from warden.db.generation import read_stamp
from warden.db.session import unit_of_work
from warden.db.stamp_feed import StampFeed, stamp_feed_for
from warden.identity.service import Caller, get_principal
from warden.policy.changes import apply_change

READ = "/v1/datasets/engagements/read"
BODY = {"purpose": "training", "columns": ["user_id", "region"], "limit": 5}


def _postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's stamp is a local read, taken in the read's thread")


def _set_generation(engine: Engine, value: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE change_generation SET value = :v WHERE id = 1"), {"v": value})


def test_the_stamp_is_the_one_sqlalchemy_reads(engine: Engine) -> None:
    _postgres(engine)
    _set_generation(engine, 41)
    with engine.connect() as conn:
        expected = read_stamp(conn)
    feed = stamp_feed_for(engine, 2)
    assert feed is not None
    assert asyncio.run(feed.stamp()) == expected
    assert expected.generation == 41


def test_one_process_or_sqlite_reads_its_stamp_in_the_thread(engine: Engine) -> None:
    """One process: its loop is its busiest thread (a longer tail, measured); SQLite: a local
    read, no round trip to save."""
    assert stamp_feed_for(engine, 1) is None
    if engine.dialect.name == "sqlite":
        assert stamp_feed_for(engine, 2) is None


def test_a_read_arriving_during_a_query_waits_for_the_next_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query in flight has read the old counter; a change commits; a read arrives: it must
    get the new counter (it would get the old one if it joined the query in flight)."""
    _postgres(engine)
    _set_generation(engine, 100)
    answered, release = asyncio.Event(), asyncio.Event()
    real = stamp_feed.StampFeed._answered
    calls = [0]

    def held_once(self: StampFeed, stamp: Any) -> None:
        calls[0] += 1
        if calls[0] > 1:
            real(self, stamp)
            return
        # the first query has its answer, but hands it back only later (the query stays the
        # one in flight meanwhile)
        answered.set()

        async def later() -> None:
            await release.wait()
            real(self, stamp)

        asyncio.get_running_loop().create_task(later())

    monkeypatch.setattr(stamp_feed.StampFeed, "_answered", held_once)
    feed = StampFeed(engine)

    async def scenario() -> tuple[Any, Any, Any]:
        first = asyncio.create_task(feed.stamp())
        await answered.wait()
        _set_generation(engine, 101)  # committed while the first query is in flight
        second = asyncio.create_task(feed.stamp())
        also_second = asyncio.create_task(feed.stamp())
        await asyncio.sleep(0)
        release.set()
        return await first, await second, await also_second

    first, second, also_second = asyncio.run(scenario())
    assert first.generation == 100
    assert second.generation == 101
    assert also_second.generation == 101
    assert calls[0] == 2  # the two later reads shared one query


def test_a_query_without_an_answer_in_time_answers_none(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stamp query stuck (here behind a lock; a partition) is given up: the read's thread
    then reads the stamp itself."""
    _postgres(engine)
    monkeypatch.setattr(stamp_feed, "QUERY_TIMEOUT_S", 0.3)
    feed = StampFeed(engine)

    async def scenario() -> tuple[Any, Any]:
        before = await feed.stamp()
        with engine.connect() as locker:
            locker.execute(text("LOCK TABLE change_generation IN ACCESS EXCLUSIVE MODE"))
            stuck = await feed.stamp()
            locker.rollback()
        return before, stuck

    before, stuck = asyncio.run(scenario())
    assert before is not None
    assert stuck is None
    assert feed.conn is None and feed.resting_until > 0


def test_a_database_it_cannot_reach_answers_none_and_rests(engine: Engine) -> None:
    _postgres(engine)
    unreachable = create_engine(engine.url.set(host="127.0.0.1", port=1, query={}))
    feed = StampFeed(unreachable)

    async def twice() -> tuple[Any, Any, float]:
        first = await feed.stamp()
        second = await feed.stamp()  # resting: not even a connection attempt
        return first, second, feed.resting_until

    first, second, resting_until = asyncio.run(twice())
    assert first is None
    assert second is None
    assert resting_until > 0
    unreachable.dispose()


def test_a_killed_connection_answers_none_then_reconnects(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgres(engine)
    monkeypatch.setattr(stamp_feed, "REST_AFTER_FAILURE_S", 0.0)
    _set_generation(engine, 7)
    feed = StampFeed(engine)

    async def scenario() -> tuple[Any, Any, Any]:
        before = await feed.stamp()
        assert feed.conn is not None
        pid = feed.conn.info.backend_pid
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        during = await feed.stamp()
        after = await feed.stamp()
        return before, during, after

    before, during, after = asyncio.run(scenario())
    assert before.generation == 7
    assert during is None
    assert after.generation == 7


def _backend_alive(engine: Engine, pid: int) -> bool:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"), {"p": pid})
        return found.first() is not None


def _gone(engine: Engine, pid: int) -> bool:
    """Whether the server ended that backend (its exit follows the client's close shortly)."""
    for _ in range(200):
        if not _backend_alive(engine, pid):
            return True
        time.sleep(0.05)
    return False


def test_close_ends_its_connection_and_later_reads_stamp_in_threads(engine: Engine) -> None:
    _postgres(engine)
    feed = StampFeed(engine)

    async def scenario() -> tuple[int, Any]:
        await feed.stamp()
        assert feed.conn is not None
        pid = feed.conn.info.backend_pid
        await feed.close()
        return pid, await feed.stamp()

    pid, after = asyncio.run(scenario())
    assert after is None
    assert feed.conn is None
    assert _gone(engine, pid)


def test_a_served_process_of_several_stamps_on_its_loop_and_closes_at_shutdown(
    warden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app of `warden serve --workers 2` reads through the loop's feed (a change made
    elsewhere still holds on its next read), and its lifespan's end closes the connection."""
    state = warden.state
    _postgres(state.engine)
    monkeypatch.setenv(WORKERS_ENV, "2")
    app = create_app(warden.settings, state=state, jobs=False)
    feed = app.state.stamp_feed
    assert isinstance(feed, StampFeed)
    with TestClient(app) as http:
        first = http.post(READ, json=BODY, headers=warden.as_("alice"))
        assert first.status_code == 200, first.text
        assert feed.conn is not None
        pid = feed.conn.info.backend_pid
        with unit_of_work(state.sessions) as db:  # another process's revocation, committed
            admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
            apply_change(db, admin, remove=[("g", ("alice", "role:ml_engineer", "acme"))])
        refused = http.post(READ, json=BODY, headers=warden.as_("alice"))
        assert refused.status_code in (403, 404), refused.text
        assert feed.conn is not None and feed.conn.info.backend_pid == pid  # the loop's stamp
    assert feed.conn is None
    assert _gone(state.engine, pid)
