"""One object per database engine (or sessionmaker) in this process: made on first ask, gone
with its engine. The process's caches of what the database says (revocations, read histories,
the audit's group committer, the checkpoint anchor) each keep one."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PerEngine(Generic[T]):
    def __init__(self) -> None:
        self._by: weakref.WeakKeyDictionary[Any, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], T]) -> T:
        """The object for `key`, made by `make` the first time it is asked for."""
        with self._lock:
            found = self._by.get(key)
            if found is None:
                found = self._by[key] = make()
            return found

    def find(self, key: Any) -> T | None:
        return self._by.get(key)
