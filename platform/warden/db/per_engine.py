"""One object per database engine (or sessionmaker) in this process: made on first ask, gone
with its engine. The process's caches of what the database says (revocations, read histories,
the audit's group committer, the checkpoint anchor) each keep one."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_names = itertools.count()


class PerEngine(Generic[T]):
    """Each object is kept on its engine (an attribute of this registry's own), not in a
    weak-keyed map: an object that refers back to its engine (the group committer holds its
    sessionmaker) kept a map's key, and so the engine, its pool and every platform built on it,
    alive for the process's life; on the engine, the two are garbage together."""

    def __init__(self) -> None:
        self._attr = f"_warden_per_engine_{next(_names)}"
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], T]) -> T:
        """The object for `key`, made by `make` the first time it is asked for."""
        with self._lock:
            found: T | None = getattr(key, self._attr, None)
            if found is None:
                found = make()
                setattr(key, self._attr, found)
            return found

    def find(self, key: Any) -> T | None:
        return getattr(key, self._attr, None)
