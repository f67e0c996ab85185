"""Who is calling, and how token secrets are kept: shared by API tokens (identity/service.py)
and job tokens (sandbox/tokens.py) without either importing the other's module."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from warden.audit.keys import ChainKeyring, derived_mac, keys_for

TOKEN_PREFIX = "wdn_"  # noqa: S105 - a prefix, not a secret
JOB_TOKEN_PREFIX = "wjt_"  # noqa: S105 - a prefix, not a secret
# The ASGI scope key a sandbox's gateway socket (sandbox/gateway_socket.py) sets to its sandbox
# id once it has checked the token is that sandbox's: only there does a job token speak.
SOCKET_SCOPE = "warden.gateway_socket"


@dataclass(frozen=True)
class Caller:
    """Who is calling: resolved from a token on every request."""

    name: str
    kind: str  # person | service | job
    tenant: str
    principal_id: str
    on_behalf_of: str | None = None
    # A job token is bound to one job, one segment, its datasets and its purpose.
    job_id: str | None = None
    segment: str | None = None
    scope_datasets: tuple[str, ...] | None = None
    scope_purpose: str | None = None
    # Who issued the API token in use (None: the bootstrap, or not an API token).
    token_issuer_id: str | None = None


def plain_digest(secret: str) -> str:
    """A secret's unkeyed SHA-256: what token hashes were before they were keyed."""
    return hashlib.sha256(secret.encode()).hexdigest()


def keyed(keys: ChainKeyring, plain: str) -> str:
    """The stored form of a token whose unkeyed digest is `plain`: keyed (`derived_mac`), so
    a token row written in SQL cannot make a secret its writer chose authenticate."""
    return derived_mac(keys, b"token", plain)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def token_seal(
    keys: ChainKeyring,
    token_id: str,
    principal_id: str,
    token_hash: str,
    expires_at: datetime | None,
    issued_by_id: str | None,
    pending_change_id: str | None,
    revoked: bool,
) -> str:
    """A keyed MAC of what a token row says about whom it speaks for and whether it works: a
    row moved to another principal, given a longer life, un-revoked or released from review
    in SQL no longer matches it, and authenticates nothing."""
    at = expires_at if expires_at is None or expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    micros = None if at is None else (at - _EPOCH) // timedelta(microseconds=1)
    text = json.dumps(
        [token_id, principal_id, token_hash, micros, issued_by_id, pending_change_id, revoked]
    )
    return derived_mac(keys, b"token-row", text)


def hash_token(secret: str, bind: Any) -> str:
    """`secret`'s stored form, keyed with the chain keys bound to `bind` (an engine)."""
    return keyed(keys_for(bind), plain_digest(secret))
