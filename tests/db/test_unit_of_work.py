"""A unit of work commits what it began, and only that: a session that never began a
transaction (a warm read) commits nothing, and a generation bump asked for on its own is
still written (db/session.commit_begun)."""

from __future__ import annotations

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from warden.db.generation import bump
from warden.db.session import make_sessionmaker, unit_of_work


def _generation(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT value FROM change_generation")).scalar_one())


def test_only_what_began_is_committed_and_a_bump_always_is(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    commits: list[Session] = []
    event.listen(sessions, "after_commit", commits.append)
    with unit_of_work(sessions) as db:
        pass  # nothing looked up, nothing written
    assert commits == []
    start = _generation(engine)
    with unit_of_work(sessions) as db:
        bump(db)  # asked for before any statement
    assert len(commits) == 1 and _generation(engine) == start + 1
    with unit_of_work(sessions) as db:
        db.execute(text("UPDATE change_generation SET value = value + 10 WHERE id = 1"))
    assert len(commits) == 2 and _generation(engine) == start + 11
