"""Console sessions: a Warden API token exchanged for a server-side session.

The browser holds only a random session secret (in an HttpOnly cookie); the database holds its
SHA-256, the principal, and the id of the token signed in with. Every request re-checks that
token as `authenticate` does (revoked, expired, disabled are refused at once) and the session's
idle and absolute lifetimes. Services never commit; the caller's unit of work does.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime, ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from warden.db.base import Base
from warden.db.sealed import RowTampered, Sealed, check
from warden.errors import Unauthenticated
from warden.identity.caller import TOKEN_PREFIX, Caller, hash_token
from warden.identity.models import ApiToken
from warden.identity.revocations import revocations_for
from warden.identity.service import authenticate, authenticate_token_id

# A session's last use is written at most this often (one write per request is too many).
TOUCH_EVERY = timedelta(seconds=30)


class ConsoleSession(Sealed, Base):
    __tablename__ = "console_session"
    # whose session it is and which token it speaks with (db/sealed.py): a row inserted or
    # moved to another token in SQL opens nothing; and its lifetimes: a session signed out
    # (or timed out) is never reopened, nor its start or last use moved, in SQL
    __sealed__ = ("id", "principal_id", "token_id", "created_at", "last_seen_at", "ended_at",
                  "end_reason")  # fmt: skip

    # SHA-256 of the cookie's secret: a copy of this table opens no session.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), index=True)
    token_id: Mapped[str] = mapped_column(ForeignKey("api_token.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # signed-out | idle | absolute | token
    end_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)


class SessionEnded(Unauthenticated):
    """The session is gone: `reason` says why (unknown, signed-out, idle, absolute, token)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Opened:
    secret: str  # goes to the browser once, in the cookie
    row: ConsoleSession
    caller: Caller


def session_id(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def open_session(db: Session, token: str, now: datetime) -> Opened:
    """Sign in with an API token: people and service accounts, never a job's token."""
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX):
        raise Unauthenticated("sign in with a Warden API token (wdn_...); job tokens cannot")
    caller = authenticate(db, token)
    token_id = db.scalar(
        select(ApiToken.id).where(ApiToken.token_hash == hash_token(token, db.get_bind()))
    )
    assert token_id is not None  # authenticate found it
    secret = secrets.token_urlsafe(32)
    row = ConsoleSession(
        id=session_id(secret),
        principal_id=caller.principal_id,
        token_id=token_id,
        created_at=now,
        last_seen_at=now,
    )
    db.add(row)
    db.flush()
    return Opened(secret, row, caller)


def resolve(
    db: Session, secret: str, now: datetime, *, idle: timedelta, absolute: timedelta
) -> tuple[ConsoleSession, Caller]:
    """The live session of `secret` and its caller; SessionEnded (the row ended, when it was
    live) otherwise."""
    row = db.get(ConsoleSession, session_id(secret)) if 0 < len(secret) <= 128 else None
    if row is None:
        raise SessionEnded("unknown", "no such session; sign in")
    try:  # first: whether and when it ended, and its times, are sealed with it
        check(db, row)
    except RowTampered:
        raise SessionEnded("unknown", "no such session; sign in") from None
    if row.ended_at is not None:
        raise SessionEnded(row.end_reason or "ended", "this session has ended; sign in again")
    if row.id[:12] in revocations_for(db).refresh(db).signed_out:  # its sign-out, in the log
        raise SessionEnded("signed-out", "this session has ended; sign in again")
    if now - _aware(row.created_at) >= absolute:
        end(row, now, "absolute")
        raise SessionEnded("absolute", "this session reached its maximum lifetime; sign in again")
    if now - _aware(row.last_seen_at) >= idle:
        end(row, now, "idle")
        raise SessionEnded("idle", "this session was idle too long; sign in again")
    try:
        caller = authenticate_token_id(db, row.token_id)
        if caller.principal_id != row.principal_id:
            raise Unauthenticated("the session and its token speak for different principals")
    except Unauthenticated as exc:
        end(row, now, "token")
        raise SessionEnded("token", f"the token of this session is refused ({exc.detail})") from exc
    if now - _aware(row.last_seen_at) >= TOUCH_EVERY:
        row.last_seen_at = now
    return row, caller


def end(row: ConsoleSession, now: datetime, reason: str) -> None:
    if row.ended_at is None:
        row.ended_at = now
        row.end_reason = reason


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
