"""What ends access is anchored at once, even when the chain holds an event Warden cannot read.

The attack (an insider with SQL, on SQLite): an event is appended past Warden whose time is
not a time (SQLite stores any text). Every checkpoint then failed with an error instead of
a finding, so the one taken after a revocation was neither written nor refused: the
revoking process logged it and answered, no alarm was raised, and a trigger that ate the
revocation inside its own commit (and put the token row back, seal and all) left every other
process serving the revoked token. `audit verify` failed the same way, reporting nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.identity.test_anchored_revocations import BODY, SQLITE_TRIGGERS
from tests.sealed_rows import live_token_id, one, sql

from warden.api.app import create_app


def _poison(w: Any) -> None:
    """Two events past the head, copies of it: the first with a time that is not a time."""
    seq = one(w, "SELECT seq FROM audit_head")[0]
    row = dict(one(w, "SELECT * FROM audit_event WHERE seq = :s", s=seq)._mapping)
    names = ", ".join(row)
    for n, ts in ((1, "not a time"), (2, row["ts"])):
        values = row | {"seq": seq + n, "id": f"poison{n}".ljust(32, "0"), "ts": ts}
        sql(w, f"INSERT INTO audit_event ({names}) VALUES (:{', :'.join(row)})", **values)  # noqa: S608
    sql(w, "UPDATE audit_head SET seq = :s", s=seq + 2)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL types every column
def test_a_revocation_eaten_past_an_unreadable_event_is_refused_elsewhere(warden: Any) -> None:
    replica = TestClient(create_app(warden.settings))  # a second process, its own caches
    try:

        def read() -> int:
            r = replica.post("/v1/datasets/pins/read", json=BODY, headers=warden.as_("alice"))
            return r.status_code

        assert read() == 200  # alice's token cached there
        _poison(warden)
        sql(warden, *SQLITE_TRIGGERS)
        token_id = live_token_id(warden, "alice")
        r = warden.http.post(
            f"/v1/principals/alice/tokens/{token_id}/revoke", headers=warden.as_("admin")
        )
        assert r.status_code == 200, r.text
        assert live_token_id(warden, "alice") == token_id  # the row says: never revoked
        assert read() == 503  # an alarm stands: the checkpoint after the revocation was refused
    finally:
        replica.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_verify_reports_an_event_it_cannot_read(warden: Any) -> None:
    _poison(warden)
    r = warden.http.post("/v1/audit/verify", headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert not r.json()["ok"] and r.json()["findings"], r.json()
