"""What a process keeps per engine goes with its engine, even when it refers back to it (the
audit's group committer holds its sessionmaker): kept alive, every test's platform stayed in
memory and the garbage collector walked them all again at each full pass."""

from __future__ import annotations

import gc
import weakref

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from warden.audit import service
from warden.db.per_engine import PerEngine


class _Holder:
    def __init__(self, key: object) -> None:
        self.key = key


def test_an_object_that_holds_its_engine_goes_with_it() -> None:
    registry: PerEngine[_Holder] = PerEngine()
    engine = sa.create_engine("sqlite://")
    held = registry.get(engine, lambda key=engine: _Holder(key))
    assert registry.get(engine, lambda: _Holder(None)) is held  # made once
    assert registry.find(engine) is held
    gone = weakref.ref(engine)
    del engine, held
    gc.collect()
    assert gone() is None


def test_the_group_committer_goes_with_its_sessionmaker() -> None:
    engine = sa.create_engine("sqlite://")
    sessions = sessionmaker(bind=engine)
    service._batcher_for(sessions)
    gone = weakref.ref(sessions), weakref.ref(engine)
    del sessions, engine
    gc.collect()
    assert [ref() for ref in gone] == [None, None]


def test_two_registries_keep_their_own_objects_on_one_engine() -> None:
    first: PerEngine[str] = PerEngine()
    second: PerEngine[str] = PerEngine()
    engine = sa.create_engine("sqlite://")
    assert (first.get(engine, lambda: "a"), second.get(engine, lambda: "b")) == ("a", "b")
    assert (first.find(engine), second.find(engine)) == ("a", "b")
