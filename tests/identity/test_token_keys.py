"""Token hashes are keyed with the audit chain key (outside the database): a token row written
in SQL cannot authenticate a secret its writer chose (found by a red-team review: an
`api_token` row holding the SHA-256 of a chosen secret logged in as the admin). Tokens of a
deployment from before are rekeyed once by an operator, audited."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest
import typer
from sqlalchemy import text

from warden.cli.startup import refuse_unkeyed_tokens
from warden.identity.caller import plain_digest
from warden.identity.token_keys import unkeyed_tokens_remain

FORGED = "wdn_forgedforgedforgedforgedforgedforgedforged1"


def _sql(warden: Any, statement: str, **params: Any) -> None:
    with warden.state.engine.begin() as conn:
        conn.execute(text(statement), params)


@pytest.mark.parametrize("stored", ["sha256", "keyed with another key"])
def test_a_token_row_written_in_sql_authenticates_nothing(warden: Any, stored: str) -> None:
    plain = hashlib.sha256(FORGED.encode()).hexdigest()
    value = (
        plain if stored == "sha256" else hmac.new(b"x" * 32, plain.encode(), "sha256").hexdigest()
    )
    _sql(
        warden,
        "INSERT INTO api_token (id, principal_id, token_hash, label, created_at, expires_at)"
        " SELECT 'tok_forged', id, :h, 'x', :c, :e FROM principal WHERE name = 'admin'",
        h=value,
        c=datetime(2026, 1, 1, tzinfo=UTC),
        e=datetime(2030, 1, 1, tzinfo=UTC),
    )
    forged = warden.http.get("/v1/me", headers={"authorization": f"Bearer {FORGED}"})
    assert forged.status_code == 401, forged.text
    assert warden.http.get("/v1/me", headers=warden.as_("admin")).status_code == 200


def test_tokens_stored_before_hashes_were_keyed_are_rekeyed_once(
    warden: Any, operator_cli: Any
) -> None:
    # A deployment from before: the admin's token stored as its plain SHA-256, no marker.
    with warden.state.sessions() as db:
        assert not unkeyed_tokens_remain(db)
    secret = warden.tokens["admin"]
    _sql(
        warden,
        "UPDATE api_token SET token_hash = :plain WHERE token_hash = :keyed",
        plain=plain_digest(secret),
        keyed=_stored_hash(warden, secret),
    )
    _sql(warden, "DELETE FROM deployment_key WHERE name = 'token_hashes'")
    assert warden.http.get("/v1/me", headers=warden.as_("admin")).status_code == 401
    with pytest.raises(typer.Exit):  # `serve` and `worker` say what to run
        refuse_unkeyed_tokens(warden.state.engine)

    done = operator_cli("data", "rekey-tokens", "--actor", "ops")
    assert done.exit_code == 0, done.output
    assert warden.http.get("/v1/me", headers=warden.as_("admin")).status_code == 200
    refuse_unkeyed_tokens(warden.state.engine)  # starts now
    event = warden.audit_events(action="tokens.rekeyed")[-1]
    assert event["actor"] == "ops" and event["details"]["tokens"] >= 1
    twice = operator_cli("data", "rekey-tokens")
    assert twice.exit_code != 0 and "already keyed" in twice.output
    assert warden.http.get("/v1/me", headers=warden.as_("admin")).status_code == 200


def _stored_hash(warden: Any, secret: str) -> str:
    from warden.identity.caller import hash_token

    return hash_token(secret, warden.state.engine)
