"""Who is calling, and how token secrets are kept: shared by API tokens (identity/service.py)
and job tokens (sandbox/tokens.py) without either importing the other's module."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from warden.audit.keys import ChainKeyring, derived_key, keys_for

TOKEN_PREFIX = "wdn_"  # noqa: S105 - a prefix, not a secret
JOB_TOKEN_PREFIX = "wjt_"  # noqa: S105 - a prefix, not a secret


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
    """The stored form of a token whose unkeyed digest is `plain`: keyed (`derived_key`), so
    a token row written in SQL cannot make a secret its writer chose authenticate."""
    return hmac.new(derived_key(keys, b"token"), plain.encode(), hashlib.sha256).hexdigest()


def hash_token(secret: str, bind: Any) -> str:
    """`secret`'s stored form, keyed with the chain keys bound to `bind` (an engine)."""
    return keyed(keys_for(bind), plain_digest(secret))
