"""The seals a token's row carries, checked on every request that presents the token: the
token row's own, its principal's and its tenant's (db/sealed.py). A row moved, extended or
released in SQL, or a principal or tenant rewritten there, speaks for nobody.

A seal is a MAC of the row's values under the deployment's key: the same values under the same
keyring check out the same. So a row from the process's token cache (one tuple per cache fill:
any change refills the cache with a new tuple, see db/generation.py) is checked once, then known
by the tuple's identity with the keyring it was checked under; its three HMACs are not made
again on each request. Everything else about the token (revoked, expired, disabled, the
revocation log) is still decided on each request by the caller.
"""

from __future__ import annotations

import hmac
from typing import Any

from sqlalchemy.orm import Session

from warden.audit.keys import ChainKeyring, keys_for
from warden.db.sealed import RowTampered, check_values
from warden.errors import Unauthenticated
from warden.identity.caller import token_seal
from warden.identity.models import Principal, Tenant

TokenRow = tuple[Any, ...]

# checked rows by the tuple's id, each with the tuple itself (so its id is not reused while it
# is here) and its keyring; emptied when full
_SEEN: dict[int, tuple[TokenRow, ChainKeyring]] = {}
SEEN_MAX = 4096


def check_row_seals(db: Session, row: TokenRow, *, remember: bool = False) -> None:
    """Unauthenticated unless the row's seals check out. `remember`: the row is the token
    cache's tuple, held unchanged while it is current (see the module's doc)."""
    keyring = keys_for(db.get_bind())
    seen = _SEEN.get(id(row))
    if seen is not None and seen[0] is row and seen[1] is keyring:
        return
    _check(db, keyring, row)
    if remember:
        if len(_SEEN) >= SEEN_MAX:
            _SEEN.clear()
        _SEEN[id(row)] = (row, keyring)


def _check(db: Session, keyring: ChainKeyring, row: TokenRow) -> None:
    token_id, _, expires_at, _, issued_by_id, pending, digest, seal = row[:8]
    split = 8 + len(Principal.__sealed__)  # the principal's sealed fields, then its seal
    principal, principal_seal, tenant_row = row[8:split], row[split], row[split + 1 : -1]
    principal_id = dict(zip(Principal.__sealed__, principal, strict=True))["id"]
    expected = token_seal(keyring, token_id, principal_id, digest, expires_at,
                          issued_by_id, pending, False)  # fmt: skip
    if not hmac.compare_digest(seal or "", expected):  # moved, extended or released in SQL
        raise Unauthenticated("invalid token")
    # who it speaks for: a principal renamed (Casbin decides on names), or a tenant made the
    # installation's, in SQL speaks for nobody (db/sealed.py)
    try:
        check_values(db, Principal, principal, principal_seal)
        check_values(db, Tenant, tenant_row, row[-1])
    except RowTampered:
        raise Unauthenticated(
            "the principal or tenant this token speaks for was written past Warden; an"
            " operator checks it and runs `warden data seal`"
        ) from None
