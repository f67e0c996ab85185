"""Which door an action came through: the console sets its channel for the length of a
request, and every audit record built meanwhile carries it as `details.channel`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CHANNEL: ContextVar[str | None] = ContextVar("warden_audit_channel", default=None)


def current() -> str | None:
    return _CHANNEL.get()


@contextmanager
def channel(name: str) -> Iterator[None]:
    """Records built inside (in this context, and threads started from it) name `name`."""
    token = _CHANNEL.set(name)
    try:
        yield
    finally:
        _CHANNEL.reset(token)
