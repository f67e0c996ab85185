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
    _sql(warden, "UPDATE api_token SET seal = NULL")  # rows from before carry no seal
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


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE api_token SET principal_id = (SELECT id FROM principal WHERE name = 'alice')"
        " WHERE principal_id = (SELECT id FROM principal WHERE name = 'mallory')",
        "UPDATE api_token SET expires_at = :later"
        " WHERE principal_id = (SELECT id FROM principal WHERE name = 'mallory')",
    ],
    ids=["moved to another principal", "given a longer life"],
)
def test_a_token_row_changed_in_sql_authenticates_nothing(warden: Any, change: str) -> None:
    """mallory's real token row pointed at alice (who reads raw users), or given a longer
    life: the row no longer matches its seal (found by a second red-team review)."""
    assert warden.read("mallory", "users", purpose="training").status_code == 404
    _sql(
        warden,
        change,
        **({"later": datetime(2031, 1, 1, tzinfo=UTC)} if ":later" in change else {}),
    )
    assert warden.http.get("/v1/me", headers=warden.as_("mallory")).status_code == 401
    assert warden.read("mallory", "users", purpose="training").status_code == 401


def test_a_revoked_token_revived_in_sql_stays_revoked(warden: Any) -> None:
    tokens = warden.http.get("/v1/principals/mallory/tokens", headers=warden.as_("admin")).json()
    token_id = tokens["tokens"][0]["id"]
    revoked = warden.http.post(
        f"/v1/principals/mallory/tokens/{token_id}/revoke", json={}, headers=warden.as_("admin")
    )
    assert revoked.status_code == 200, revoked.text
    assert warden.http.get("/v1/me", headers=warden.as_("mallory")).status_code == 401
    _sql(
        warden,
        "UPDATE api_token SET revoked_at = NULL, revoked_by = NULL WHERE id = :i",
        i=token_id,
    )
    assert warden.http.get("/v1/me", headers=warden.as_("mallory")).status_code == 401


def test_rekeying_is_refused_once_any_token_is_sealed_even_without_the_marker(
    warden: Any, operator_cli: Any
) -> None:
    """An insider deletes the marker and plants a row with a chosen secret's plain SHA-256,
    hoping the operator rekeys it into a working token: sealed rows show the deployment is
    keyed already, so rekeying is refused (and nothing changed)."""
    _sql(
        warden,
        "INSERT INTO api_token (id, principal_id, token_hash, label, created_at, expires_at)"
        " SELECT 'tok_forged2', id, :h, 'x', :c, :e FROM principal WHERE name = 'alice'",
        h=plain_digest(FORGED),
        c=datetime(2026, 1, 1, tzinfo=UTC),
        e=datetime(2030, 1, 1, tzinfo=UTC),
    )
    _sql(warden, "DELETE FROM deployment_key WHERE name = 'token_hashes'")
    done = operator_cli("data", "rekey-tokens")
    assert done.exit_code != 0 and "already keyed" in done.output
    forged = warden.http.get("/v1/me", headers={"authorization": f"Bearer {FORGED}"})
    assert forged.status_code == 401
    assert warden.http.get("/v1/me", headers=warden.as_("alice")).status_code == 200
