"""query(): filters, newest first, cursor pagination, and refusal of bad cursors and limits."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from warden.audit.cursor import decode_cursor, encode_cursor
from warden.audit.keys import ChainKeyring
from warden.audit.models import AuditEvent
from warden.audit.service import AuditRecord, query, record
from warden.db.session import unit_of_work
from warden.errors import BadRequest, Unprocessable

PLUS_TWO = timezone(timedelta(hours=2))


@pytest.fixture
def log(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """12 events: alice/bob alternate, every third a deny, two tenants, two datasets."""
    for i in range(12):
        record(
            sessions,
            AuditRecord(
                action="read" if i % 4 else "policy.change",
                decision="deny" if i % 3 == 0 else "allow",
                actor="alice" if i % 2 == 0 else "bob",
                actor_kind="person",
                tenant="acme" if i < 10 else "globex",
                dataset="engagements" if i % 2 == 0 else "pins",
            ),
        )
    return sessions


def test_newest_first_with_filters(log: sessionmaker[Session]) -> None:
    with unit_of_work(log) as db:
        everything, cursor = query(db)
        alice, _ = query(db, actor="alice")
        denied_pins, _ = query(db, decision="deny", dataset="pins")
        acme_reads, _ = query(db, tenant="acme", action="read")

    assert [e.seq for e in everything] == list(range(12, 0, -1)) and cursor is None
    assert [e.seq for e in alice] == [11, 9, 7, 5, 3, 1]
    assert [e.seq for e in denied_pins] == [10, 4]
    assert all(e.tenant == "acme" and e.action == "read" for e in acme_reads)
    assert [e.seq for e in acme_reads] == [10, 8, 7, 6, 4, 3, 2]


def test_since_and_until_bound_the_time(engine: Engine, log: sessionmaker[Session]) -> None:
    base = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for seq in range(1, 13):
            # Rewriting ts breaks the chain, which this test does not look at.
            conn.execute(
                update(AuditEvent)
                .where(AuditEvent.seq == seq)
                .values(ts=base + timedelta(minutes=seq))
            )
    with unit_of_work(log) as db:
        window, _ = query(db, since=base + timedelta(minutes=3), until=base + timedelta(minutes=6))
        # Naive datetimes are UTC; aware ones in any zone compare in UTC.
        naive, _ = query(db, since=(base + timedelta(minutes=11)).replace(tzinfo=None))
        zoned, _ = query(db, until=(base + timedelta(minutes=2)).astimezone(PLUS_TWO))
    assert [e.seq for e in window] == [5, 4, 3]
    assert [e.seq for e in naive] == [12, 11]
    assert [e.seq for e in zoned] == [1]


def test_cursor_pages_through_everything_once(log: sessionmaker[Session]) -> None:
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    with unit_of_work(log) as db:
        while True:
            page, cursor = query(db, limit=5, cursor=cursor)
            seen.extend(e.seq for e in page)
            pages += 1
            if cursor is None:
                break
    assert seen == list(range(12, 0, -1)) and pages == 3


def test_cursor_keeps_the_filters_company(log: sessionmaker[Session]) -> None:
    with unit_of_work(log) as db:
        first, cursor = query(db, actor="bob", limit=4)
        rest, end = query(db, actor="bob", limit=4, cursor=cursor)
    assert [e.seq for e in first] == [12, 10, 8, 6]
    assert [e.seq for e in rest] == [4, 2] and end is None


def test_an_exact_last_page_has_no_next_cursor(log: sessionmaker[Session]) -> None:
    with unit_of_work(log) as db:
        page, cursor = query(db, limit=12)
    assert len(page) == 12 and cursor is None


KEYS = ChainKeyring.from_secrets([b"k" * 32])


def test_cursors_round_trip_and_are_sealed() -> None:
    assert decode_cursor(KEYS, encode_cursor(KEYS, 1)) == 1
    assert decode_cursor(KEYS, encode_cursor(KEYS, 123456789)) == 123456789
    # Sealed, not encoded: two cursors for one seq differ, and neither shows it (a tenant
    # would otherwise count every tenant's events between two of its pages).
    one, two = encode_cursor(KEYS, 5), encode_cursor(KEYS, 5)
    assert one != two
    assert base64.urlsafe_b64encode(b"5").decode().rstrip("=") not in one


def test_an_edited_or_foreign_cursor_is_refused() -> None:
    cursor = encode_cursor(KEYS, 1000)
    flipped = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    with pytest.raises(BadRequest):
        decode_cursor(KEYS, flipped)
    other = ChainKeyring.from_secrets([b"o" * 32])
    with pytest.raises(BadRequest):
        decode_cursor(other, cursor)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64!",
        "12",
        "v2.",
        base64.urlsafe_b64encode(b"v1:5").decode(),  # the plain cursors of before
        base64.urlsafe_b64encode(b"v1:0").decode(),
        base64.urlsafe_b64encode(b"v1:-3").decode(),
        base64.urlsafe_b64encode(b"v2:10").decode(),
        base64.urlsafe_b64encode(b"v1:1 OR 1=1").decode(),
        base64.urlsafe_b64encode(b"v1:" + b"9" * 30).decode(),
        base64.urlsafe_b64encode("v1:١٢".encode()).decode(),
        "A" * 500,
    ],
)
def test_malformed_cursors_are_bad_requests(log: sessionmaker[Session], cursor: str) -> None:
    with pytest.raises(BadRequest), unit_of_work(log) as db:
        query(db, cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limits_outside_1_to_1000_are_refused(log: sessionmaker[Session], limit: int) -> None:
    with pytest.raises(Unprocessable), unit_of_work(log) as db:
        query(db, limit=limit)
