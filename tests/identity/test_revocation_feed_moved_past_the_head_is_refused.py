"""What the log says was revoked holds in every process, however the chain's head was moved.

The attack (an insider with SQL): set the chain head's seq far ahead for a moment and move
the change counter, so that another process refreshes what the log says is over up to that
made-up seq; then put the head back. Each process read the log's endings only past the seq
it had reached, so that process never read the revocations appended since: a revoked token
whose row was then written back to before its revocation (seal and all) read again there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.gateway.servers import read, serve, warden_on
from tests.sealed_rows import one, revoke_through_the_api, sql
from tests.serving import bound_engine

from warden.api.app import create_app

BODY = {"purpose": "training", "columns": ["pin_id"], "limit": 1}


def _read(client: TestClient, w: Any, who: str = "alice") -> int:
    return client.post("/v1/datasets/pins/read", json=BODY, headers=w.as_(who)).status_code


def test_a_revocation_after_the_head_was_moved_ahead_is_refused_in_another_process(
    warden: Any,
) -> None:
    replica = TestClient(create_app(warden.settings))  # a second process, its own memory
    try:
        assert _read(replica, warden) == 200
        seq, hashed = one(warden, "SELECT seq, hash FROM audit_head")
        sql(
            warden,
            "UPDATE audit_head SET seq = seq + 1000000",
            "UPDATE change_generation SET value = value + 1",
        )
        assert _read(replica, warden) == 200  # refills there, the head far ahead
        # the head put back, and the read's event (written past the made-up head) erased
        sql(
            warden,
            "DELETE FROM audit_event WHERE seq > :s",
            "UPDATE audit_head SET seq = :s, hash = :h",
            s=seq,
            h=hashed,
        )
        token_id, before = revoke_through_the_api(warden, "alice")
        sql(
            warden,
            "UPDATE api_token SET revoked_at=NULL, revoked_by=NULL, seal=:seal WHERE id=:i",
            seal=before,
            i=token_id,
        )
        assert _read(warden.http, warden) == 401  # the revoking process knows
        assert _read(replica, warden) == 401  # and so does the other one, from the log
    finally:
        replica.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_same_with_two_servers_on_one_database(backend: str, tmp_path: Path) -> None:
    """The attack against two `warden serve` processes: revoked through one, read at the other."""
    with warden_on(backend, tmp_path) as w, serve(w.settings) as a, serve(w.settings) as b:
        engine = bound_engine(w.settings)

        def run(*statements: str, **params: Any) -> Any:
            with engine.begin() as conn:
                found = None
                for statement in statements:
                    found = conn.execute(text(statement), params)
                return found.first() if found is not None and found.returns_rows else None

        try:
            with httpx.Client(base_url=b.url, timeout=60) as at_b:
                assert read(at_b, w.alice).status_code == 200
                seq, hashed = run("SELECT seq, hash FROM audit_head")
                run(
                    "UPDATE audit_head SET seq = seq + 1000000",
                    "UPDATE change_generation SET value = value + 1",
                )
                assert read(at_b, w.alice).status_code == 200
                run(
                    "DELETE FROM audit_event WHERE seq > :s",
                    "UPDATE audit_head SET seq = :s, hash = :h",
                    s=seq,
                    h=hashed,
                )
                token_id, before = run(
                    "SELECT t.id, t.seal FROM api_token t JOIN principal p"
                    " ON p.id = t.principal_id WHERE p.name = 'alice' AND t.revoked_at IS NULL"
                )
                revoked = httpx.post(
                    f"{a.url}/v1/principals/alice/tokens/{token_id}/revoke",
                    headers={"authorization": f"Bearer {w.admin}"},
                    timeout=60,
                )
                assert revoked.status_code == 200, revoked.text
                run(
                    "UPDATE api_token SET revoked_at=NULL, revoked_by=NULL, seal=:seal WHERE id=:i",
                    seal=before,
                    i=token_id,
                )
                assert read(at_b, w.alice).status_code == 401
        finally:
            engine.dispose()
